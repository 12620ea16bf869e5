"""Downloads against a loopback HTTP server: nothing half-written is ever used."""

from __future__ import annotations

import os

import pytest
from models_helpers import FileServer, sha

from bokehkit.models.download import DownloadError, download

DATA = os.urandom(300_000)


@pytest.fixture
def server():
    with FileServer() as s:
        s.files["/m.bin"] = DATA
        yield s


def _get(server, tmp_path, attempts=1, size=None, digest=None):
    size = len(DATA) if size is None else size
    digest = digest or sha(DATA)
    return download(
        server.url("/m.bin"),
        tmp_path / "store" / "m.bin",
        digest,
        size,
        tmp_path / "partial",
        attempts=attempts,
    )


def test_full_download(server, tmp_path):
    seen = []
    out = download(
        server.url("/m.bin"),
        tmp_path / "store" / "m.bin",
        sha(DATA),
        len(DATA),
        tmp_path / "partial",
        progress=lambda f, t: seen.append((f, t)),
    )
    assert out.read_bytes() == DATA
    assert list((tmp_path / "partial").iterdir()) == []  # no part left behind
    assert seen and seen[-1][0] == pytest.approx(1.0)
    assert any(t.startswith("downloading m.bin, ") for _, t in seen)


def test_resume_asks_only_for_the_rest(server, tmp_path):
    part = tmp_path / "partial" / f"{sha(DATA)}.part"
    part.parent.mkdir()
    part.write_bytes(DATA[:120_000])
    out = _get(server, tmp_path)
    assert out.read_bytes() == DATA
    assert server.requests == [("/m.bin", "bytes=120000-")]
    assert server.bytes_sent == len(DATA) - 120_000
    assert not part.exists()


def test_server_ignoring_range_restarts_cleanly(server, tmp_path):
    server.mode["/m.bin"] = "norange"
    part = tmp_path / "partial" / f"{sha(DATA)}.part"
    part.parent.mkdir()
    part.write_bytes(DATA[:5000])
    assert _get(server, tmp_path).read_bytes() == DATA


def test_corrupt_file_is_deleted_and_never_stored(server, tmp_path):
    server.files["/m.bin"] = bytes(len(DATA))  # right size, wrong bytes
    with pytest.raises(DownloadError, match="corrupt"):
        _get(server, tmp_path)
    assert not (tmp_path / "store" / "m.bin").exists()
    assert list((tmp_path / "partial").iterdir()) == []


def test_wrong_size_is_refused_before_writing(server, tmp_path):
    with pytest.raises(DownloadError, match="manifest says"):
        _get(server, tmp_path, size=len(DATA) + 1)
    assert not (tmp_path / "store" / "m.bin").exists()
    assert list((tmp_path / "partial").iterdir()) == []


def test_server_lying_about_length(server, tmp_path):
    server.mode["/m.bin"] = "lie"
    with pytest.raises(DownloadError):
        _get(server, tmp_path)
    assert not (tmp_path / "store" / "m.bin").exists()


def test_server_error(server, tmp_path):
    server.mode["/m.bin"] = "error"
    with pytest.raises(DownloadError, match="500"):
        _get(server, tmp_path)
    assert not (tmp_path / "store" / "m.bin").exists()


def test_missing_file_404_is_not_retried(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download(
            server.url("/nope"), tmp_path / "x", sha(DATA), len(DATA), tmp_path / "p", attempts=3
        )
    assert len(server.requests) == 1


def test_interrupted_transfer_keeps_part_for_resume_but_never_uses_it(server, tmp_path):
    server.mode["/m.bin"] = "cut"
    server.cut_at = 100_000
    with pytest.raises(DownloadError, match="interrupted.*again to resume"):
        _get(server, tmp_path)
    dest = tmp_path / "store" / "m.bin"
    part = tmp_path / "partial" / f"{sha(DATA)}.part"
    assert not dest.exists()
    assert part.read_bytes() == DATA[:100_000]
    # The next attempt resumes where the last one stopped.
    server.mode["/m.bin"] = "ok"
    assert _get(server, tmp_path).read_bytes() == DATA
    assert server.requests[-1] == ("/m.bin", "bytes=100000-")
    assert not part.exists()


def test_retries_resume_within_one_call(server, tmp_path):
    server.mode["/m.bin"] = "cut"
    server.cut_at = len(DATA) // 2  # each request stops at the middle; a resume gets the rest
    out = _get(server, tmp_path, attempts=3)
    assert out.read_bytes() == DATA
    assert [r for _, r in server.requests] == [None, f"bytes={len(DATA) // 2}-"]


def test_unreachable_server(tmp_path):
    with FileServer() as s:
        url = s.url("/m.bin")
    with pytest.raises(DownloadError, match="cannot connect"):
        download(url, tmp_path / "x", sha(DATA), len(DATA), tmp_path / "p", attempts=1)

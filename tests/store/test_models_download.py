"""Downloads against a loopback HTTP server: nothing half-written is ever used."""

from __future__ import annotations

import json
import os

import pytest
from models_helpers import FileServer, sha

from bokehkit.store.download import DownloadError, download, download_from_hub, hub_part

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


# ---------------------------------------------------------------------------- the hub
# Hugging Face files the manifest does not pin: the hash and size are the hub's headers.

NEW = os.urandom(len(DATA))  # the file after it was replaced on the hub


def _hub(server, data=DATA, etag=None, size=None, path="/m.bin"):
    server.files[path] = data
    server.headers[path] = {
        "X-Linked-Etag": f'"{sha(data)}"' if etag is None else etag,
        "X-Linked-Size": str(len(data)) if size is None else size,
    }


def _get_hub(server, tmp_path, path="/m.bin", attempts=1):
    return download_from_hub(
        server.url(path), tmp_path / "store" / "m.bin", tmp_path / "partial", attempts=attempts
    )


def test_hub_headers_give_hash_and_size(server, tmp_path):
    _hub(server)
    out, digest, size = _get_hub(server, tmp_path)
    assert out.read_bytes() == DATA
    assert (digest, size) == (sha(DATA), len(DATA))
    assert list((tmp_path / "partial").iterdir()) == []  # neither part nor its record


def test_hub_redirect_carries_the_headers(server, tmp_path):
    """As huggingface.co: /resolve/ answers 302 to the CDN, the headers on the 302."""
    server.files["/cdn/blob"] = DATA
    server.redirect["/resolve/m.bin"] = server.url("/cdn/blob")
    server.headers["/resolve/m.bin"] = {
        "X-Linked-Etag": f'W/"{sha(DATA)}"',  # the weak form is read too
        "X-Linked-Size": str(len(DATA)),
    }
    out, digest, _ = _get_hub(server, tmp_path, "/resolve/m.bin")
    assert out.read_bytes() == DATA and digest == sha(DATA)
    assert server.heads == ["/resolve/m.bin"]  # the CDN was not asked for headers
    assert [p for p, _ in server.requests] == ["/resolve/m.bin", "/cdn/blob"]


def test_hub_hash_not_matching_the_content_is_refused(server, tmp_path):
    _hub(server, etag=f'"{sha(NEW)}"')  # right size, another file's hash
    with pytest.raises(DownloadError, match="corrupt"):
        _get_hub(server, tmp_path)
    assert not (tmp_path / "store" / "m.bin").exists()
    assert list((tmp_path / "partial").iterdir()) == []


def test_missing_hub_headers_are_refused_before_downloading(server, tmp_path):
    with pytest.raises(DownloadError, match="X-Linked-Etag and X-Linked-Size headers missing"):
        _get_hub(server, tmp_path)
    assert server.requests == []  # no GET at all
    assert not (tmp_path / "store").exists() and not (tmp_path / "partial").exists()
    # One of the two is not enough.
    server.headers["/m.bin"] = {"X-Linked-Etag": f'"{sha(DATA)}"'}
    with pytest.raises(DownloadError, match="headers missing"):
        _get_hub(server, tmp_path)


@pytest.mark.parametrize(
    "etag, size",
    [
        ('"' + "a" * 40 + '"', None),  # a git blob id (a file not in LFS), not a SHA-256
        ('"not-a-hash"', None),
        (None, "12 MB"),
        (None, "0"),
    ],
)
def test_malformed_hub_headers_are_refused(server, tmp_path, etag, size):
    _hub(server, etag=etag, size=size)
    with pytest.raises(DownloadError, match="are not a SHA-256 and a size"):
        _get_hub(server, tmp_path)
    assert server.requests == []
    assert not (tmp_path / "store" / "m.bin").exists()


def test_hub_size_not_matching_is_refused(server, tmp_path):
    _hub(server, size=str(len(DATA) + 1))
    with pytest.raises(DownloadError, match="manifest says|more than"):
        _get_hub(server, tmp_path)
    assert not (tmp_path / "store" / "m.bin").exists()


def _hub_part(server, tmp_path, data: bytes, n: int, recorded: str | None):
    part = hub_part(tmp_path / "partial", server.url("/m.bin"))
    part.parent.mkdir(parents=True, exist_ok=True)
    part.write_bytes(data[:n])
    if recorded is not None:
        meta = {"url": server.url("/m.bin"), "sha256": recorded, "size": len(data)}
        part.with_suffix(".json").write_text(json.dumps(meta))
    return part


def test_hub_resume_with_the_same_hash(server, tmp_path):
    _hub(server)
    part = _hub_part(server, tmp_path, DATA, 120_000, sha(DATA))
    out, _, _ = _get_hub(server, tmp_path)
    assert out.read_bytes() == DATA
    assert server.requests == [("/m.bin", "bytes=120000-")]
    assert not part.exists()


def test_hub_file_replaced_since_the_part_began_restarts(server, tmp_path):
    """The part is of the old file; the hub now states another hash: start over, never
    splice the new file's tail onto the old file's head."""
    _hub(server, NEW)
    _hub_part(server, tmp_path, DATA, 120_000, sha(DATA))
    out, digest, _ = _get_hub(server, tmp_path)
    assert out.read_bytes() == NEW and digest == sha(NEW)
    assert server.requests == [("/m.bin", None)]  # from the first byte
    assert server.bytes_sent == len(NEW)


def test_hub_part_without_its_record_restarts(server, tmp_path):
    _hub(server)
    _hub_part(server, tmp_path, DATA, 120_000, None)
    assert _get_hub(server, tmp_path)[0].read_bytes() == DATA
    assert server.requests == [("/m.bin", None)]


def test_interrupted_hub_download_keeps_part_and_hash(server, tmp_path):
    _hub(server)
    server.mode["/m.bin"] = "cut"
    server.cut_at = 100_000
    with pytest.raises(DownloadError, match="again to resume"):
        _get_hub(server, tmp_path)
    part = hub_part(tmp_path / "partial", server.url("/m.bin"))
    assert part.read_bytes() == DATA[:100_000]
    assert json.loads(part.with_suffix(".json").read_text())["sha256"] == sha(DATA)
    server.mode["/m.bin"] = "ok"
    assert _get_hub(server, tmp_path)[0].read_bytes() == DATA
    assert server.requests[-1] == ("/m.bin", "bytes=100000-")
    assert list((tmp_path / "partial").iterdir()) == []


def test_pinned_download_never_asks_the_hub(server, tmp_path):
    """A pinned file keeps its own hash, whatever headers the server sends."""
    _hub(server, etag=f'"{sha(NEW)}"')
    assert _get(server, tmp_path).read_bytes() == DATA
    assert server.heads == []


def test_hub_headers_are_sought_on_the_same_host_only(server, tmp_path):
    """A redirect without the headers is followed on the hub's own host (a renamed
    repository); to another host (a CDN, which never states them) it is not."""
    _hub(server, path="/resolve/m.bin")
    server.redirect["/old/m.bin"] = "/resolve/m.bin"  # relative, same host
    out, digest, _ = _get_hub(server, tmp_path, "/old/m.bin")
    assert out.read_bytes() == DATA and digest == sha(DATA)
    assert server.heads == ["/old/m.bin", "/resolve/m.bin"]
    other = server.url("/resolve/m.bin").replace("127.0.0.1", "localhost")
    server.redirect["/moved/m.bin"] = other
    with pytest.raises(DownloadError, match="headers missing"):
        _get_hub(server, tmp_path, "/moved/m.bin")
    assert server.heads[-1] == "/moved/m.bin"

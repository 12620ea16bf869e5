"""Downloads that are never used half-written.

A download goes to ``<partial dir>/<expected sha256>.part``; an interrupted transfer leaves
that file for the next attempt, which asks the server for the rest (HTTP Range). Only when
the whole file is there, has the expected size and the expected SHA-256 is it renamed (one
atomic `os.replace`) to its final name. A file that fails the check is deleted.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import os
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path

from .. import __version__
from ..errors import BokehkitError

ProgressFn = Callable[[float, str], None]

CHUNK = 1 << 20
USER_AGENT = f"bokehkit/{__version__} (model manager)"
#: Seconds without a byte before a transfer counts as interrupted.
TIMEOUT_S = 60.0


class DownloadError(BokehkitError):
    """A download failed; `retry` says whether trying again (resuming) may help."""

    def __init__(self, message: str, retry: bool = False) -> None:
        super().__init__(message)
        self.retry = retry


def file_sha256(path: Path, progress: ProgressFn | None = None, label: str = "") -> str:
    h = hashlib.sha256()
    total = max(1, path.stat().st_size)
    done = 0
    with open(path, "rb") as f:
        while block := f.read(CHUNK * 4):
            h.update(block)
            done += len(block)
            if progress is not None:
                progress(done / total, f"checking {label or path.name}")
    return h.hexdigest()


def npm_integrity_ok(path: Path, integrity: str) -> bool:
    """Check an npm `dist.integrity` string ("sha512-<base64>")."""
    algo, _, b64 = integrity.partition("-")
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        while block := f.read(CHUNK * 4):
            h.update(block)
    return base64.b64encode(h.digest()).decode() == b64


def _mb(n: int) -> str:
    return f"{n / 1e6:.1f} MB"


def download(
    url: str,
    dest: Path,
    sha256: str,
    size: int,
    partial_dir: Path,
    progress: ProgressFn | None = None,
    label: str = "",
    attempts: int = 3,
) -> Path:
    """Download `url` to `dest` (created atomically), checking `size` and `sha256`.

    Interrupted transfers are resumed up to `attempts` times in this call; if they still fail
    the part is kept for the next call and DownloadError is raised."""
    partial_dir.mkdir(parents=True, exist_ok=True)
    part = partial_dir / f"{sha256}.part"
    label = label or dest.name
    last: DownloadError | None = None
    for _ in range(max(1, attempts)):
        try:
            _fetch_into(url, part, size, progress, label)
            break
        except DownloadError as exc:
            last = exc
            if not exc.retry:
                raise
    else:
        assert last is not None
        raise last
    got = file_sha256(part, progress, label)
    if got != sha256:
        part.unlink(missing_ok=True)
        raise DownloadError(
            f"{label} from {url} is corrupt: SHA-256 {got[:16]}… but {sha256[:16]}… was "
            "expected; the file was deleted"
        )
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(part, dest)
    return dest


def _fetch_into(url: str, part: Path, size: int, progress: ProgressFn | None, label: str) -> None:
    have = part.stat().st_size if part.exists() else 0
    if have > size:
        part.unlink()
        have = 0
    if have == size:
        return
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    if have:
        request.add_header("Range", f"bytes={have}-")
    try:
        response = urllib.request.urlopen(request, timeout=TIMEOUT_S)  # noqa: S310
    except urllib.error.HTTPError as exc:
        if exc.code == 416 and have:  # our part is useless to this server: start over
            part.unlink(missing_ok=True)
            raise DownloadError(f"{url}: server refused to resume; starting over", True) from None
        raise DownloadError(
            f"{url}: server answered {exc.code} {exc.reason}", retry=exc.code >= 500
        ) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise DownloadError(f"{url}: cannot connect ({reason})") from None
    with response:
        status = response.status
        if status == 206 and have:
            mode = "ab"
        elif status == 200:
            mode, have = "wb", 0  # the server ignored Range (or we asked for none)
        else:
            raise DownloadError(f"{url}: unexpected answer {status}")
        length = response.headers.get("Content-Length")
        if length is not None and have + int(length) != size:
            raise DownloadError(
                f"{url}: the server's file has {_mb(have + int(length))}, but the manifest "
                f"says {_mb(size)} ({size} bytes): not downloading it"
            )
        done = have
        try:
            with open(part, mode) as f:
                while block := response.read(CHUNK):
                    done += len(block)
                    if done > size:
                        break
                    f.write(block)
                    if progress is not None:
                        progress(done / size, f"downloading {label}, {_mb(done)} of {_mb(size)}")
        except (http.client.IncompleteRead, OSError) as exc:
            raise DownloadError(
                f"{url}: transfer interrupted after {_mb(part.stat().st_size)} of {_mb(size)} "
                f"({type(exc).__name__}); run the same command again to resume",
                retry=True,
            ) from None
    if done > size:
        part.unlink(missing_ok=True)
        raise DownloadError(f"{url}: more than the expected {size} bytes came; file deleted")
    if done < size:
        raise DownloadError(
            f"{url}: transfer interrupted after {_mb(done)} of {_mb(size)}; run the same "
            "command again to resume",
            retry=True,
        )

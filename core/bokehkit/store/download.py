"""Downloads that are never used half-written.

A download goes to ``<partial dir>/<expected sha256>.part``; an interrupted transfer leaves
that file for the next attempt, which asks the server for the rest (HTTP Range). Only when
the whole file is there, has the expected size and the expected SHA-256 is it renamed (one
atomic `os.replace`) to its final name. A file that fails the check is deleted.

Hugging Face files the manifest does not pin (`download_from_hub`) are checked the same way
against the SHA-256 and size the hub states for them: its `resolve` endpoint answers for a
file stored with Git LFS with ``X-Linked-Etag: "<sha256 of the file>"`` and ``X-Linked-Size:
<bytes>`` (on the redirect to its CDN; huggingface_hub verifies its own downloads with the
same headers). Without them nothing is downloaded. Such a part is named after the URL, and
the hash it was started for is kept beside it (``.json``): a part is resumed only for the
same hash, so a file replaced on the hub meanwhile is downloaded afresh, never spliced.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import os
import re
import urllib.error
import urllib.parse
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
    return _download_into(url, dest, part, sha256, size, progress, label or dest.name, attempts)


def _download_into(
    url: str,
    dest: Path,
    part: Path,
    sha256: str,
    size: int,
    progress: ProgressFn | None,
    label: str,
    attempts: int,
) -> Path:
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


# ---------------------------------------------------------------------------- the hub
HUB_SHA256 = "X-Linked-Etag"
HUB_SIZE = "X-Linked-Size"
_SHA256_HEX = re.compile(r"[0-9a-f]{64}")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None  # the 3xx itself comes back (as HTTPError), headers and all


def hub_part(partial_dir: Path, url: str) -> Path:
    """Where a download from the hub of a file with no pinned hash waits to be resumed."""
    return partial_dir / f"hub-{hashlib.sha256(url.encode()).hexdigest()[:32]}.part"


def _hub_headers(url: str, hops: int = 5) -> tuple[str | None, str | None]:
    """The hub's X-Linked-Etag and X-Linked-Size for `url`, from a HEAD request. They come
    on the resolve endpoint's redirect to the CDN, so redirects are not followed blindly:
    the first answer that has them counts; one that lacks them is followed only to the
    same host (the hub's own relative redirects, a renamed repository), never to the CDN."""
    opener = urllib.request.build_opener(_NoRedirect)
    for _ in range(hops):
        request = urllib.request.Request(
            url, method="HEAD", headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"}
        )
        try:
            response = opener.open(request, timeout=TIMEOUT_S)
            headers, status = response.headers, response.status
            response.close()
        except urllib.error.HTTPError as exc:
            headers, status = exc.headers, exc.code
            if status < 300 or status >= 400:
                raise DownloadError(
                    f"{url}: the hub answered {status} {exc.reason}", retry=status >= 500
                ) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DownloadError(f"{url}: cannot connect ({reason})") from None
        sha, size = headers.get(HUB_SHA256), headers.get(HUB_SIZE)
        location = headers.get("Location")
        if sha or size or not (300 <= status < 400 and location):
            return sha, size
        nxt = urllib.parse.urljoin(url, location)
        if urllib.parse.urlsplit(nxt).netloc != urllib.parse.urlsplit(url).netloc:
            return None, None
        url = nxt
    return None, None


def hub_expected(url: str) -> tuple[str, int]:
    """The SHA-256 and size the hub states for the file at `url`; DownloadError when it
    states none, or nothing a SHA-256 and a size can be read from."""
    raw_sha, raw_size = _hub_headers(url)
    if raw_sha is None or raw_size is None:
        raise DownloadError(
            f"{url}: the hub did not say the file's SHA-256 and size ({HUB_SHA256} and "
            f"{HUB_SIZE} headers missing), so the download could not be checked: nothing "
            "was downloaded. Only files stored with Git LFS on huggingface.co have them; "
            "pin sha256 and size in the manifest for any other"
        )
    sha = raw_sha.strip().removeprefix("W/").strip('"').lower()
    size = raw_size.strip()
    if not _SHA256_HEX.fullmatch(sha) or not size.isdigit() or int(size) <= 0:
        raise DownloadError(
            f"{url}: the hub's {HUB_SHA256} {raw_sha!r} / {HUB_SIZE} {raw_size!r} are not a "
            "SHA-256 and a size in bytes: nothing was downloaded"
        )
    return sha, int(size)


def download_from_hub(
    url: str,
    dest: Path,
    partial_dir: Path,
    progress: ProgressFn | None = None,
    label: str = "",
    attempts: int = 3,
) -> tuple[Path, str, int]:
    """Download a Hugging Face file the manifest does not pin: `download`, checked against
    the SHA-256 and size the hub states for it. Returns (dest, sha256, size)."""
    sha, size = hub_expected(url)
    partial_dir.mkdir(parents=True, exist_ok=True)
    part = hub_part(partial_dir, url)
    meta = part.with_suffix(".json")
    try:
        started = json.loads(meta.read_text("utf-8"))
    except (OSError, ValueError):
        started = {}
    if part.exists() and (started.get("sha256"), started.get("size")) != (sha, size):
        part.unlink()  # begun for another version of the file (or for one not known)
    tmp = meta.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"url": url, "sha256": sha, "size": size}), "utf-8")
    os.replace(tmp, meta)
    try:
        _download_into(url, dest, part, sha, size, progress, label or dest.name, attempts)
    except DownloadError:
        if not part.exists():
            meta.unlink(missing_ok=True)
        raise
    meta.unlink(missing_ok=True)
    return dest, sha, size


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

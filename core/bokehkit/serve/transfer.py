"""Files through the connection, for clients that share no folder with the engine.

A remote client puts its buffers (or photos) into a job folder the engine made, in chunks,
and gets results back the same way (docs/protocol.md, "Files through the connection"):

    {"type": "put", "id": J, "job_dir": D, "name": N, "offset": 0, "size": S,
     "sha256": HEX, "data": BASE64}                       -> ... {"type": "stored", ...}
    {"type": "get", "id": J, "job_dir": D, "name": N}     -> {"type": "chunk", ...} ...
                                                             {"type": "file_end", ...}

An upload goes to a hidden temporary name (no request can name it) and becomes `N` only
when it is complete and its SHA-256 matches. Its size is checked when it starts: a BKRAW
buffer's header against the pixel limit and its declared length, any other file against
`max_upload_bytes()`; nothing is decoded before the render reads it.
"""

from __future__ import annotations

import base64
import hashlib
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import BokehkitError
from ..io import rawbuffer as rb
from .jobdirs import _NAME, JobFolders

#: Raw bytes in one chunk (a line of about 1.4 MB of base64).
CHUNK_BYTES = 1 << 20
ENV_MAX_UPLOAD_MB = "BOKEHKIT_MAX_UPLOAD_MB"
DEFAULT_MAX_UPLOAD_BYTES = 1 << 30
#: Uploads one client may have unfinished at once.
MAX_OPEN_UPLOADS = 8


def max_upload_bytes() -> int:
    raw = os.environ.get(ENV_MAX_UPLOAD_MB, "").strip()
    try:
        return int(float(raw) * (1 << 20)) if raw else DEFAULT_MAX_UPLOAD_BYTES
    except ValueError:
        return DEFAULT_MAX_UPLOAD_BYTES


@dataclass
class _Upload:
    path: Path
    final: Path
    size: int
    sha256: str
    written: int = 0
    digest: object = field(default_factory=hashlib.sha256)
    file: object = None


class Transfers:
    """The uploads and downloads of one session (its reader thread calls these)."""

    def __init__(self, folders: JobFolders, emit) -> None:
        self._folders = folders
        self._emit = emit
        self._uploads: dict[tuple[str, str], _Upload] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ uploads
    def put(self, request: dict) -> None:
        job_id = request.get("id")
        key = (str(request.get("job_dir")), str(request.get("name")))
        try:
            done = self._put(request, key)
        except BokehkitError as exc:
            self._drop(key)
            self._emit({"type": "error", "id": job_id, "message": str(exc)})
            return
        if done is not None:
            self._emit({"type": "stored", "id": job_id, "name": key[1], "size": done})

    def _put(self, request: dict, key: tuple[str, str]) -> int | None:
        name = request.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise BokehkitError(f"put: {str(name)[:80]!r} is not a plain file name")
        folder = self._folders.folder(request.get("job_dir"))
        offset, data = request.get("offset"), request.get("data")
        if not isinstance(data, str) or isinstance(offset, bool) or not isinstance(offset, int):
            raise BokehkitError("put: needs an integer offset and base64 data")
        try:
            chunk = base64.b64decode(data, validate=True)
        except ValueError:
            raise BokehkitError(f"put {name}: the chunk is not valid base64") from None
        upload = self._uploads.get(key)
        if upload is None:
            if offset != 0:
                raise BokehkitError(f"put {name}: an upload starts at offset 0")
            upload = self._start(folder, name, request, chunk)
        if offset != upload.written:
            raise BokehkitError(f"put {name}: chunk at {offset}, expected {upload.written}")
        if upload.written + len(chunk) > upload.size:
            raise BokehkitError(f"put {name}: more bytes than the {upload.size} declared")
        upload.file.write(chunk)
        upload.digest.update(chunk)
        upload.written += len(chunk)
        if upload.written < upload.size:
            return None
        upload.file.close()
        with self._lock:
            self._uploads.pop(key, None)
        if upload.digest.hexdigest() != upload.sha256:
            upload.path.unlink(missing_ok=True)
            raise BokehkitError(f"put {name}: checksum mismatch (damaged in transit); send again")
        os.replace(upload.path, upload.final)
        return upload.size

    def _start(self, folder: Path, name: str, request: dict, first: bytes) -> _Upload:
        size, sha = request.get("size"), request.get("sha256")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise BokehkitError(f"put {name}: needs the file's size in bytes")
        if not isinstance(sha, str) or len(sha) != 64:
            raise BokehkitError(f"put {name}: needs the file's sha256 (64 hex digits)")
        check_upload_size(name, size, first)
        with self._lock:
            if len(self._uploads) >= MAX_OPEN_UPLOADS:
                raise BokehkitError(f"put {name}: too many unfinished uploads")
            temp = folder / f".upload-{name}"
            flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0)
            fd = os.open(temp, flags | getattr(os, "O_BINARY", 0), 0o600)
            upload = _Upload(temp, folder / name, size, sha.lower(), file=os.fdopen(fd, "wb"))
            self._uploads[(str(request.get("job_dir")), name)] = upload
        return upload

    def _drop(self, key: tuple[str, str]) -> None:
        with self._lock:
            upload = self._uploads.pop(key, None)
        if upload is not None:
            upload.file.close()
            upload.path.unlink(missing_ok=True)

    def close_all(self) -> None:
        for key in list(self._uploads):
            self._drop(key)

    # ---------------------------------------------------------------- downloads
    def get(self, request: dict) -> None:
        job_id, name = request.get("id"), request.get("name")
        try:
            f = self._folders.open(request.get("job_dir"), name, "get")
        except BokehkitError as exc:
            self._emit({"type": "error", "id": job_id, "message": str(exc)})
            return
        digest, offset = hashlib.sha256(), 0
        with f:
            while chunk := f.read(CHUNK_BYTES):
                digest.update(chunk)
                data = base64.b64encode(chunk).decode("ascii")
                self._emit(
                    {"type": "chunk", "id": job_id, "name": name, "offset": offset, "data": data}
                )
                offset += len(chunk)
        end = {"type": "file_end", "id": job_id, "name": name, "size": offset}
        self._emit({**end, "sha256": digest.hexdigest()})


def check_upload_size(name: str, size: int, first: bytes) -> None:
    """Refuse an upload before it is stored: a BKRAW buffer must say (in the first chunk)
    a size within the pixel limit and be exactly as long as its header says."""
    if first[: len(rb.MAGIC)] == rb.MAGIC or name.endswith(".bkraw"):
        layout = rb._layout(first, name)  # checks the pixel limit
        if size != layout.start + layout.nbytes:
            raise BokehkitError(
                f"put {name}: {size} bytes, but its header says {layout.start + layout.nbytes}"
            )
        return
    limit = max_upload_bytes()
    if size > limit:
        raise BokehkitError(
            f"put {name}: {size / 2**20:.0f} MB is over the engine's upload limit of "
            f"{limit / 2**20:.0f} MB ({ENV_MAX_UPLOAD_MB})"
        )

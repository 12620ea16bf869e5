"""The folders the engine makes: job folders (the plug-in's buffers and the result) and
scratch folders (a render's temporaries).

Each is private (0700), named ``bokehkit-job-<pid>-…`` or ``bokehkit-engine-<pid>-…`` after
the engine process that made it, removed when the engine is done with it, when the engine
exits, and when its parent dies; what a killed engine left is swept by the next engine
that starts (`sweep_stale`: folders of ours whose process is gone).

A request names buffers inside a job folder; `JobFolders.open` is the only way a request
reaches a file: the folder must be one this engine made for the session, the name a plain
file name, the file a regular file (no links, devices or FIFOs). Any other name gets the
same message, so a request cannot learn whether some file exists.
"""

from __future__ import annotations

import os
import re
import shutil
import stat
import tempfile
import threading
from collections import OrderedDict
from pathlib import Path
from typing import BinaryIO

from ..errors import BokehkitError
from ..processes import pid_alive

JOB_PREFIX = "bokehkit-job-"
SCRATCH_PREFIX = "bokehkit-engine-"
#: A session keeps at most this many job folders; opening another removes the oldest.
MAX_JOB_FOLDERS = 8
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,99}")
_OWNED = re.compile(rf"({re.escape(JOB_PREFIX)}|{re.escape(SCRATCH_PREFIX)})(\d+)-")

_lock = threading.Lock()
_made: set[str] = set()  # every folder this process made and has not removed


def make_private_dir(prefix: str, base: str | os.PathLike | None = None) -> Path:
    """A fresh 0700 folder named after this process, removed by `remove_all` at exit."""
    path = tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=base)
    os.chmod(path, 0o700)
    with _lock:
        _made.add(path)
    return Path(path)


def remove(path: str | os.PathLike) -> None:
    shutil.rmtree(path, ignore_errors=True)
    with _lock:
        _made.discard(str(path))


def remove_all() -> None:
    """Remove every folder this process made (exit, a signal, the parent's death)."""
    with _lock:
        paths = list(_made)
        _made.clear()
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def sweep_stale(base: str | os.PathLike | None = None) -> list[str]:
    """Remove the folders in `base` (default: the temp dir) that an engine of this user
    made and left behind when it was killed: named after a process that no longer runs."""
    base = Path(base or tempfile.gettempdir())
    removed = []
    try:
        entries = list(os.scandir(base))
    except OSError:
        return removed
    uid = os.getuid() if hasattr(os, "getuid") else None
    for entry in entries:
        found = _OWNED.match(entry.name)
        if not found or int(found.group(2)) == os.getpid():
            continue
        try:
            info = entry.stat(follow_symlinks=False)
        except OSError:
            continue
        if not stat.S_ISDIR(info.st_mode) or (uid is not None and info.st_uid != uid):
            continue
        if not pid_alive(int(found.group(2))):
            shutil.rmtree(entry.path, ignore_errors=True)
            removed.append(entry.path)
    return removed


class JobFolders:
    """The job folders of one session, and the confinement of requests to them."""

    def __init__(self, base: str | os.PathLike | None = None) -> None:
        self.base = base
        self._folders: OrderedDict[str, Path] = OrderedDict()
        self._lock = threading.Lock()

    def create(self) -> Path:
        path = make_private_dir(JOB_PREFIX, self.base)
        with self._lock:
            self._folders[str(path)] = path
            while len(self._folders) > MAX_JOB_FOLDERS:
                _, oldest = self._folders.popitem(last=False)
                remove(oldest)
        return path

    def close(self, job_dir: object) -> None:
        with self._lock:
            path = self._folders.pop(job_dir, None) if isinstance(job_dir, str) else None
        if path is not None:
            remove(path)

    def close_all(self) -> None:
        with self._lock:
            paths = list(self._folders.values())
            self._folders.clear()
        for path in paths:
            remove(path)

    def folder(self, job_dir: object) -> Path:
        """The job folder a request names: one this session made, else BokehkitError."""
        with self._lock:
            path = self._folders.get(job_dir) if isinstance(job_dir, str) else None
        if path is None:
            raise BokehkitError(
                "job_dir is not a job folder this engine made for this client: ask for one "
                'with {"type": "open_job"} (docs/protocol.md)'
            )
        return path

    def open(self, job_dir: object, name: object, key: str) -> BinaryIO:
        """The buffer file `name` in the job folder, opened for reading. A name that is not a
        plain file name, or no regular file in the folder, gets one and the same message."""
        folder = self.folder(job_dir)
        refused = BokehkitError(f"{key}: {str(name)[:80]!r} is not a buffer file in the job folder")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise refused
        flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
        try:
            fd = os.open(folder / name, flags | getattr(os, "O_BINARY", 0))
        except OSError:
            raise refused from None
        f = os.fdopen(fd, "rb")
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            f.close()
            raise refused
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return f

    def result_path(self, job_dir: object, name: str) -> Path:
        return self.folder(job_dir) / name

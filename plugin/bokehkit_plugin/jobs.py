"""Per-job folders: created fresh under the temp dir, removed whatever happens."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager

PREFIX = "bokehkit-job-"


@contextmanager
def job_folder(base: str | None = None) -> Iterator[str]:
    """A fresh folder for one job's buffers; removed on exit, error or cancel alike."""
    path = tempfile.mkdtemp(prefix=PREFIX, dir=base)
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)
        if os.path.exists(path):  # a file still open on Windows: try once more
            shutil.rmtree(path, ignore_errors=True)

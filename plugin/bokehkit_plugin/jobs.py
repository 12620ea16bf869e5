"""Job folders on the host side: the engine makes them (it reads buffers only from folders
it made, docs/protocol.md); the plug-in writes its buffers there, reads the result, and
removes the folder when the job ends, whatever happened."""

from __future__ import annotations

import os
import shutil

PREFIX = "bokehkit-job-"


def remove_job_folder(path: str) -> None:
    """Remove a job folder the engine named; anything not named like one is left alone."""
    if not os.path.basename(os.path.normpath(path)).startswith(PREFIX):
        return
    shutil.rmtree(path, ignore_errors=True)
    if os.path.exists(path):  # a file still open on Windows: try once more
        shutil.rmtree(path, ignore_errors=True)

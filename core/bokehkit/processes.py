"""Whether a process still runs: the engine sweeps what killed processes left behind (job
folders, serve/jobdirs.py; half-written outputs, io/image.py) by the pid in the name."""

from __future__ import annotations

import os


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists (ours or anyone's)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    except OSError:
        return True
    return True

"""How long the engine process lives: as long as the host process that started it.

PR_SET_PDEATHSIG is not used: Linux sends it when the *thread* that started the child
exits, and hosts start the engine from short-lived worker threads (Krita's previews), so
it killed a healthy engine after every job. Instead:

- the plug-in passes the read end of a pipe whose write end only its own process holds
  (``BOKEHKIT_PARENT_FD``); when that process dies, whichever thread started us, the
  kernel closes the write end and a read here returns EOF at once;
- everywhere, a thread polls that the parent pid is unchanged (every 0.5 s), for hosts
  that pass no pipe.

Either way, and on SIGTERM/SIGHUP, the engine removes the folders it made before it exits.
"""

from __future__ import annotations

import os
import signal
import threading
import time

from . import jobdirs

ENV_PARENT_FD = "BOKEHKIT_PARENT_FD"
PARENT_POLL_S = 0.5


def _leave(code: int = 0) -> None:
    jobdirs.remove_all()
    os._exit(code)  # the render thread may be deep in numpy: no clean unwind


def die_with_parent() -> None:
    """Exit (removing our folders) when the parent process dies."""
    parent = os.getppid()
    fd_text = os.environ.pop(ENV_PARENT_FD, "")
    if fd_text.isdigit():
        fd = int(fd_text)

        def wait_for_eof() -> None:
            try:
                while os.read(fd, 4096):
                    pass  # the plug-in never writes; anything it did is ignored
            except OSError:
                pass
            _leave(0)

        threading.Thread(target=wait_for_eof, name="bokehkit-parent-pipe", daemon=True).start()

    if os.getppid() != parent:
        _leave(0)

    def poll() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent:
                _leave(0)

    threading.Thread(target=poll, name="bokehkit-parent-watch", daemon=True).start()


def clean_up_on_signals() -> None:
    """SIGTERM and SIGHUP remove our folders before the engine exits (main thread only)."""

    def handler(signum, frame) -> None:
        _leave(128 + signum)

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            try:
                signal.signal(sig, handler)
            except (ValueError, OSError):  # not the main thread, or not allowed here
                pass


def install(job_base=None, watch_parent: bool = True) -> None:
    """What `bokehkit serve` does first: sweep what killed engines left, clean up on
    signals, and (stdio) tie our lifetime to the parent's."""
    jobdirs.sweep_stale(job_base)
    if job_base is not None:
        jobdirs.sweep_stale(None)  # scratch folders are always in the temp dir
    clean_up_on_signals()
    if watch_parent:
        die_with_parent()

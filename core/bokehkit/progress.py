"""Progress reporting and cancellation for long work, independent of how it is shown."""

from __future__ import annotations

import threading
from collections.abc import Callable

ProgressCallback = Callable[[float, str], None]


class Cancelled(Exception):
    """Raised between units of work (tiles) once cancellation was requested."""


class Progress:
    """Reports fractions of a job in [0, 1]; `span` gives a part of the range to a sub-step."""

    def __init__(
        self,
        callback: ProgressCallback | None = None,
        cancel_event: threading.Event | None = None,
        start: float = 0.0,
        end: float = 1.0,
    ) -> None:
        self._callback = callback
        self.cancel_event = cancel_event or threading.Event()
        self._start, self._end = start, end
        self._lock = threading.Lock()

    def update(self, fraction: float, text: str = "") -> None:
        self.check_cancelled()
        if self._callback is not None:
            f = self._start + (self._end - self._start) * min(max(fraction, 0.0), 1.0)
            with self._lock:
                self._callback(f, text)

    def span(self, start: float, end: float) -> Progress:
        """A Progress for the sub-step that covers [start, end] of this one."""
        a = self._start + (self._end - self._start) * start
        b = self._start + (self._end - self._start) * end
        child = Progress(self._callback, self.cancel_event, a, b)
        child._lock = self._lock
        return child

    def cancel(self) -> None:
        self.cancel_event.set()

    def check_cancelled(self) -> None:
        if self.cancel_event.is_set():
            raise Cancelled("cancelled")

"""The progress bar every command shows on a terminal."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """A one-line bar on a terminal; occasional plain lines when the output is a log."""

    def __init__(self, stream=sys.stderr, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self._last_print = 0.0
        self._last_text = ""
        self._started = time.monotonic()

    def __call__(self, fraction: float, text: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if now - self._last_print < 0.1 and fraction < 1.0:
                return
            filled = int(30 * fraction)
            bar = "#" * filled + "-" * (30 - filled)
            line = f"\r[{bar}] {fraction * 100:3.0f}% {text[:60]:<60}"
            self.stream.write(line)
            if fraction >= 1.0:
                self.stream.write("\n")
            self.stream.flush()
        else:
            stage = text.split(",")[0]
            if stage != self._last_text or now - self._last_print > 5 or fraction >= 1.0:
                elapsed = now - self._started
                self.stream.write(f"{fraction * 100:3.0f}% {text} ({elapsed:.1f} s)\n")
                self.stream.flush()
                self._last_text = stage
            else:
                return
        self._last_print = now

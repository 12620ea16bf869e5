"""What the panel tells the user in words: why a choice is greyed out (short, no shell
commands or paths: those go to the tooltip), and that there is no depth, with one click to
each fix."""

from __future__ import annotations

import re

from .qt import QtWidgets, Signal

#: The fixes for "no depth" the panel offers, one button each: (id, button, tooltip).
DEPTH_FIXES = (
    ("install_depth_model", "Install depth model",
     "Download a depth model once (about 100 MB); every later render uses it"),
    ("paint_depth", "Paint Depth layer",
     "Add a layer named Depth to paint on: white = near, black = far"),
    ("paint_blur", "Paint Blur layer",
     "Add a layer named Blur: paint white where the blur should be stronger"),
    ("phone_depth", "Phone's depth…",
     "Use the depth a phone stored in the original photo (portrait-mode JPEG or HEIC)"),
)  # fmt: skip
NO_DEPTH = (
    "No depth: the blur grows with the distance from the subject, not with the real "
    "depth, so edges can look cut out."
)
_PATH = re.compile(r"(?:[A-Za-z]:)?[\\/][^\s;,()]*[\\/][^\s;,()]*")


def short_reason(reason: str) -> str:
    """The first clause of an engine's reason, without commands or file paths: what fits a
    line in a docker ("its model is not installed"). The whole text goes in a tooltip."""
    text = reason.split("; run:")[0].split("; import:")[0]
    text = re.split(r"[;:]\s", text, maxsplit=1)[0]
    text = _PATH.sub("", text)
    text = re.sub(r"\s+(at|in|from)\s*$", "", re.sub(r"\s{2,}", " ", text)).strip(" ,.")
    return text or "not available"


class DepthNotice(QtWidgets.QFrame):
    """ "No depth", and one button per fix; a click emits `fixRequested(id)`."""

    fixRequested = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self.setFrameShape(QtWidgets.QFrame.Shape.StyledPanel)
        self.label = QtWidgets.QLabel(NO_DEPTH)
        self.label.setWordWrap(True)
        grid = QtWidgets.QGridLayout(self)
        grid.setContentsMargins(6, 4, 6, 4)
        grid.setSpacing(4)
        grid.addWidget(self.label, 0, 0, 1, 2)
        self.buttons = {}
        for i, (fix_id, text, tip) in enumerate(DEPTH_FIXES):
            button = QtWidgets.QPushButton(text)
            button.setToolTip(tip)
            button.clicked.connect(lambda _=False, f=fix_id: self.fixRequested.emit(f))
            grid.addWidget(button, 1 + i // 2, i % 2)
            self.buttons[fix_id] = button

    def offer(self, fix_id: str, enabled: bool, why: str = "") -> None:
        """Enable or grey out one fix (e.g. no photo file to read the phone's depth from)."""
        button = self.buttons[fix_id]
        button.setEnabled(enabled)
        if why:
            button.setToolTip(why)

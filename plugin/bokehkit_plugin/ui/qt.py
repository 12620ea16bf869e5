"""Imports whichever PyQt is there: the one the host already loaded (Krita 5 runs PyQt5,
Krita 6 PyQt6: loading the other into its Qt would crash), else PyQt6, else PyQt5.

BOKEHKIT_QT=pyqt5 forces PyQt5 (tests run the panel under both). Only scoped enums
(``Qt.AlignmentFlag.AlignCenter``) are used: both bindings accept them.
"""

from __future__ import annotations

import os
import sys

if os.environ.get("BOKEHKIT_QT", "").lower() == "pyqt5":
    _order = ("PyQt5",)
elif "PyQt5.QtCore" in sys.modules and "PyQt6.QtCore" not in sys.modules:
    _order = ("PyQt5",)
else:
    _order = ("PyQt6", "PyQt5")

API = ""
for _name in _order:
    try:
        if _name == "PyQt6":
            from PyQt6 import QtCore, QtGui, QtWidgets
        else:
            from PyQt5 import QtCore, QtGui, QtWidgets
    except ImportError:
        continue
    API = _name
    break
else:
    raise ImportError("bokehkit's panel needs PyQt6 or PyQt5")

Qt = QtCore.Qt
Signal = QtCore.pyqtSignal
QT_VERSION = QtCore.QT_VERSION_STR


def event_pos(event) -> tuple[float, float]:
    """A mouse event's position in the widget (PyQt6 `position()`, PyQt5 `localPos()`)."""
    point = event.position() if hasattr(event, "position") else event.localPos()
    return point.x(), point.y()


def exec_dialog(dialog) -> int:
    return dialog.exec() if hasattr(dialog, "exec") else dialog.exec_()


__all__ = ["API", "QT_VERSION", "QtCore", "QtGui", "QtWidgets", "Qt", "Signal", "event_pos"]

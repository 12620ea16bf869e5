"""The panel in a modal dialog: what the engine shows when GIMP asks for one."""

from __future__ import annotations

import threading

from .panel import BokehPanel
from .preview import PreviewFn, PreviewImage
from .qt import QtCore, QtWidgets, exec_dialog


class BokehDialog(QtWidgets.QDialog):
    """A QDialog holding a BokehPanel; `chosen` holds the params after OK."""

    def __init__(self, parent=None, **panel_args) -> None:
        super().__init__(parent)
        self.setWindowTitle("Bokeh – depth of field")
        self.panel = BokehPanel(**panel_args, parent=self)
        self.chosen: dict | None = None
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.panel)
        self.panel.accepted.connect(self._ok)
        self.panel.rejected.connect(self.reject)
        self.resize(980, 560)

    def _ok(self, params: dict) -> None:
        self.chosen = params
        self.accept()

    def done(self, result: int) -> None:  # every way out: OK, Cancel, Esc, window close
        self.panel.shutdown()
        super().done(result)


_APP = None


def ensure_app() -> QtWidgets.QApplication:
    """The QApplication (created on first use in the engine, which has none)."""
    global _APP
    app = QtWidgets.QApplication.instance()
    if app is None:
        app = _APP = QtWidgets.QApplication(["bokehkit"])  # kept: Qt needs it alive
    return app


def run_dialog(
    source: PreviewImage,
    params: dict,
    preview_fn: PreviewFn | None,
    engines: dict,
    has_mask: bool,
    image_size: tuple[int, int],
    cancel_event: threading.Event | None = None,
) -> dict | None:
    """Show the dialog modally; the chosen params, or None if the user (or a `cancel`
    request, through `cancel_event`) closed it."""
    ensure_app()
    dialog = BokehDialog(
        params=params,
        preview_fn=preview_fn,
        engines=engines,
        source=source,
        has_mask=has_mask,
        image_size=image_size,
    )
    if cancel_event is not None:
        # The request thread cannot touch Qt objects; the UI thread polls the flag instead.
        poll = QtCore.QTimer(dialog)
        poll.timeout.connect(lambda: cancel_event.is_set() and dialog.reject())
        poll.start(100)
    dialog.raise_()
    dialog.activateWindow()
    exec_dialog(dialog)
    chosen = dialog.chosen
    dialog.deleteLater()
    return chosen

"""The panel in a modal dialog: what the engine shows when GIMP asks for one."""

from __future__ import annotations

import json
import os
import threading
from typing import Callable  # noqa: UP035 - subscripted at run time on Python 3.8 hosts

from .panel import BokehPanel
from .preview import PreviewFn, PreviewImage
from .qt import QtCore, QtGui, QtWidgets, exec_dialog

#: What the host tells the dialog about itself (all optional), in the `dialog` request's
#: "context": "mask_source" (where the painted mask comes from, e.g. "layer mask"),
#: "photo_file" (the photo on disk, for the phone's depth), "colours" ({"window": "#rrggbb",
#: "text": "#rrggbb"}: the host's theme), "title" (e.g. the layer being re-edited), "note"
#: (one line for the status, e.g. "the text layer is rendered as drawn").
CONTEXT_KEYS = ("mask_source", "photo_file", "colours", "title", "note")


class BokehDialog(QtWidgets.QDialog):
    """A QDialog holding a BokehPanel. After it closes: `chosen` holds the params (None if
    cancelled), `action` a fix the host should carry out (e.g. "paint_depth"), and
    `depth_photo` a photo whose phone depth the render should use."""

    def __init__(
        self,
        parent=None,
        context: dict | None = None,
        on_fix: Callable[[str, BokehDialog], None] | None = None,
        **panel_args,
    ) -> None:
        super().__init__(parent)
        self.context = dict(context or {})
        self.setWindowTitle(self.context.get("title") or "Lens Bokeh – depth of field")
        apply_host_colours(self, self.context.get("colours"))
        self.panel = BokehPanel(**panel_args, parent=self)
        self.panel.set_mask_source(self.context.get("mask_source"))
        if self.context.get("note"):
            self.panel.set_status(self.context["note"])
        self.chosen: dict | None = None
        self.action: str | None = None
        self.depth_photo: str | None = None
        self._on_fix = on_fix
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.addWidget(self.panel)
        self.panel.accepted.connect(self._ok)
        self.panel.rejected.connect(self.reject)
        self.panel.fixRequested.connect(self._fix)
        self.resize(1000, 600)
        self._report_path = os.environ.get("BOKEHKIT_DIALOG_REPORT")  # test hook
        if self._report_path:
            timer = QtCore.QTimer(self)
            timer.timeout.connect(self._write_report)
            timer.start(500)

    def _write_report(self) -> None:
        """Test hook: where the controls are on the screen and what the dialog says, for
        tests that drive it with the mouse (xdotool)."""

        def rect(widget):
            corner = widget.mapToGlobal(QtCore.QPoint(0, 0))
            return [corner.x(), corner.y(), widget.width(), widget.height()]

        std = QtWidgets.QDialogButtonBox.StandardButton
        panel = self.panel
        state = {
            "title": self.windowTitle(),
            "window": rect(self),
            "window_colour": self.palette().color(QtGui.QPalette.ColorRole.Window).name(),
            "ok": rect(panel.buttons.button(std.Ok)),
            "cancel": rect(panel.buttons.button(std.Cancel)),
            "aperture_slider": rect(panel.aperture_slider),
            "focus_note": panel.focus_note.text() if panel.focus_note.isVisible() else "",
            "status": panel.status.toolTip(),
            "depth_notice": panel.depth_notice.isVisible(),
            "params": panel.params(),
        }
        tmp = self._report_path + ".tmp"
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(state, f)
        os.replace(tmp, self._report_path)

    def _ok(self, params: dict) -> None:
        self.chosen = params
        self.accept()

    def _fix(self, fix_id: str) -> None:
        if self._on_fix is not None:
            self._on_fix(fix_id, self)

    def finish_with(self, action: str) -> None:
        """Close with the current params and a fix for the host to carry out."""
        self.action = action
        self._ok(self.panel.params())

    def result_dict(self) -> dict | None:
        """What the dialog request answers: params, and the host's follow-up."""
        if self.chosen is None:
            return None
        return {"params": self.chosen, "action": self.action, "depth_photo": self.depth_photo}

    def done(self, result: int) -> None:  # every way out: OK, Cancel, Esc, window close
        self.panel.shutdown()
        super().done(result)


def apply_host_colours(widget: QtWidgets.QWidget, colours: dict | None) -> None:
    """Follow the host's theme (GIMP's dark theme, say) instead of Qt's light default: a
    palette built from its window and text colours."""
    if not colours or not colours.get("window") or not colours.get("text"):
        return
    window, text = QtGui.QColor(colours["window"]), QtGui.QColor(colours["text"])
    if not (window.isValid() and text.isValid()):
        return
    dark = window.lightness() < 128
    base = window.darker(125) if dark else window.lighter(115)
    button = window.lighter(125) if dark else window.darker(105)
    role = QtGui.QPalette.ColorRole
    palette = QtGui.QPalette()
    for r, colour in (
        (role.Window, window), (role.WindowText, text), (role.Base, base),
        (role.AlternateBase, window), (role.Text, text), (role.Button, button),
        (role.ButtonText, text), (role.ToolTipBase, base), (role.ToolTipText, text),
        (role.Highlight, QtGui.QColor(colours.get("highlight") or "#3d7fd6")),
        (role.HighlightedText, QtGui.QColor("white")),
    ):  # fmt: skip
        palette.setColor(r, colour)
    disabled = QtGui.QPalette.ColorGroup.Disabled
    grey = QtGui.QColor(text)
    grey.setAlpha(120)
    for r in (role.WindowText, role.Text, role.ButtonText):
        palette.setColor(disabled, r, grey)
    app = QtWidgets.QApplication.instance()
    if app is not None:  # the engine's own application: the dialog is all it shows
        app.setStyle("Fusion")  # a platform style may ignore the palette
        app.setPalette(palette)
    widget.setPalette(palette)


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
    context: dict | None = None,
    on_fix: Callable[[str, BokehDialog], None] | None = None,
) -> dict | None:
    """Show the dialog modally; {"params", "action", "depth_photo"} (BokehDialog), or None
    if the user (or a `cancel` request, through `cancel_event`) closed it."""
    ensure_app()
    dialog = BokehDialog(
        params=params,
        preview_fn=preview_fn,
        engines=engines,
        source=source,
        has_mask=has_mask,
        image_size=image_size,
        context=context,
        on_fix=on_fix,
    )
    if cancel_event is not None:
        # The request thread cannot touch Qt objects; the UI thread polls the flag instead.
        poll = QtCore.QTimer(dialog)
        poll.timeout.connect(lambda: cancel_event.is_set() and dialog.reject())
        poll.start(100)
    dialog.raise_()
    dialog.activateWindow()
    exec_dialog(dialog)
    chosen = dialog.result_dict()
    dialog.deleteLater()
    return chosen

"""The shared panel's behaviour a photographer meets, offscreen under PyQt6 (the same code
runs under PyQt5 in Krita 5: test_dialog.py runs the panel checks there): the preview's
zoom, pan and before/after, the depth view, the depth range's two handles, third stops,
"auto" focal length, the notes it shows, buttons that stay put, the host's colours."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import
REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("PyQt6.QtWidgets", reason="PyQt6 is in requirements/gui.txt")

from bokehkit_plugin import schema  # noqa: E402
from bokehkit_plugin.ui.controls import THIRD_STOPS  # noqa: E402
from bokehkit_plugin.ui.preview import PreviewImage  # noqa: E402
from bokehkit_plugin.ui.qt import Qt, QtCore, QtGui, QtWidgets  # noqa: E402


@pytest.fixture(scope="module")
def qapp():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["test"])


def picture(value: int, w: int = 80, h: int = 40) -> PreviewImage:
    return PreviewImage(w, h, bytes([value, value, value, 255]) * (w * h))


def mouse(widget, kind, x, y, button=Qt.MouseButton.LeftButton):
    """A mouse event; a move carries the held left button (Qt drops button-less moves to
    widgets that do not track the mouse)."""
    point = QtCore.QPointF(x, y)
    held = Qt.MouseButton.LeftButton if kind == QtCore.QEvent.Type.MouseMove else button
    event = QtGui.QMouseEvent(kind, point, widget.mapToGlobal(point), button, held,
                              Qt.KeyboardModifier.NoModifier)  # fmt: skip
    QtWidgets.QApplication.sendEvent(widget, event)


def press_release(widget, x, y, to=None):
    mouse(widget, QtCore.QEvent.Type.MouseButtonPress, x, y)
    if to is not None:
        for i in range(1, 6):
            fx, fy = x + (to[0] - x) * i / 5, y + (to[1] - y) * i / 5
            mouse(widget, QtCore.QEvent.Type.MouseMove, fx, fy, Qt.MouseButton.NoButton)
        x, y = to
    mouse(widget, QtCore.QEvent.Type.MouseButtonRelease, x, y)


def wheel(widget, x, y, steps, modifiers=Qt.KeyboardModifier.NoModifier):
    point = QtCore.QPointF(x, y)
    event = QtGui.QWheelEvent(point, widget.mapToGlobal(point), QtCore.QPoint(),
                              QtCore.QPoint(0, 120 * steps), Qt.MouseButton.NoButton, modifiers,
                              Qt.ScrollPhase.NoScrollPhase, False)  # fmt: skip
    QtWidgets.QApplication.sendEvent(widget, event)
    return event


def test_preview_zooms_around_the_pointer_pans_and_still_focuses_on_a_click(qapp):
    from bokehkit_plugin.ui.preview import PreviewView

    view = PreviewView()
    view.resize(400, 200)
    view.set_image(picture(90))
    view.show()
    qapp.processEvents()
    rect = view.image_rect()
    x, y = rect.left() + 0.75 * rect.width(), rect.top() + 0.25 * rect.height()
    wheel(view, x, y, 2)
    assert view.zoom() == pytest.approx(1.5625)
    zoomed = view.image_rect()
    # the point under the pointer stayed under it
    assert (x - zoomed.left()) / zoomed.width() == pytest.approx(0.75, abs=0.01)
    clicks = []
    view.focusClicked.connect(lambda fx, fy: clicks.append((fx, fy)))
    press_release(view, x, y)  # a click, zoomed: still the point under it
    assert clicks[-1] == pytest.approx((0.75, 0.25), abs=0.01)
    before = view.image_rect().left()
    press_release(view, 200, 100, to=(260, 100))  # a drag pans, and is no click
    assert view.image_rect().left() == pytest.approx(before + 60, abs=1)
    assert len(clicks) == 1
    for _ in range(30):
        wheel(view, 200, 100, 1)
    assert view.zoom() == 8.0  # at most 8×
    mouse(view, QtCore.QEvent.Type.MouseButtonDblClick, 200, 100)
    assert view.zoom() == 1.0 and view.image_rect() == rect  # fitted again


def test_before_after_and_the_depth_view(qapp):
    from bokehkit_plugin.ui.panel import BokehPanel

    requests = []

    def preview_fn(params, cancel, progress):
        requests.append(params)
        return picture(200 if params.get("output") == "depth" else 30)

    panel = BokehPanel(source=picture(90), preview_fn=preview_fn, has_mask=False)
    view = panel.preview
    view.set_result(picture(30))
    assert view.shown_pixmap().toImage().pixelColor(1, 1).red() == 30  # after
    view.view_buttons["before"].click()
    assert view.shown_pixmap().toImage().pixelColor(1, 1).red() == 90  # the photo as it is
    key = QtGui.QKeyEvent(QtCore.QEvent.Type.KeyPress, Qt.Key.Key_Backslash,
                          Qt.KeyboardModifier.NoModifier, "\\\\")  # fmt: skip
    QtWidgets.QApplication.sendEvent(view, key)
    assert view.view() == "after"  # Lightroom's key flips back
    view.view_buttons["depth"].click()
    panel._start_preview()  # what the debounce timer does
    deadline = QtCore.QDeadlineTimer(10000)
    while not (requests and view.shown_pixmap()) and not deadline.hasExpired():
        qapp.processEvents()
    assert requests[-1]["output"] == "depth"
    while (
        view.shown_pixmap() is None or view.shown_pixmap().toImage().pixelColor(1, 1).red() != 200
    ):
        qapp.processEvents()
        assert not deadline.hasExpired()
    assert panel.params()["output"] == "bokeh"  # seeing depth never changes what OK renders
    panel.shutdown()


def test_depth_range_has_two_handles_that_never_cross(qapp):
    from bokehkit_plugin.ui.panel import BokehPanel

    panel = BokehPanel(has_mask=False)
    panel.resize(700, 500)
    panel.show()
    assert panel._range_row.isHidden()  # only for focus on a depth range
    panel.set_params({"focus_source": "range", "focus_near": 0.3, "focus_far": 0.5})
    qapp.processEvents()
    slider = panel.range_slider
    assert not panel._range_row.isHidden()
    y = slider.height() / 2
    press_release(
        slider, slider.handle_x(1), y, to=(slider.handle_x(1) + 0.2 * (slider.width() - 14), y)
    )
    near, far = panel.params()["focus_near"], panel.params()["focus_far"]
    assert near == 0.3 and far == pytest.approx(0.7, abs=0.02)
    press_release(slider, slider.handle_x(0), y, to=(slider.width() - 2, y))  # near past far
    assert (
        panel.params()["focus_near"] == panel.params()["focus_far"] == pytest.approx(far, abs=0.02)
    )
    assert "of the depth" in panel.range_label.text()


def test_aperture_moves_in_third_stops_typed_values_stay(qapp):
    from bokehkit_plugin.ui.panel import BokehPanel

    panel = BokehPanel(has_mask=False)
    seen = set()
    for pos in range(panel.aperture_slider.minimum(), panel.aperture_slider.maximum() + 1):
        panel.aperture_slider.setValue(pos)
        seen.add(panel.params()["aperture"])
    assert seen == set(THIRD_STOPS)  # never f/1.21 or f/1.14
    panel.aperture_spin.setValue(1.75)  # typed: kept as typed
    assert panel.params()["aperture"] == 1.75
    assert THIRD_STOPS[panel.aperture_slider.value()] == 1.8  # the slider shows the nearest stop


def test_focal_length_goes_back_to_auto_with_one_click(qapp):
    from bokehkit_plugin.ui.panel import BokehPanel

    panel = BokehPanel(params={"focal_length": 85.0}, has_mask=False)
    assert panel.params()["focal_length"] == 85.0 and not panel.focal.auto.isChecked()
    panel.focal.auto.click()
    assert panel.params()["focal_length"] == 0.0 and not panel.focal_spin.isEnabled()
    panel.focal.auto.click()
    assert panel.params()["focal_length"] == 85.0  # the last millimetres come back


def test_notes_say_why_and_stay_short(qapp):
    from bokehkit_plugin.ui.panel import HIDING_MASK_TIPS, MASK_GONE, BokehPanel

    engines = {
        "classical": {"available": True},
        "magicbokeh": {"available": False, "reason": "no MagicBokeh model at "
                       "/job/home/.local/share/bokehkit/models/magicbokeh; import: bokehkit "
                       "models import magicbokeh FOLDER"},
        "realesrgan": {"available": False, "reason": "its model is not installed; run: "
                       "bokehkit models install realesrgan-x4plus"},
        "subject": {"available": True},
        "depth": {"available": False, "reason": "no depth model is installed"},
    }  # fmt: skip
    panel = BokehPanel(engines=engines, params={"sr_factor": 2}, has_mask=True)
    assert panel.engine_note.text() == "MagicBokeh (AI): no MagicBokeh model"
    assert panel.upscaler_note.text() == "Real-ESRGAN (AI): its model is not installed"
    for note in (panel.engine_note, panel.upscaler_note):  # no commands, no paths in view...
        assert "bokehkit models" not in note.text() and "/job/" not in note.text()
    assert "import magicbokeh" in panel.engine_note.toolTip()  # ...but in the tooltip
    assert panel.focus_combo.itemText(2) == "Auto (the subject)"
    panel.set_engines({**engines, "subject": {"available": False, "reason": "x"}})
    assert panel.focus_combo.itemText(2) == "Auto (image centre)"
    assert not panel.depth_notice.isHidden()  # no depth: said before any render
    fixes = []
    panel.fixRequested.connect(fixes.append)
    panel.depth_notice.buttons["paint_depth"].click()
    assert fixes == ["paint_depth"]
    panel.set_params({"focus_source": "mask"})
    panel.set_mask_source("layer mask")
    assert panel.focus_note.text() == HIDING_MASK_TIPS["layer mask"]
    panel.set_mask_source("transparencymask “Sharp”")
    assert panel.focus_note.text() == HIDING_MASK_TIPS["transparencymask"]
    panel.set_mask_source("selection")
    assert panel.focus_note.isHidden()
    panel.set_has_mask(False)  # the mask went away: focus moves to Auto, and it says so
    assert panel.params()["focus_source"] == "auto" and panel.focus_note.text() == MASK_GONE
    panel.focus_combo.setCurrentIndex(1)
    panel.focus_combo.activated.emit(1)  # the user's own choice: nothing to explain
    assert panel.focus_note.isHidden()
    # a preview that had real depth (a phone's, a Depth layer) hides the notice
    panel._preview_done(PreviewImage(1, 1, bytes(4), ("depth: IMG_1.jpg (phone)",)))
    assert panel.depth_notice.isHidden()


def test_buttons_stay_put_when_a_render_starts(qapp):
    from bokehkit_plugin.ui.panel import BokehPanel

    panel = BokehPanel(has_mask=False, compact=True, ok_text="Apply")
    panel.resize(300, 420)
    panel.show()
    qapp.processEvents()
    std = QtWidgets.QDialogButtonBox.StandardButton
    cancel = panel.buttons.button(std.Cancel)
    where = cancel.mapTo(panel, QtCore.QPoint(0, 0))
    panel.set_busy(True, "rendering")
    panel.set_status("rendering “Background” (focus: auto); a long note that would wrap " * 3)
    qapp.processEvents()
    assert cancel.mapTo(panel, QtCore.QPoint(0, 0)) == where
    panel.set_busy(False, "done")
    panel.set_status("")
    qapp.processEvents()
    assert cancel.mapTo(panel, QtCore.QPoint(0, 0)) == where


def test_dialog_takes_the_hosts_dark_colours(qapp):
    from bokehkit_plugin.ui.dialog import BokehDialog

    dialog = BokehDialog(has_mask=False, context={"colours": {"window": "#333333",
                                                              "text": "#dddddd"}})  # fmt: skip
    window = dialog.palette().color(QtGui.QPalette.ColorRole.Window)
    text = dialog.panel.palette().color(QtGui.QPalette.ColorRole.WindowText)
    assert window.name() == "#333333" and text.name() == "#dddddd"
    assert schema.validate(dialog.panel.params())  # still a working panel
    dialog.reject()


def test_the_panel_says_which_engine_renders(qapp):
    """A remote engine (issue 13): the label the plug-ins get from engines_for_panel."""
    from bokehkit_plugin.ui.panel import BokehPanel

    panel = BokehPanel(engines={"classical": {"available": True}})
    assert panel.engine_where.isHidden()
    where = {"label": "remote: CUDA, MagicBokeh available"}
    panel.set_engines({"classical": {"available": True}, "where": where})
    assert panel.engine_where.text() == "Engine: remote: CUDA, MagicBokeh available"
    assert not panel.engine_where.isHidden()

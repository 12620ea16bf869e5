"""The shared Qt panel (plugin/bokehkit_plugin/ui) under PyQt6 and PyQt5, offscreen, and
the dialog the engine shows for GIMP."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

os.environ["QT_QPA_PLATFORM"] = "offscreen"  # before any Qt import
REPO = Path(__file__).resolve().parents[2]
pytest.importorskip("PyQt6.QtWidgets", reason="PyQt6 is in requirements/gui.txt")

from bokehkit_plugin import rawbuffer, schema  # noqa: E402
from bokehkit_plugin.client import Cancelled, EngineClient  # noqa: E402
from bokehkit_plugin.ui.preview import PreviewImage  # noqa: E402
from bokehkit_plugin.ui.qt import API, Qt, QtCore, QtWidgets  # noqa: E402

NO_MAGIC = {
    "classical": {"available": True},
    "magicbokeh": {"available": False, "reason": "needs torch, which is not installed"},
    "realesrgan": {
        "available": False,
        "reason": "its model is not installed; run: bokehkit models install realesrgan-x4plus",
    },
}
SAMPLE = REPO / "core" / "bokehkit" / "data" / "sample"

# The same checks, as a script, so that PyQt5 runs in a process of its own (one Qt per
# process) and so that it runs exactly as the in-process PyQt6 test does.
PANEL_CHECKS = r"""
import sys
from bokehkit_plugin import schema
from bokehkit_plugin.ui.preview import PreviewImage
from bokehkit_plugin.ui.qt import API, QtCore, QtWidgets, Qt
from bokehkit_plugin.ui.panel import BokehPanel

def check_panel(expected_api, engines):
    assert API == expected_api, API
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["test"])
    source = PreviewImage(40, 20, bytes([90, 120, 160, 255]) * 800)
    panel = BokehPanel(engines=engines, source=source, image_size=(4000, 2000))
    panel.resize(900, 500)
    panel.show()
    app.processEvents()
    # params round-trip
    chosen = {"aperture": 1.4, "focal_length": 85.0, "sr_factor": 2, "focus_source": "point",
              "focus_x": 0.25, "focus_y": 0.75, "blades": 6, "blade_rotation": 15.0,
              "highlights": 3.0, "grain": 0.5, "engine": "classical",
              "upscaler": "classical", "sr_detail": 0.4}
    panel.set_params(chosen)
    assert panel.params() == schema.validate(chosen), panel.params()
    assert "blur ≈" in panel.blur_label.text()
    # magicbokeh greyed with its reason
    item = panel.engine_combo.model().item(1)
    assert not item.isEnabled()
    assert "torch" in item.toolTip() and "torch" in panel.engine_note.text()
    panel.set_params(dict(chosen, engine="magicbokeh"))
    assert panel.params()["engine"] == "classical"
    # so is Real-ESRGAN, the same way, when the engine says its model is missing
    item = panel.upscaler_combo.model().item(1)
    assert not item.isEnabled() and "models install realesrgan-x4plus" in item.toolTip()
    assert "Real-ESRGAN (AI): its model is not installed" in panel.upscaler_note.text()
    assert not panel.upscaler_note.isHidden() and "ESRGAN" not in panel.engine_note.text()
    panel.set_params(dict(chosen, upscaler="realesrgan"))
    assert panel.params()["upscaler"] == "classical"
    assert not panel.detail_spin.isEnabled()
    panel.set_params(dict(chosen, sr_factor=1))  # the upscaler does not matter at ×1
    assert panel.upscaler_note.isHidden() and panel.upscaler_note.text()
    # a click on the preview focuses there
    panel.set_params({"focus_source": "auto"})
    rect = panel.preview.image_rect()
    x, y = rect.left() + 0.8 * rect.width(), rect.top() + 0.3 * rect.height()
    from bokehkit_plugin.ui.qt import QtGui
    pos = QtCore.QPoint(int(x), int(y))
    for kind in (QtCore.QEvent.Type.MouseButtonPress, QtCore.QEvent.Type.MouseButtonRelease):
        event = QtGui.QMouseEvent(kind, QtCore.QPointF(pos),
                                  QtCore.QPointF(panel.preview.mapToGlobal(pos)),
                                  Qt.MouseButton.LeftButton, Qt.MouseButton.LeftButton,
                                  Qt.KeyboardModifier.NoModifier)
        QtWidgets.QApplication.sendEvent(panel.preview, event)  # a click: press and release
    got = panel.params()
    assert got["focus_source"] == "point", got
    assert abs(got["focus_x"] - 0.8) < 0.02 and abs(got["focus_y"] - 0.3) < 0.03, got
    panel.shutdown()
    return panel

# Upscaler and AI detail: enabled only where they change the result; changing only them
# renders no new preview (previews have no super-resolution).
def check_upscaler_controls(expected_api):
    assert API == expected_api, API
    app = QtWidgets.QApplication.instance() or QtWidgets.QApplication(["test"])
    engines = {"classical": {"available": True}, "magicbokeh": {"available": True},
               "realesrgan": {"available": True}}
    panel = BokehPanel(engines=engines, has_mask=False,
                       preview_fn=lambda params, cancel, progress: PreviewImage(1, 1, bytes(4)))
    assert panel.params()["upscaler"] == "classical" and panel.params()["sr_detail"] == 0.25
    assert panel.upscaler_combo.model().item(1).isEnabled() and panel.upscaler_note.isHidden()
    assert panel.upscaler_combo.itemText(1) == "Real-ESRGAN (AI)"
    assert panel.detail_spin.toolTip() == schema.BY_NAME["sr_detail"].help
    def state(sr_factor, upscaler):
        panel.set_params({"sr_factor": sr_factor, "upscaler": upscaler})
        return panel.upscaler_combo.isEnabled(), panel.detail_spin.isEnabled()
    assert state(1, "classical") == (False, False)  # ×1: nothing is upscaled
    assert state(1, "realesrgan") == (False, False)
    assert state(2, "classical") == (True, False)  # Lanczos has no detail to mix
    assert state(2, "realesrgan") == (True, True)
    assert state(4, "realesrgan") == (True, True)
    # the user's own clicks, not set_params, move the controls
    panel.sr_combo.setCurrentIndex(0)
    assert not panel.detail_spin.isEnabled() and not panel.upscaler_combo.isEnabled()
    panel.sr_combo.setCurrentIndex(1)
    assert panel.detail_spin.isEnabled()
    panel.upscaler_combo.setCurrentIndex(0)
    assert not panel.detail_spin.isEnabled() and panel.upscaler_combo.isEnabled()
    panel.upscaler_combo.setCurrentIndex(1)
    panel.detail_spin.setValue(0.8)
    got = panel.params()
    assert (got["sr_factor"], got["upscaler"], got["sr_detail"]) == (2, "realesrgan", 0.8), got
    # previews: SR-only changes start none; a look change or a host's refresh does
    panel._debounce.stop()
    panel.detail_spin.setValue(0.5)
    panel.sr_combo.setCurrentIndex(2)
    panel.upscaler_combo.setCurrentIndex(0)
    assert not panel._debounce.isActive()
    panel.set_params(panel.params())  # the same params again: a host wants a fresh preview
    assert panel._debounce.isActive()
    panel._debounce.stop()
    panel.grain_spin.setValue(0.3)
    assert panel._debounce.isActive()
    # an engine that turns out to lack the model: the choice falls back, detail greys out
    panel.upscaler_combo.setCurrentIndex(1)
    panel.set_engines(dict(engines, realesrgan={"available": False, "reason": "no model"}))
    assert panel.params()["upscaler"] == "classical" and not panel.detail_spin.isEnabled()
    assert panel.upscaler_note.text() == "Real-ESRGAN (AI): no model"
    panel.set_engines({"classical": {"available": True}})  # an engine that does not say
    assert not panel.upscaler_combo.model().item(1).isEnabled()
    assert panel.upscaler_combo.model().item(0).isEnabled()  # classical needs nothing
    panel.shutdown()

if __name__ == "__main__":
    no_model = "its model is not installed; run: bokehkit models install realesrgan-x4plus"
    check_panel(sys.argv[1], {"classical": {"available": True},
        "magicbokeh": {"available": False, "reason": "needs torch, which is not installed"},
        "realesrgan": {"available": False, "reason": no_model}})
    check_upscaler_controls(sys.argv[1])
    print("ok")
"""


@pytest.fixture(scope="module")
def qapp():
    return QtWidgets.QApplication.instance() or QtWidgets.QApplication(["bokehkit-tests"])


@pytest.fixture(scope="module")
def checks():
    namespace: dict = {"__name__": "panel_checks"}
    exec(compile(PANEL_CHECKS, "panel_checks", "exec"), namespace)
    return namespace


def test_panel_under_pyqt6(qapp, checks):
    checks["check_panel"]("PyQt6", NO_MAGIC)


def test_upscaler_controls_under_pyqt6(qapp, checks):
    checks["check_upscaler_controls"]("PyQt6")


def test_panel_under_pyqt5(tmp_path):
    probe = subprocess.run([sys.executable, "-c", "import PyQt5.QtWidgets"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("PyQt5 is not installed (pip install PyQt5 to test the Krita 5 binding)")
    script = tmp_path / "panel_checks.py"
    script.write_text(PANEL_CHECKS)
    env = {**os.environ, "BOKEHKIT_QT": "pyqt5", "PYTHONPATH": str(REPO / "plugin")}
    run = subprocess.run(
        [sys.executable, str(script), "PyQt5"], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0 and "ok" in run.stdout, run.stderr[-2000:]


def test_blades_and_focal_length_specials(qapp):
    from bokehkit_plugin.ui.panel import BokehPanel

    panel = BokehPanel(params={"blades": 0, "focal_length": 0.0}, has_mask=False)
    assert panel.params()["blades"] == 0 and panel.params()["focal_length"] == 0.0
    assert not panel.rotation_spin.isEnabled()  # rotation means nothing for round discs
    assert panel.params()["focus_source"] == "auto"  # no mask was painted
    assert not panel.focus_combo.model().item(0).isEnabled()
    panel.blades_spin.setValue(5)
    assert panel.params()["blades"] == 5 and panel.rotation_spin.isEnabled()
    panel.aperture_slider.setValue(0)
    assert panel.params()["aperture"] == schema.BY_NAME["aperture"].minimum


def _wait(app, condition, timeout=60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        app.processEvents()
        time.sleep(0.02)
    assert condition()


def _pixels(image) -> bytes:
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes())
    return bytes(ptr)


def _sample_request(job_dir: Path) -> dict:
    rgb = np.asarray(Image.open(SAMPLE / "sample.jpg").convert("RGB"))
    depth = np.asarray(Image.open(SAMPLE / "depth.png")).astype(np.uint16)
    h, w = rgb.shape[:2]
    image = rawbuffer.RawImage(w, h, rgb.tobytes(), "RGB", "RGBA", "uint8", "srgb")
    depth_buf = rawbuffer.RawImage(w, h, depth.tobytes(), "Y", "RGBA", "uint16", "linear")
    rawbuffer.write(str(job_dir / "image.bkraw"), image)
    rawbuffer.write(str(job_dir / "depth.bkraw"), depth_buf)
    return {"job_dir": str(job_dir), "image": "image.bkraw", "depth": "depth.bkraw"}


def test_live_preview_and_screenshot(qapp, tmp_path):
    """The dialog as GIMP users see it, with a preview rendered by the engine in-process;
    the screenshot goes to docs/img/dialog.png."""
    from bokehkit.serve import server
    from bokehkit_plugin.ui.dialog import BokehDialog

    request = _sample_request(tmp_path)
    inputs = server.dialog_inputs(request, tmp_path)
    calls = []
    preview_fn = inputs.pop("preview_fn")
    inputs.pop("inputs")  # what the dialog's fixes change (dialog_fixes.py)

    def counting_preview(params, cancel, on_progress):
        calls.append(threading.current_thread() is threading.main_thread())
        return preview_fn(params, cancel, on_progress)

    params = {"aperture": 1.8, "focus_source": "point", "focus_x": 210 / 960, "focus_y": 90 / 640}
    dialog = BokehDialog(params=params, engines=NO_MAGIC, preview_fn=counting_preview, **inputs)
    dialog.show()
    first = dialog.panel.preview.shown_pixmap().toImage()
    _wait(qapp, lambda: calls and not dialog.panel.preview._message)  # preview shown
    assert calls == [False]  # rendered off the UI thread
    shown = dialog.panel.preview.shown_pixmap().toImage()
    assert shown.size() == first.size()
    assert _pixels(shown) != _pixels(first)  # the rendered preview replaced the photo
    assert "background blur ≈" in dialog.panel.blur_label.text()
    # The committed screenshot is refreshed only on request, so a test run leaves the
    # tree as it was.
    update = os.environ.get("BOKEHKIT_UPDATE_SCREENSHOTS") == "1"
    out = REPO / "docs" / "img" / "dialog.png" if update else tmp_path / "dialog.png"
    out.parent.mkdir(parents=True, exist_ok=True)
    assert dialog.grab().save(str(out))
    dialog.reject()


def test_engine_shows_the_dialog_and_a_cancel_closes_it(tmp_path):
    """GIMP's path: `dialog` request to `bokehkit serve`; a host cancel closes the dialog
    and the engine keeps serving."""
    h, w = 40, 60
    image = rawbuffer.RawImage(w, h, bytes([128, 64, 32]) * (w * h), "RGB")
    env = {"PYTHONPATH": str(REPO / "core"), "QT_QPA_PLATFORM": "offscreen"}
    with EngineClient([sys.executable, "-m", "bokehkit"], env, str(tmp_path)) as client:
        client.ping()
        cancel = threading.Event()
        threading.Timer(4.0, cancel.set).start()
        started = time.monotonic()
        with pytest.raises(Cancelled):
            client.dialog(image, {"aperture": 2.8}, cancel_event=cancel)
        assert time.monotonic() - started < 7.5
        assert client.running and client.ping()["type"] == "pong"
    assert list(tmp_path.iterdir()) == []


def test_qt_shim_reports_its_binding():
    assert API in ("PyQt6", "PyQt5")
    assert QtCore.QT_VERSION_STR and Qt.AlignmentFlag.AlignCenter is not None
    assert PreviewImage(1, 1, b"\0\0\0\0").width == 1


def test_panel_follows_whether_the_document_has_a_mask(qapp):
    from bokehkit_plugin.ui.panel import BokehPanel

    panel = BokehPanel(has_mask=True)
    panel.set_params({"focus_source": "mask"})
    assert panel.params()["focus_source"] == "mask"
    panel.set_has_mask(False)
    assert panel.params()["focus_source"] == "auto"
    assert not panel.focus_combo.model().item(0).isEnabled()
    panel.set_has_mask(True)
    assert panel.focus_combo.model().item(0).isEnabled()

"""The "no depth" fixes in the dialog the engine shows for GIMP (plugin/bokehkit_plugin/ui).

The engine does what it can itself: it installs the depth model (it is the engine) and
reads a phone's depth from the photo's file. Painting a Depth or Blur channel is GIMP's
work: the dialog closes and tells the plug-in (BokehDialog.action), which adds the channel.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ..errors import BokehkitError
from ..progress import Cancelled, Progress
from ..scene.phone_depth import HEIF_SUFFIXES

PHONE_PHOTO_SUFFIXES = (".jpg", ".jpeg", *HEIF_SUFFIXES)
HOST_FIXES = ("paint_depth", "paint_blur")


def phone_photo(context: dict) -> str | None:
    """The photo's own file when it can hold a phone's depth (JPEG, HEIC), else None."""
    path = str(context.get("photo_file") or "")
    if path and Path(path).suffix.lower() in PHONE_PHOTO_SUFFIXES and Path(path).is_file():
        return path
    return None


class DialogFixes:
    """Called with (fix_id, dialog) on the UI thread by BokehDialog."""

    def __init__(self, inputs, context: dict, engines_status, install_model) -> None:
        from bokehkit_plugin.ui.qt import QtCore, Signal

        class Bridge(QtCore.QObject):  # install thread -> UI thread
            progress = Signal(float, str)
            done = Signal(str)

        self._inputs = inputs  # server.Inputs the previews render from (mutated here)
        self._context = context
        self._engines_status = engines_status
        self._install_model = install_model
        self._bridge = Bridge()
        self._dialog = None
        self._cancel = threading.Event()
        self._bridge.progress.connect(
            lambda f, t: self._dialog and self._dialog.panel.set_progress(f, t)
        )
        self._bridge.done.connect(self._installed)

    def __call__(self, fix_id: str, dialog) -> None:
        self._dialog = dialog
        if fix_id in HOST_FIXES:
            dialog.finish_with(fix_id)
        elif fix_id == "phone_depth":
            self._use_phone_depth(dialog)
        elif fix_id == "install_depth_model":
            self._start_install(dialog)

    def shutdown(self) -> None:
        self._cancel.set()

    # ------------------------------------------------------------ phone depth
    def _use_phone_depth(self, dialog) -> None:
        path = phone_photo(self._context)
        if path is None:  # no photo file GIMP knows of that can hold one: ask for it
            from bokehkit_plugin.ui.qt import QtWidgets

            start = str(Path(str(self._context.get("photo_file") or Path.home())).parent)
            path, _ = QtWidgets.QFileDialog.getOpenFileName(
                dialog,
                "The original phone photo",
                start,
                "Phone photos (*.jpg *.jpeg *.heic *.heif)",
            )
            if not path:
                return
        self._inputs.depth_photo = path
        dialog.depth_photo = path
        dialog.panel.set_status(f"depth from {Path(path).name}")
        dialog.panel.set_params(dialog.panel.params())  # a fresh preview, with that depth

    # ---------------------------------------------------------------- install
    def _start_install(self, dialog) -> None:
        model_id = (self._engines_status().get("depth") or {}).get("install")
        if not model_id:
            dialog.panel.set_has_depth(True)
            return
        dialog.panel.depth_notice.setEnabled(False)
        dialog.panel.set_status(f"installing the depth model {model_id}…")
        bridge, cancel = self._bridge, self._cancel

        def work() -> None:
            try:
                self._install_model(model_id, Progress(bridge.progress.emit, cancel))
            except Cancelled:
                bridge.done.emit("cancelled")
            except BokehkitError as exc:
                bridge.done.emit(f"error: {exc}")
            except Exception as exc:  # noqa: BLE001 - one line in the dialog, never a crash
                bridge.done.emit(f"error: {type(exc).__name__}: {exc}")
            else:
                bridge.done.emit("")

        threading.Thread(target=work, name="bokehkit-install", daemon=True).start()

    def _progress(self, fraction: float, text: str) -> None:
        if self._dialog is not None:
            self._dialog.panel.set_progress(fraction, text)

    def _installed(self, problem: str) -> None:
        dialog = self._dialog
        if dialog is None:
            return
        panel = dialog.panel
        panel.depth_notice.setEnabled(True)
        panel.set_busy(False, "")
        if problem:
            panel.set_status(f"depth model not installed: {problem}")
            return
        panel.set_engines(self._engines_status())
        panel.set_status("depth model installed")
        panel.set_params(panel.params())  # a fresh preview, with real depth

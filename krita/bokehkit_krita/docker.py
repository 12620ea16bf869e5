"""The Bokeh docker: the shared bokehkit panel (parameters, preview, progress, Stop) and
the render of the active layer, off the GUI thread, applied as a new layer."""

from __future__ import annotations

import json
import os
import sys
import threading

from krita import DockWidget, Krita

from . import core

if not os.environ.get("BOKEHKIT_QT") and Krita.instance().version().startswith("5"):
    os.environ["BOKEHKIT_QT"] = "pyqt5"  # Krita 5 is Qt 5: never load PyQt6 into it

from bokehkit_plugin import rawbuffer  # noqa: E402  (core put it on sys.path)
from bokehkit_plugin.ui.panel import BokehPanel  # noqa: E402
from bokehkit_plugin.ui.preview import PreviewImage  # noqa: E402
from bokehkit_plugin.ui.qt import QtCore, QtGui, QtWidgets, Signal  # noqa: E402

DOCKER_ID = "bokehkit_docker"
THUMB_PX = 512


def log(*args):
    print("[bokehkit]", *args, file=sys.stderr, flush=True)


class _Bridge(QtCore.QObject):
    """Signals from the render thread, delivered on the GUI thread."""

    progress = Signal(float, str)
    done = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    engines = Signal(object)


def _thumbnail(doc) -> PreviewImage | None:
    if doc is None or doc.width() <= 0:
        return None
    scale = min(1.0, THUMB_PX / max(doc.width(), doc.height()))
    w, h = max(1, round(doc.width() * scale)), max(1, round(doc.height() * scale))
    image = doc.thumbnail(w, h).convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes() if hasattr(image, "sizeInBytes") else image.byteCount())
    row = bytes(ptr)
    stride = image.bytesPerLine()
    data = b"".join(row[y * stride : y * stride + 4 * w] for y in range(h))
    return PreviewImage(w, h, data)


class BokehDocker(DockWidget):
    def __init__(self):
        super().__init__()
        self.setWindowTitle("Bokeh")
        self._engine = None  # renders
        self._preview_engine = None  # previews, so a preview never blocks Apply
        self._job = None
        self._cancel = None
        self._snapshot = None  # (node id, Job) the previews render from
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._progress)
        self._bridge.done.connect(self._done)
        self._bridge.failed.connect(self._failed)
        self._bridge.cancelled.connect(self._cancelled)
        self._bridge.engines.connect(self._engines_known)
        self._pinged = False
        box = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(box)
        layout.setContentsMargins(4, 4, 4, 4)
        self.panel = BokehPanel(
            ok_text="Apply", show_buttons=True, preview_fn=self._preview, parent=box
        )
        self.panel.accepted.connect(self.apply)
        self.panel.rejected.connect(self.cancel)
        self.panel.cancelRequested.connect(self.cancel)
        self.panel.paramsChanged.connect(self._params_changed)
        self.status = QtWidgets.QLabel("")
        self.status.setWordWrap(True)
        layout.addWidget(self.panel, 1)
        layout.addWidget(self.status)
        self.setWidget(box)

    # ----------------------------------------------------------- Krita hooks
    def canvasChanged(self, canvas):
        doc = Krita.instance().activeDocument()
        if doc is None:
            self.status.setText("open an image")
            return
        self.panel.set_image_size(doc.width(), doc.height())
        thumb = _thumbnail(doc)
        if thumb is not None:
            self.panel.preview.set_image(thumb)
            self.panel.preview.set_message("")
        self._snapshot = None
        self.status.setText(f"{doc.name() or 'image'}: {doc.width()}×{doc.height()}")
        # once Krita has settled the active layer: snapshot it and render a preview
        QtCore.QTimer.singleShot(300, lambda: self.panel.set_params(self.panel.params()))
        if not self._pinged:
            self._pinged = True
            self._ping()
        auto = os.environ.get("BOKEHKIT_KRITA_AUTOAPPLY")  # test hook: params as JSON
        if auto and not getattr(self, "_auto_done", False):
            self._auto_done = True
            self.panel.set_params(json.loads(auto))
            action = Krita.instance().action("bokehkit_bokeh")
            log(f"docker ready; menu action registered: {action is not None}; applying in 3 s")
            QtCore.QTimer.singleShot(3000, lambda: self.apply(self.panel.params()))

    def _ping(self):
        """Ask the engine (in the background) which renderers it has: the panel greys out
        the others with the engine's reason."""
        if self._preview_engine is None:
            self._preview_engine = core.new_engine()
        engine, bridge = self._preview_engine, self._bridge

        def work():
            try:
                bridge.engines.emit(engine.ping().get("engines") or {})
            except Exception as exc:  # noqa: BLE001 - the engine's error shows on Apply
                log(f"engine ping failed: {exc}")

        threading.Thread(target=work, name="bokehkit-ping", daemon=True).start()

    def _engines_known(self, engines):
        if engines:
            self.panel.set_engines(engines)

    # -------------------------------------------------------------- preview
    def _params_changed(self, params):
        """GUI thread: keep a snapshot of the active layer for the preview thread."""
        doc = Krita.instance().activeDocument()
        node = doc.activeNode() if doc is not None else None
        if node is None:
            self._snapshot = None
            return
        key = (doc.fileName(), node.uniqueId().toString(), params.get("focus_source"))
        if self._snapshot is None or self._snapshot[0] != key:
            try:
                self._snapshot = (key, core.prepare(doc, node, params))
            except ValueError as exc:
                self._snapshot = (key, str(exc))

    def _preview(self, params, cancel, on_progress):
        """Preview thread: a small render of the snapshot (never touches Krita)."""
        snap = self._snapshot
        if snap is None:
            raise ValueError("select a paint layer")
        job = snap[1]
        if isinstance(job, str):
            raise ValueError(job)
        if self._preview_engine is None:
            self._preview_engine = core.new_engine()
        self._preview_engine.start()
        mask = job.mask if params["focus_source"] == "mask" else None
        result = self._preview_engine.render(
            job.image,
            params,
            mask=mask,
            preview=True,
            preview_max_px=THUMB_PX,
            cancel_event=cancel,
            on_progress=on_progress,
        )
        out = result.image
        return PreviewImage(out.width, out.height, rawbuffer.to_rgba8(out))

    # --------------------------------------------------------------- render
    def apply(self, params):
        if self._job is not None:
            self.status.setText("a render is already running")
            return
        app = Krita.instance()
        doc = app.activeDocument()
        try:
            job = core.prepare(doc, doc.activeNode() if doc else None, params)
        except ValueError as exc:
            self.status.setText(str(exc))
            return
        if self._engine is None:
            self._engine = core.new_engine()
        self._job, self._cancel = job, threading.Event()
        self.panel.set_busy(True, "rendering")
        self.status.setText(f"rendering (focus: {job.mask_name or params['focus_source']})")
        bridge, engine, cancel = self._bridge, self._engine, self._cancel

        def work():
            try:
                result = core.render(engine, job, bridge.progress.emit, cancel)
            except core.bk_client.Cancelled:
                bridge.cancelled.emit()
            except Exception as exc:  # noqa: BLE001 - shown in the docker
                bridge.failed.emit(str(exc) or type(exc).__name__)
            else:
                bridge.done.emit(result)

        threading.Thread(target=work, name="bokehkit-render", daemon=True).start()

    def cancel(self):
        if self._cancel is not None:
            self._cancel.set()
            self.status.setText("cancelling…")

    def _progress(self, fraction, text):
        if self._job is not None:
            self.panel.set_progress(fraction, text)

    def _finish(self, text):
        self._job, self._cancel = None, None
        self.panel.set_busy(False, text.split(":")[0])
        self.status.setText(text)
        log(text)

    def _done(self, result):
        job = self._job
        try:
            doc, layer = core.apply(job, result)
        except Exception as exc:  # noqa: BLE001
            self._finish(f"error: {exc}")
            return
        if doc is not job.doc:  # super-resolution: a new document, shown in a view
            window = Krita.instance().activeWindow()
            if window is not None:
                window.addView(doc)
        self._finish(f"done: layer “{layer.name()}” ({'; '.join(result.report[:2])})")

    def _failed(self, message):
        self._finish(f"error: {message}")

    def _cancelled(self):
        self._finish("cancelled: the image is unchanged")

"""The Bokeh docker: the shared bokehkit panel (parameters, preview, progress, Stop) in a
scroll area that fits a 1366×768 screen, and the render of the layer the user means, off
the GUI thread, applied as a new layer. It follows the document: a new active layer,
painting on the Focus/Blur/Depth layers or the selection renders a fresh preview."""

from __future__ import annotations

import hashlib
import json
import os
import sys
import threading

from krita import DockWidget, Krita

from . import core

if not os.environ.get("BOKEHKIT_QT") and Krita.instance().version().startswith("5"):
    os.environ["BOKEHKIT_QT"] = "pyqt5"  # Krita 5 is Qt 5: never load PyQt6 into it

from bokehkit_plugin import edits, rawbuffer  # noqa: E402  (core put it on sys.path)
from bokehkit_plugin import settings as last_settings  # noqa: E402
from bokehkit_plugin.ui.panel import BokehPanel  # noqa: E402
from bokehkit_plugin.ui.preview import PreviewImage  # noqa: E402
from bokehkit_plugin.ui.qt import QtCore, QtGui, QtWidgets, Signal  # noqa: E402

DOCKER_ID = "bokehkit_docker"
THUMB_PX = 512
WATCH_MS = 1000  # how often the docker looks for a changed document (cheap thumbnails)
SELECTION_ROWS = 48  # rows of the selection it compares, every WATCH_MS
PHONE_PHOTO_SUFFIXES = (".jpg", ".jpeg", ".heic", ".heif")
PAINT_HINTS = {
    "paint_depth": (edits.DEPTH, "paint white where things are near (transparent = far)"),
    "paint_blur": (edits.BLUR, "paint white where the blur should be stronger"),
}


def log(*args):
    print("[bokehkit]", *args, file=sys.stderr, flush=True)


class _Bridge(QtCore.QObject):
    """Signals from worker threads, delivered on the GUI thread."""

    progress = Signal(float, str)
    done = Signal(object)
    failed = Signal(str)
    cancelled = Signal()
    engines = Signal(object)
    installed = Signal(str)  # "" when it worked, else the one-line reason


def _thumbnail(doc) -> PreviewImage | None:
    if doc is None or doc.width() <= 0:
        return None
    scale = min(1.0, THUMB_PX / max(doc.width(), doc.height()))
    w, h = max(1, round(doc.width() * scale)), max(1, round(doc.height() * scale))
    return _rgba(doc.thumbnail(w, h), w, h)


def _rgba(image, w: int, h: int) -> PreviewImage:
    image = image.convertToFormat(QtGui.QImage.Format.Format_RGBA8888)
    ptr = image.constBits()
    ptr.setsize(image.sizeInBytes() if hasattr(image, "sizeInBytes") else image.byteCount())
    row = bytes(ptr)
    stride = image.bytesPerLine()
    data = b"".join(row[y * stride : y * stride + 4 * w] for y in range(h))
    return PreviewImage(w, h, data)


def _fingerprint(doc, node) -> str:
    """What the preview depends on, cheaply: the document, the active layer, the selection,
    and tiny thumbnails of the source and of the Focus, Blur and Depth layers."""
    if doc is None:
        return ""
    digest = hashlib.sha1()
    digest.update(f"{doc.fileName()}|{doc.width()}x{doc.height()}".encode())
    if node is not None:
        digest.update(core._node_id(node).encode())
    sel = doc.selection()
    if sel is not None:
        digest.update(f"{sel.x()},{sel.y()},{sel.width()},{sel.height()}".encode())
        for i in range(SELECTION_ROWS if sel.height() > 0 else 0):  # rows, not megapixels
            y = sel.y() + i * sel.height() // SELECTION_ROWS
            digest.update(bytes(sel.pixelData(sel.x(), y, sel.width(), 1)))
    for other in core._walk(doc.rootNode()):
        if edits.is_helper(other.name()) or other.type() in core.MASK_TYPES:
            digest.update(_rgba(other.thumbnail(32, 32), 32, 32).rgba)
    return digest.hexdigest()


class BokehDocker(DockWidget):
    def __init__(self):
        super().__init__()
        self.setWindowTitle("Bokeh")
        self._engine = None  # renders
        self._preview_engine = None  # previews, so a preview never blocks Apply
        self._fix_engine = None  # model installs
        self._job = None
        self._cancel = None
        self._snapshot = None  # (key, Job or error) the previews render from
        self._depth_photo = None  # a phone photo chosen for its depth
        self._watched = ""  # the document's fingerprint the preview was made for
        self._active_id = ""
        self._bridge = _Bridge()
        self._bridge.progress.connect(self._progress)
        self._bridge.done.connect(self._done)
        self._bridge.failed.connect(self._failed)
        self._bridge.cancelled.connect(self._cancelled)
        self._bridge.engines.connect(self._engines_known)
        self._bridge.installed.connect(self._installed)
        self._pinged = False
        self.panel = BokehPanel(
            ok_text="Apply", show_buttons=True, preview_fn=self._preview, compact=True
        )
        self.panel.accepted.connect(self.apply)
        self.panel.rejected.connect(self.cancel)
        self.panel.cancelRequested.connect(self.cancel)
        self.panel.paramsChanged.connect(self._params_changed)
        self.panel.fixRequested.connect(self._fix)
        self.panel.buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Cancel).setToolTip(
            "Stop the render in progress"
        )
        # compact: the settings scroll inside the panel, its buttons stay in view, so the
        # docker fits a 768 px high screen beside Krita's other dockers
        box = QtWidgets.QWidget()
        layout = QtWidgets.QVBoxLayout(box)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.panel)
        self.setWidget(box)
        self._restore_settings()
        self._watch = QtCore.QTimer(self)
        self._watch.timeout.connect(self._look_for_changes)
        self._watch.start(WATCH_MS)
        self._testing = bool(os.environ.get("BOKEHKIT_KRITA_TEST"))
        if self._testing:  # test hook: where things are, what happens
            self.panel._worker.finished.connect(lambda image: log("preview shown"))
            self.panel.paramsChanged.connect(lambda params: log("params " + json.dumps(params)))
            QtCore.QTimer.singleShot(4000, lambda: self.log_geometry("ready"))

    def log_geometry(self, tag, only_if_new=False):
        """Test hook: the screen rectangles of the window, the docker and its buttons, for
        tests that click them with the mouse (xdotool); `only_if_new`: unless unchanged."""

        def rect(widget):
            top_left = widget.mapToGlobal(QtCore.QPoint(0, 0))
            return [top_left.x(), top_left.y(), widget.width(), widget.height()]

        std = QtWidgets.QDialogButtonBox.StandardButton
        window = self.window()
        screen = QtWidgets.QApplication.primaryScreen().geometry()
        notice = self.panel.depth_notice
        menus = {}
        bar = window.menuBar() if hasattr(window, "menuBar") else None
        for top in bar.actions() if bar is not None else []:
            ours = [a.objectName() for a in top.menu().actions()] if top.menu() else []
            ours = [name for name in ours if name.startswith("bokehkit")]
            if ours:
                menus[top.objectName() or top.text()] = ours
        info = {
            "tag": tag,
            "menus": menus,
            "screen": [screen.width(), screen.height()],
            "window": rect(window),
            "window_min_height": window.minimumSizeHint().height(),
            "docker": rect(self),
            "apply": rect(self.panel.buttons.button(std.Ok)),
            "cancel": rect(self.panel.buttons.button(std.Cancel)),
            "stop": rect(self.panel.stop_button),
            "aperture_slider": rect(self.panel.aperture_slider),
            "focal_auto": rect(self.panel.focal.auto),
            "mask_enabled": self.panel.focus_combo.model().item(0).isEnabled(),
            "preview": rect(self.panel.preview),
            "viewport": rect(self.panel.scroll.viewport()),
            "notice": rect(notice) if notice.isVisible() else None,
            "fixes": {k: rect(b) for k, b in notice.buttons.items()} if notice.isVisible() else {},
            "paint_blur_fix": rect(notice.buttons["paint_blur"]),
            "focus": self.panel.focus_combo.currentData(),
            "status": self.panel.status.toolTip(),
        }
        text = json.dumps({k: v for k, v in info.items() if k != "tag"})
        if only_if_new and text == getattr(self, "_geometry_logged", None):
            return
        self._geometry_logged = text
        log("geometry " + json.dumps(info))

    # ----------------------------------------------------------- Krita hooks
    def canvasChanged(self, canvas):
        doc = Krita.instance().activeDocument()
        if doc is None:
            self.panel.set_status("open an image")
            return
        self.panel.set_image_size(doc.width(), doc.height())
        thumb = _thumbnail(doc)
        if thumb is not None:
            self.panel.preview.set_image(thumb)
            self.panel.preview.set_message("")
        self._snapshot, self._watched, self._depth_photo = None, "", None
        self.panel.set_status(f"{doc.name() or 'image'}: {doc.width()}×{doc.height()}")
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

    def _look_for_changes(self):
        """The preview follows the document: another active layer or document, or paint on
        the Focus/Blur/Depth layers, a mask or the selection, renders a fresh one."""
        if self._testing:
            self.log_geometry("changed", only_if_new=True)
        if not self.isVisible() or self._job is not None:
            return
        doc = Krita.instance().activeDocument()
        node = doc.activeNode() if doc is not None else None
        try:
            now = _fingerprint(doc, node)
        except Exception as exc:  # noqa: BLE001 - a document closing under us
            log(f"watch: {exc}")
            return
        if now == self._watched:
            return
        first = not self._watched
        self._watched = now
        active = core._node_id(node) if node is not None else ""
        if active != self._active_id:
            self._active_id = active
            self._follow_active(doc, node)
        self._snapshot = None
        self.panel.set_has_mask(self._has_mask(doc, node))
        if not first:
            log("document changed: fresh preview")
        if self._testing and doc is not None:
            layers = [n.name() for n in core._walk(doc.rootNode()) if n.type() == "paintlayer"]
            log("layers " + json.dumps({"layers": layers, "active": node.name() if node else ""}))
        self.panel.set_params(self.panel.params())  # a fresh snapshot and preview

    def _follow_active(self, doc, node):
        """A result made here, now active: its settings come back (re-edit)."""
        if doc is None or node is None:
            return
        record = core.record_of(doc, node)
        if record is not None:
            self.panel.set_params(record[0])
            self.panel.set_status(f"re-editing “{node.name()}”: Apply renders it again")

    @staticmethod
    def _has_mask(doc, node) -> bool:
        if doc is None or node is None:
            return False
        source, _ = core.choose_source(doc, node)
        record = core.record_of(doc, node)
        if record is not None and record[1] is not None:
            source = record[1]
        return source is not None and core.find_mask(doc, source)[1] is not None

    def _ping(self):
        """Ask the engine (in the background) what it can do: the panel greys out what it
        cannot, says what Auto focuses on, and whether there is depth."""
        if self._preview_engine is None:
            self._preview_engine = core.new_engine()
        engine, bridge = self._preview_engine, self._bridge

        def work():
            try:
                bridge.engines.emit(core.bk_client.engines_for_panel(engine.ping(), engine))
            except Exception as exc:  # noqa: BLE001 - the engine's error shows on Apply
                log(f"engine ping failed: {exc}")

        threading.Thread(target=work, name="bokehkit-ping", daemon=True).start()

    def _engines_known(self, engines):
        if engines:
            self.panel.set_engines(engines)
            doc = Krita.instance().activeDocument()
            if doc is not None and core.painted_layer(doc, edits.DEPTH)[1] is not None:
                self.panel.set_has_depth(True)  # the user's own Depth layer

    # -------------------------------------------------------------- settings
    def _restore_settings(self):
        """The last settings used: they persist between sessions."""
        saved = last_settings.load("krita")
        if saved:
            self.panel.set_params(saved)

    # -------------------------------------------------------------- preview
    def _params_changed(self, params):
        """GUI thread: keep a snapshot of the layer meant for the preview thread."""
        doc = Krita.instance().activeDocument()
        node = doc.activeNode() if doc is not None else None
        if node is None:
            self._snapshot = None
            return
        key = (doc.fileName(), core._node_id(node), params.get("focus_source"), self._watched)
        if self._snapshot is None or self._snapshot[0] != key:
            try:
                job = core.prepare(doc, node, params, self._depth_photo)
                self._snapshot = (key, job)
                self.panel.set_mask_source(job.mask_name)
                if job.note:
                    self.panel.set_status(job.note)
                if job.depth is not None:
                    self.panel.set_has_depth(True)
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
            depth=job.depth,
            blur=job.blur,
            depth_photo=job.depth_photo,
            preview=True,
            preview_max_px=THUMB_PX,
            cancel_event=cancel,
            on_progress=on_progress,
        )
        out = result.image
        return PreviewImage(out.width, out.height, rawbuffer.to_rgba8(out), tuple(result.report))

    # ------------------------------------------------------------------ fixes
    def _fix(self, fix_id):
        """The "no depth" notice's buttons."""
        doc = Krita.instance().activeDocument()
        if fix_id in PAINT_HINTS:
            self._add_helper_layer(doc, *PAINT_HINTS[fix_id])
        elif fix_id == "phone_depth":
            self._use_phone_depth(doc)
        elif fix_id == "install_depth_model":
            self._install_depth_model()

    def _add_helper_layer(self, doc, name, how):
        if doc is None:
            return
        node = doc.activeNode()
        source, _ = core.choose_source(doc, node)
        layer, _ = core.painted_layer(doc, name)
        if layer is None:
            layer = doc.createNode(name.capitalize(), "paintlayer")
            above = source if source is not None else None
            parent = above.parentNode() if above is not None else doc.rootNode()
            parent.addChildNode(layer, above)
        doc.setActiveNode(layer)
        self.panel.set_status(f"{layer.name()} layer: {how}")
        log(f"added the {layer.name()} layer")

    def _use_phone_depth(self, doc):
        path = doc.fileName() if doc is not None else ""
        if not path or os.path.splitext(path)[1].lower() not in PHONE_PHOTO_SUFFIXES:
            start = os.path.dirname(path) if path else os.path.expanduser("~")
            path, _ = QtWidgets.QFileDialog.getOpenFileName(
                self, "The original phone photo", start, "Phone photos (*.jpg *.jpeg *.heic *.heif)"
            )
            if not path:
                return
        self._depth_photo = path
        self._snapshot = None
        self.panel.set_status(f"depth from {os.path.basename(path)}")
        self.panel.set_params(self.panel.params())

    def _install_depth_model(self):
        model_id = (self.panel.engines.get("depth") or {}).get("install")
        if not model_id:
            return
        if self._fix_engine is None:
            self._fix_engine = core.new_engine()
        engine, bridge = self._fix_engine, self._bridge
        self.panel.depth_notice.setEnabled(False)
        self.panel.set_status(f"installing the depth model {model_id}…")

        def work():
            try:
                engine.install_model(model_id, on_progress=bridge.progress.emit)
            except Exception as exc:  # noqa: BLE001 - one line in the docker
                bridge.installed.emit(str(exc) or type(exc).__name__)
            else:
                bridge.installed.emit("")

        threading.Thread(target=work, name="bokehkit-install", daemon=True).start()

    def _installed(self, problem):
        self.panel.depth_notice.setEnabled(True)
        self.panel.set_busy(False, "")
        if problem:
            self.panel.set_status(f"depth model not installed: {problem}")
            log(f"install failed: {problem}")
            return
        self.panel.set_status("depth model installed")
        self._ping()

    # --------------------------------------------------------------- render
    def apply(self, params):
        if self._job is not None:
            self.panel.set_status("a render is already running")
            return
        app = Krita.instance()
        doc = app.activeDocument()
        try:
            job = core.prepare(doc, doc.activeNode() if doc else None, params, self._depth_photo)
        except ValueError as exc:
            self.panel.set_status(str(exc))
            log(f"error: {exc}")
            return
        last_settings.save("krita", params)
        if self._engine is None:
            self._engine = core.new_engine()
        self._job, self._cancel = job, threading.Event()
        self.panel.set_busy(True, "rendering")
        if os.environ.get("BOKEHKIT_KRITA_TEST"):
            QtCore.QTimer.singleShot(300, lambda: self.log_geometry("busy"))
        focus = job.mask_name or params["focus_source"]
        note = f"; {job.note}" if job.note else ""
        self.panel.set_status(f"rendering “{job.node.name()}” (focus: {focus}){note}")
        log(f"rendering “{job.node.name()}”" + (f": {job.note}" if job.note else ""))
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
            self.panel.set_status("cancelling…")

    def _progress(self, fraction, text):
        self.panel.set_progress(fraction, text)

    def _finish(self, text):
        self._job, self._cancel = None, None
        self.panel.set_busy(False, text.split(":")[0])
        self.panel.set_status(text)
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
        self._watched = ""  # the new layer is active: follow it
        self._finish(f"done: layer “{layer.name()}” ({'; '.join(result.report[:2])})")

    def _failed(self, message):
        self._finish(f"error: {message}")

    def _cancelled(self):
        self._finish("cancelled: the image is unchanged")

"""The preview: an image the user clicks to set the focus point, and the worker thread
that renders low-resolution previews without freezing the UI."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable  # noqa: UP035 - subscripted at run time on Python 3.8 hosts

from .qt import Qt, QtCore, QtGui, QtWidgets, Signal, event_pos


@dataclass
class PreviewImage:
    """sRGB RGBA8888 pixels, row-major: what the panel shows; `report` is the engine's
    report lines for a rendered preview (it says where the depth came from)."""

    width: int
    height: int
    rgba: bytes
    report: tuple = ()


#: preview_fn(params, cancel_event, on_progress) -> PreviewImage; runs off the UI thread.
PreviewFn = Callable[[dict, threading.Event, Callable[[float, str], None]], PreviewImage]

#: What the preview shows: the render, the photo as it was, the depth the engine uses.
VIEWS = (("after", "After"), ("before", "Before"), ("depth", "Depth"))
MAX_ZOOM = 8.0
DRAG_PX = 4  # a press that moves less than this is a click (the focus point)


def to_pixmap(image: PreviewImage) -> QtGui.QPixmap:
    qimage = QtGui.QImage(
        image.rgba, image.width, image.height, image.width * 4, QtGui.QImage.Format.Format_RGBA8888
    )
    return QtGui.QPixmap.fromImage(qimage.copy())  # copy: the bytes may go away


class PreviewView(QtWidgets.QWidget):
    """The photo or its render, scaled to fit; a click emits the point as fractions (0…1)
    of it. The wheel zooms (up to 8×) around the pointer, a drag pans, a double click
    fits again; After / Before / Depth buttons switch what is shown."""

    focusClicked = Signal(float, float)
    viewChanged = Signal(str)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._before: QtGui.QPixmap | None = None
        self._results: dict[str, QtGui.QPixmap] = {}  # "after" / "depth": the last renders
        self._view = "after"
        self._focus: tuple[float, float] | None = None
        self._message = "no preview yet"
        self._zoom = 1.0
        self._centre = (0.5, 0.5)  # the image point at the widget's centre, in fractions
        self._press: tuple[float, float] | None = None
        self._dragged = False
        self.zoom_needs_ctrl = False  # set where the preview sits in a scroll area
        self.setMinimumSize(320, 220)
        policy = QtWidgets.QSizePolicy.Policy.Expanding
        self.setSizePolicy(policy, policy)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setToolTip("Click to focus on this point; wheel to zoom, drag to pan")
        self.view_buttons = {}
        group = QtWidgets.QButtonGroup(self)
        for i, (view, text) in enumerate(VIEWS):
            button = QtWidgets.QToolButton(self)
            button.setText(text)
            button.setCheckable(True)
            button.setChecked(view == "after")
            button.setToolTip(
                {
                    "after": "The preview of the result",
                    "before": "The photo as it is (press \\ to flip)",
                    "depth": "The depth the engine uses: near warm, far dark, focal plane green",
                }[view]
            )
            group.addButton(button, i)
            button.clicked.connect(lambda _=False, v=view: self.set_view(v))
            self.view_buttons[view] = button
        self.setFocusPolicy(Qt.FocusPolicy.ClickFocus)

    # --------------------------------------------------------------- content
    def set_image(self, image: PreviewImage | None) -> None:
        """The photo as it is (shown until a render arrives, and as "Before")."""
        self._before = to_pixmap(image) if image is not None else None
        self._results.clear()
        self.update()

    def set_result(self, image: PreviewImage) -> None:
        """A rendered preview of the current view (the bokeh, or the depth)."""
        self._results["depth" if self._view == "depth" else "after"] = to_pixmap(image)
        self.update()

    def set_message(self, text: str) -> None:
        self._message = text
        self.update()

    def set_focus_marker(self, point: tuple[float, float] | None) -> None:
        self._focus = point
        self.update()

    def view(self) -> str:
        return self._view

    def set_view(self, view: str) -> None:
        if view == self._view:
            return
        self._view = view
        self.view_buttons[view].setChecked(True)
        self.update()
        if view != "before":
            self.viewChanged.emit(view)

    def shown_pixmap(self) -> QtGui.QPixmap | None:
        if self._view == "before":
            return self._before
        return self._results.get(self._view) or (self._before if self._view == "after" else None)

    def zoom(self) -> float:
        return self._zoom

    # --------------------------------------------------------------- geometry
    def image_rect(self) -> QtCore.QRectF:
        """Where the image is drawn: fitted, times the zoom, the view centre in the middle."""
        pixmap = self.shown_pixmap() or self._before
        if pixmap is None or pixmap.isNull():
            return QtCore.QRectF()
        pw, ph = pixmap.width(), pixmap.height()
        scale = min(self.width() / pw, self.height() / ph) * self._zoom
        w, h = pw * scale, ph * scale
        cx, cy = self._centre
        return QtCore.QRectF(self.width() / 2 - cx * w, self.height() / 2 - cy * h, w, h)

    def _clamp_centre(self) -> None:
        """Keep the picture on screen: at 1× centred, zoomed in never past its edges."""
        rect = self.image_rect()
        if rect.isEmpty():
            return
        half_w = min(0.5, self.width() / (2 * rect.width()))
        half_h = min(0.5, self.height() / (2 * rect.height()))
        cx = min(max(self._centre[0], half_w), 1 - half_w)
        cy = min(max(self._centre[1], half_h), 1 - half_h)
        self._centre = (cx, cy)

    def set_zoom(self, zoom: float, anchor: tuple[float, float] | None = None) -> None:
        """Zoom to `zoom` (1 = fit), keeping the image point under `anchor` (widget px) still."""
        rect = self.image_rect()
        zoom = min(max(zoom, 1.0), MAX_ZOOM)
        if rect.isEmpty() or zoom == self._zoom:
            return
        ax, ay = anchor if anchor is not None else (self.width() / 2, self.height() / 2)
        fx, fy = (ax - rect.left()) / rect.width(), (ay - rect.top()) / rect.height()
        self._zoom = zoom
        new = self.image_rect()
        # the point (fx, fy) must stay at (ax, ay): shift the centre by what it moved
        self._centre = (
            self._centre[0] + (new.left() + fx * new.width() - ax) / new.width(),
            self._centre[1] + (new.top() + fy * new.height() - ay) / new.height(),
        )
        self._clamp_centre()
        self.update()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        x = 4
        for button in self.view_buttons.values():
            button.adjustSize()
            button.move(x, 4)
            x += button.width() + 2
        self._clamp_centre()

    # --------------------------------------------------------------- painting
    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), self.palette().color(self.backgroundRole()).darker(115))
        pixmap = self.shown_pixmap()
        rect = self.image_rect()
        if pixmap is None or rect.isEmpty():
            text = "rendering the depth view…" if self._view == "depth" else self._message
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, text)
            return
        painter.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(rect, pixmap, QtCore.QRectF(pixmap.rect()))
        if self._focus is not None and self._view != "before":
            x = rect.left() + self._focus[0] * rect.width()
            y = rect.top() + self._focus[1] * rect.height()
            for colour, width in ((QtGui.QColor(0, 0, 0, 160), 3), (QtGui.QColor("white"), 1)):
                painter.setPen(QtGui.QPen(colour, width))
                painter.drawEllipse(QtCore.QPointF(x, y), 9.0, 9.0)
                painter.drawLine(QtCore.QPointF(x - 14, y), QtCore.QPointF(x - 5, y))
                painter.drawLine(QtCore.QPointF(x + 5, y), QtCore.QPointF(x + 14, y))
                painter.drawLine(QtCore.QPointF(x, y - 14), QtCore.QPointF(x, y - 5))
                painter.drawLine(QtCore.QPointF(x, y + 5), QtCore.QPointF(x, y + 14))
        corner = f"{self._zoom:.0%}" if self._zoom > 1 else ""
        text = "  ".join(t for t in (self._message, corner) if t)
        if text:
            painter.setPen(QtGui.QColor("white"))
            box = self.rect().adjusted(6, 4, -6, -4)
            painter.drawText(box, Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignLeft, text)

    # ------------------------------------------------------------------ input
    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._press = event_pos(event)
        self._press_centre = self._centre
        self._dragged = False

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self._press is None or self._zoom <= 1.0:
            return
        x, y = event_pos(event)
        dx, dy = x - self._press[0], y - self._press[1]
        if not self._dragged and max(abs(dx), abs(dy)) < DRAG_PX:
            return
        self._dragged = True
        rect = self.image_rect()
        self._centre = (
            self._press_centre[0] - dx / rect.width(),
            self._press_centre[1] - dy / rect.height(),
        )
        self._clamp_centre()
        self.update()

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt's name
        press, self._press = self._press, None
        if press is None or self._dragged or event.button() != Qt.MouseButton.LeftButton:
            return
        rect = self.image_rect()
        x, y = event_pos(event)
        if not rect.contains(x, y):
            return
        fx = (x - rect.left()) / rect.width()
        fy = (y - rect.top()) / rect.height()
        self.focusClicked.emit(min(max(fx, 0.0), 1.0), min(max(fy, 0.0), 1.0))

    def mouseDoubleClickEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._zoom, self._centre = 1.0, (0.5, 0.5)
        self.update()

    def wheelEvent(self, event) -> None:  # noqa: N802 - Qt's name
        ctrl = bool(event.modifiers() & Qt.KeyboardModifier.ControlModifier)
        if self.zoom_needs_ctrl and not ctrl:
            event.ignore()  # in a scrolling docker the wheel scrolls; Ctrl+wheel zooms
            return
        steps = event.angleDelta().y() / 120.0
        if steps:
            pos = event.position() if hasattr(event, "position") else event.posF()
            self.set_zoom(self._zoom * 1.25**steps, (pos.x(), pos.y()))

    def keyPressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if event.key() == Qt.Key.Key_Backslash:  # Lightroom's before/after key
            self.set_view("before" if self._view != "before" else "after")
        else:
            super().keyPressEvent(event)


class PreviewWorker(QtCore.QObject):
    """Runs `preview_fn` on a Python thread; a new request cancels the one in flight.

    Signals are emitted from the worker thread; Qt queues them to the UI thread.
    """

    finished = Signal(object)  # PreviewImage
    failed = Signal(str)
    progress = Signal(float, str)

    def __init__(self, preview_fn: PreviewFn | None, parent=None) -> None:
        super().__init__(parent)
        self._fn = preview_fn
        self._cancel: threading.Event | None = None
        self._generation = 0
        self._lock = threading.Lock()

    @property
    def enabled(self) -> bool:
        return self._fn is not None

    def request(self, params: dict) -> None:
        if self._fn is None:
            return
        with self._lock:
            self.cancel()
            self._generation += 1
            cancel = self._cancel = threading.Event()
            generation = self._generation
        thread = threading.Thread(
            target=self._run, args=(dict(params), cancel, generation), daemon=True
        )
        thread.start()

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    def _run(self, params: dict, cancel: threading.Event, generation: int) -> None:
        def on_progress(fraction: float, text: str) -> None:
            if generation == self._generation and not cancel.is_set():
                self.progress.emit(float(fraction), str(text))

        try:
            image = self._fn(params, cancel, on_progress)
        except Exception as exc:  # noqa: BLE001 - shown in the panel, never a crash
            if not cancel.is_set() and generation == self._generation:
                text = str(exc).strip().splitlines()
                self.failed.emit(text[0] if text else type(exc).__name__)
            return
        if not cancel.is_set() and generation == self._generation:
            self.finished.emit(image)

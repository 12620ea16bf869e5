"""The preview: an image the user clicks to set the focus point, and the worker thread
that renders low-resolution previews without freezing the UI."""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Callable  # noqa: UP035 - subscripted at run time on Python 3.8 hosts

from .qt import Qt, QtCore, QtGui, QtWidgets, Signal, event_pos


@dataclass
class PreviewImage:
    """sRGB RGBA8888 pixels, row-major: what the panel shows."""

    width: int
    height: int
    rgba: bytes


#: preview_fn(params, cancel_event, on_progress) -> PreviewImage; runs off the UI thread.
PreviewFn = Callable[[dict, threading.Event, Callable[[float, str], None]], PreviewImage]


def to_pixmap(image: PreviewImage) -> QtGui.QPixmap:
    qimage = QtGui.QImage(
        image.rgba, image.width, image.height, image.width * 4, QtGui.QImage.Format.Format_RGBA8888
    )
    return QtGui.QPixmap.fromImage(qimage.copy())  # copy: the bytes may go away


class PreviewView(QtWidgets.QWidget):
    """Shows the image scaled to fit; a click emits the point as fractions (0…1) of it."""

    focusClicked = Signal(float, float)

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._pixmap: QtGui.QPixmap | None = None
        self._focus: tuple[float, float] | None = None
        self._message = "no preview yet"
        self.setMinimumSize(320, 220)
        policy = QtWidgets.QSizePolicy.Policy.Expanding
        self.setSizePolicy(policy, policy)
        self.setCursor(Qt.CursorShape.CrossCursor)
        self.setToolTip("Click to focus on this point")

    def set_image(self, image: PreviewImage | None) -> None:
        self._pixmap = to_pixmap(image) if image is not None else None
        self.update()

    def set_message(self, text: str) -> None:
        self._message = text
        self.update()

    def set_focus_marker(self, point: tuple[float, float] | None) -> None:
        self._focus = point
        self.update()

    def image_rect(self) -> QtCore.QRectF:
        """Where the image is drawn: scaled to fit, centred, aspect kept."""
        if self._pixmap is None or self._pixmap.isNull():
            return QtCore.QRectF()
        pw, ph = self._pixmap.width(), self._pixmap.height()
        scale = min(self.width() / pw, self.height() / ph)
        w, h = pw * scale, ph * scale
        return QtCore.QRectF((self.width() - w) / 2, (self.height() - h) / 2, w, h)

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QtGui.QPainter(self)
        painter.fillRect(self.rect(), self.palette().color(self.backgroundRole()).darker(115))
        rect = self.image_rect()
        if rect.isEmpty():
            painter.drawText(self.rect(), Qt.AlignmentFlag.AlignCenter, self._message)
            return
        painter.setRenderHint(QtGui.QPainter.RenderHint.SmoothPixmapTransform)
        painter.drawPixmap(rect, self._pixmap, QtCore.QRectF(self._pixmap.rect()))
        if self._focus is not None:
            x = rect.left() + self._focus[0] * rect.width()
            y = rect.top() + self._focus[1] * rect.height()
            for colour, width in ((QtGui.QColor(0, 0, 0, 160), 3), (QtGui.QColor("white"), 1)):
                painter.setPen(QtGui.QPen(colour, width))
                painter.drawEllipse(QtCore.QPointF(x, y), 9.0, 9.0)
                painter.drawLine(QtCore.QPointF(x - 14, y), QtCore.QPointF(x - 5, y))
                painter.drawLine(QtCore.QPointF(x + 5, y), QtCore.QPointF(x + 14, y))
                painter.drawLine(QtCore.QPointF(x, y - 14), QtCore.QPointF(x, y - 5))
                painter.drawLine(QtCore.QPointF(x, y + 5), QtCore.QPointF(x, y + 14))
        if self._message:
            painter.setPen(QtGui.QColor("white"))
            box = self.rect().adjusted(6, 4, -6, -4)
            painter.drawText(box, Qt.AlignmentFlag.AlignBottom | Qt.AlignmentFlag.AlignLeft,
                             self._message)  # fmt: skip

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        rect = self.image_rect()
        x, y = event_pos(event)
        if event.button() != Qt.MouseButton.LeftButton or not rect.contains(x, y):
            return
        fx = (x - rect.left()) / rect.width()
        fy = (y - rect.top()) / rect.height()
        self.focusClicked.emit(min(max(fx, 0.0), 1.0), min(max(fy, 0.0), 1.0))


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

"""The panel's lens controls: an aperture that moves in third stops, a focal length with an
"auto" switch, and a two-handle slider for the depth band that stays sharp."""

from __future__ import annotations

from .qt import Qt, QtCore, QtGui, QtWidgets, Signal, event_pos

#: The f-numbers a lens clicks through in third stops (as engraved, rounded), 0.95 to 22.
THIRD_STOPS = (
    0.95, 1.0, 1.1, 1.2, 1.4, 1.6, 1.8, 2.0, 2.2, 2.5, 2.8, 3.2, 3.5, 4.0, 4.5, 5.0, 5.6,
    6.3, 7.1, 8.0, 9.0, 10.0, 11.0, 13.0, 14.0, 16.0, 18.0, 20.0, 22.0,
)  # fmt: skip


def nearest_stop_index(f_number: float) -> int:
    return min(range(len(THIRD_STOPS)), key=lambda i: abs(THIRD_STOPS[i] - f_number))


class ApertureControl(QtWidgets.QWidget):
    """A slider that snaps to third stops and a spin box that takes any f-number typed."""

    valueChanged = Signal(float)

    def __init__(self, minimum: float, maximum: float, parent=None) -> None:
        super().__init__(parent)
        self.slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.slider.setRange(0, len(THIRD_STOPS) - 1)
        self.slider.setPageStep(3)  # one full stop
        self.spin = QtWidgets.QDoubleSpinBox()
        self.spin.setRange(minimum, maximum)
        self.spin.setDecimals(2)
        self.spin.setSingleStep(0.1)
        self.spin.setPrefix("f/")
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.slider, 1)
        row.addWidget(self.spin)
        self._quiet = False
        self.slider.valueChanged.connect(self._slid)
        self.spin.valueChanged.connect(self._typed)

    def value(self) -> float:
        return round(self.spin.value(), 2)

    def set_value(self, f_number: float) -> None:
        """Show `f_number` without emitting valueChanged."""
        self._quiet = True
        try:
            self.spin.setValue(f_number)
            self.slider.setValue(nearest_stop_index(f_number))
        finally:
            self._quiet = False

    def _slid(self, index: int) -> None:
        if self._quiet:
            return
        self._quiet = True
        self.spin.setValue(THIRD_STOPS[index])
        self._quiet = False
        self.valueChanged.emit(self.value())

    def _typed(self, value: float) -> None:
        if self._quiet:
            return
        self._quiet = True  # the slider follows to the nearest stop; the typed value stays
        self.slider.setValue(nearest_stop_index(value))
        self._quiet = False
        self.valueChanged.emit(self.value())


class FocalLengthControl(QtWidgets.QWidget):
    """ "Auto" (the photo's EXIF, else 50 mm) as a check box, or the millimetres typed."""

    valueChanged = Signal(float)

    def __init__(self, minimum: float, maximum: float, parent=None) -> None:
        super().__init__(parent)
        self.auto = QtWidgets.QCheckBox("auto")
        self.auto.setToolTip("From the photo's EXIF, else 50 mm")
        self.spin = QtWidgets.QDoubleSpinBox()
        self.spin.setRange(minimum, maximum)
        self.spin.setDecimals(0)
        self.spin.setSuffix(" mm")
        self.spin.setValue(50.0)
        row = QtWidgets.QHBoxLayout(self)
        row.setContentsMargins(0, 0, 0, 0)
        row.addWidget(self.spin, 1)
        row.addWidget(self.auto)
        self._quiet = False
        self.auto.toggled.connect(self._changed)
        self.spin.valueChanged.connect(self._changed)

    def value(self) -> float:
        """0.0 = auto, else the focal length in mm."""
        return 0.0 if self.auto.isChecked() else float(self.spin.value())

    def set_value(self, mm: float) -> None:
        self._quiet = True
        try:
            self.auto.setChecked(not mm)
            if mm:
                self.spin.setValue(mm)
            self.spin.setEnabled(bool(mm))
        finally:
            self._quiet = False

    def _changed(self, *_args) -> None:
        self.spin.setEnabled(not self.auto.isChecked())
        if not self._quiet:
            self.valueChanged.emit(self.value())


class DepthRangeSlider(QtWidgets.QWidget):
    """Two handles on the photo's depth, 0 = nearest (left) … 1 = farthest (right): the band
    between them stays sharp. Drag a handle, or click to move the nearer one there."""

    rangeChanged = Signal(float, float)
    _HANDLE = 7  # half width of a handle, px

    def __init__(self, parent=None) -> None:
        super().__init__(parent)
        self._values = [0.3, 0.5]
        self._dragging: int | None = None
        self.setMinimumSize(120, 26)
        self.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Expanding, QtWidgets.QSizePolicy.Policy.Fixed
        )
        self.setToolTip("The depth band that stays sharp: near on the left, far on the right")
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)

    def values(self) -> tuple[float, float]:
        return self._values[0], self._values[1]

    def set_values(self, near: float, far: float) -> None:
        self._values = [min(max(near, 0.0), 1.0), min(max(far, 0.0), 1.0)]
        self._values.sort()
        self.update()

    def _track(self) -> QtCore.QRectF:
        h = self._HANDLE
        return QtCore.QRectF(h, self.height() / 2 - 4, max(1, self.width() - 2 * h), 8)

    def handle_x(self, index: int) -> float:
        track = self._track()
        return track.left() + self._values[index] * track.width()

    def paintEvent(self, event) -> None:  # noqa: N802 - Qt's name
        painter = QtGui.QPainter(self)
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        track = self._track()
        ramp = QtGui.QLinearGradient(track.topLeft(), track.topRight())
        ramp.setColorAt(0.0, QtGui.QColor(255, 236, 120))  # near warm, far dark: the depth view
        ramp.setColorAt(0.5, QtGui.QColor(205, 74, 100))
        ramp.setColorAt(1.0, QtGui.QColor(22, 18, 62))
        painter.fillRect(track, QtGui.QBrush(ramp))
        a, b = self.handle_x(0), self.handle_x(1)
        band = QtCore.QRectF(a, track.top() - 3, max(b - a, 1.0), track.height() + 6)
        painter.setPen(QtGui.QPen(QtGui.QColor(40, 235, 110), 2))
        painter.drawRect(band)
        for x in (a, b):
            handle = QtCore.QRectF(x - self._HANDLE, 2, 2 * self._HANDLE, self.height() - 4)
            painter.setPen(QtGui.QPen(self.palette().color(QtGui.QPalette.ColorRole.Text), 1))
            painter.setBrush(self.palette().color(QtGui.QPalette.ColorRole.Button))
            painter.drawRoundedRect(handle, 3, 3)

    def _value_at(self, x: float) -> float:
        track = self._track()
        return min(max((x - track.left()) / track.width(), 0.0), 1.0)

    def mousePressEvent(self, event) -> None:  # noqa: N802 - Qt's name
        x, _ = event_pos(event)
        distances = [abs(x - self.handle_x(i)) for i in (0, 1)]
        self._dragging = 0 if distances[0] <= distances[1] else 1
        self._move(x)

    def mouseMoveEvent(self, event) -> None:  # noqa: N802 - Qt's name
        if self._dragging is not None:
            self._move(event_pos(event)[0])

    def mouseReleaseEvent(self, event) -> None:  # noqa: N802 - Qt's name
        self._dragging = None

    def _move(self, x: float) -> None:
        value = self._value_at(x)
        i = self._dragging
        other = self._values[1 - i]
        # a handle stops at the other one: near never passes far
        self._values[i] = min(value, other) if i == 0 else max(value, other)
        self.update()
        self.rangeChanged.emit(*self.values())

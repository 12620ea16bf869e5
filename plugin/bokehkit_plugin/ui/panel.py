"""BokehPanel: every parameter of the schema, a live preview and progress, in one QWidget.

The same widget sits in a QDialog (GIMP, via the engine) and in a Krita docker. It knows
nothing of hosts or engines: it takes a `preview_fn` that renders a small preview and
emits the chosen parameters.
"""

from __future__ import annotations

import math

from .. import schema
from .blur_hint import background_blur_px
from .preview import PreviewFn, PreviewImage, PreviewView, PreviewWorker
from .qt import Qt, QtCore, QtWidgets, Signal

_SLIDER_STEPS = 1000
_ROUND_BLADES = 4  # the blades spin box shows "round" at this value; it means 0
# The preview is rendered without super-resolution: changing only these needs no new one.
_SR_ONLY = frozenset(("sr_factor", "upscaler", "sr_detail"))


def _choice_index(param: schema.Param, value) -> int:
    return param.choices.index(value) if value in param.choices else 0


class BokehPanel(QtWidgets.QWidget):
    """Parameters, preview (click = focus point), progress; emits `accepted(params)`."""

    paramsChanged = Signal(dict)
    accepted = Signal(dict)
    rejected = Signal()
    cancelRequested = Signal()  # stop the render in progress (host renders)

    def __init__(
        self,
        params: dict | None = None,
        preview_fn: PreviewFn | None = None,
        engines: dict | None = None,
        source: PreviewImage | None = None,
        has_mask: bool = True,
        image_size: tuple[int, int] | None = None,
        ok_text: str = "OK",
        show_buttons: bool = True,
        parent=None,
    ) -> None:
        super().__init__(parent)
        self._updating = True  # no signals until every control shows `params`
        self._emitted: dict = {}  # the params last sent out, to tell what changed
        self._has_mask = has_mask
        self._focus = (0.5, 0.5)
        if image_size is None:
            image_size = (source.width, source.height) if source is not None else (0, 0)
        self._image_size = image_size
        self._worker = PreviewWorker(preview_fn, self)
        self._debounce = QtCore.QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self._start_preview)
        self._build(ok_text, show_buttons)
        self._worker.finished.connect(self._preview_done)
        self._worker.failed.connect(self._preview_failed)
        self._worker.progress.connect(self.set_progress)
        self.set_engines(engines or {"classical": {"available": True}})
        if source is not None:
            self.preview.set_image(source)
            self.preview.set_message("")
        self.set_params(params or {})

    # ---------------------------------------------------------------- building
    def _build(self, ok_text: str, show_buttons: bool) -> None:
        p = schema.BY_NAME
        self.preview = PreviewView(self)
        self.preview.focusClicked.connect(self._focus_clicked)

        self.aperture_slider = QtWidgets.QSlider(Qt.Orientation.Horizontal)
        self.aperture_slider.setRange(0, _SLIDER_STEPS)
        self.aperture_spin = QtWidgets.QDoubleSpinBox()
        self.aperture_spin.setRange(p["aperture"].minimum, p["aperture"].maximum)
        self.aperture_spin.setDecimals(2)
        self.aperture_spin.setSingleStep(0.1)
        self.aperture_spin.setPrefix("f/")
        self.blur_label = QtWidgets.QLabel()
        self.blur_label.setToolTip("Disc radius of a distant background in the result")

        self.focal_spin = QtWidgets.QDoubleSpinBox()
        self.focal_spin.setRange(7.0, p["focal_length"].maximum)  # 7 = "auto" below 8 mm
        self.focal_spin.setDecimals(0)
        self.focal_spin.setSuffix(" mm")
        self.focal_spin.setSpecialValueText("auto (EXIF, else 50 mm)")

        self.focus_combo = self._combo(p["focus_source"])
        self.sr_combo = self._combo(p["sr_factor"])
        self.upscaler_combo = self._combo(p["upscaler"])
        self.detail_spin = self._float_spin(p["sr_detail"], 2, 0.05)
        self.upscaler_note = self._note()
        self.blades_spin = QtWidgets.QSpinBox()
        self.blades_spin.setRange(_ROUND_BLADES, int(p["blades"].maximum))
        self.blades_spin.setSpecialValueText("round")
        self.rotation_spin = QtWidgets.QDoubleSpinBox()
        self.rotation_spin.setRange(0.0, 360.0)
        self.rotation_spin.setDecimals(0)
        self.rotation_spin.setSuffix("°")
        self.highlights_spin = self._float_spin(p["highlights"], 1, 0.5)
        self.grain_spin = self._float_spin(p["grain"], 2, 0.1)
        self.engine_combo = self._combo(p["engine"])
        self.engine_note = self._note()

        aperture_row = QtWidgets.QHBoxLayout()
        aperture_row.addWidget(self.aperture_slider, 1)
        aperture_row.addWidget(self.aperture_spin)
        blades_row = QtWidgets.QHBoxLayout()
        blades_row.addWidget(self.blades_spin)
        blades_row.addWidget(QtWidgets.QLabel("rotation"))
        blades_row.addWidget(self.rotation_spin)

        form = QtWidgets.QFormLayout()
        form.addRow(p["aperture"].label, aperture_row)
        form.addRow("", self.blur_label)
        form.addRow(p["focal_length"].label.replace(" (mm, 35 mm equivalent)", ""), self.focal_spin)
        form.addRow(p["focus_source"].label, self.focus_combo)
        form.addRow(p["sr_factor"].label, self.sr_combo)
        form.addRow(p["upscaler"].label, self.upscaler_combo)
        form.addRow(p["sr_detail"].label, self.detail_spin)
        form.addRow("", self.upscaler_note)
        form.addRow(p["blades"].label, blades_row)
        form.addRow(p["highlights"].label, self.highlights_spin)
        form.addRow(p["grain"].label, self.grain_spin)
        form.addRow(p["engine"].label, self.engine_combo)
        form.addRow("", self.engine_note)
        for name, widget in (
            ("aperture", self.aperture_spin),
            ("focal_length", self.focal_spin),
            ("focus_source", self.focus_combo),
            ("sr_factor", self.sr_combo),
            ("upscaler", self.upscaler_combo),
            ("sr_detail", self.detail_spin),
            ("blades", self.blades_spin),
            ("blade_rotation", self.rotation_spin),
            ("highlights", self.highlights_spin),
            ("grain", self.grain_spin),
            ("engine", self.engine_combo),
        ):
            widget.setToolTip(p[name].help)
        self.aperture_slider.setToolTip(p["aperture"].help)

        self.progress = QtWidgets.QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setFormat("")
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setToolTip("Cancel the render in progress")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self._stop)
        progress_row = QtWidgets.QHBoxLayout()
        progress_row.addWidget(self.progress, 1)
        progress_row.addWidget(self.stop_button)

        side = QtWidgets.QVBoxLayout()
        side.addLayout(form)
        side.addStretch(1)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.preview, 3)
        top.addLayout(side, 2)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addLayout(top, 1)
        layout.addLayout(progress_row)
        self.buttons = None
        if show_buttons:
            std = QtWidgets.QDialogButtonBox.StandardButton
            self.buttons = QtWidgets.QDialogButtonBox(std.Ok | std.Cancel)
            self.buttons.button(std.Ok).setText(ok_text)
            self.buttons.accepted.connect(self._accept)
            self.buttons.rejected.connect(self.rejected.emit)
            layout.addWidget(self.buttons)

        self.aperture_slider.valueChanged.connect(self._slider_moved)
        self.aperture_spin.valueChanged.connect(self._spin_changed)
        for spin in (
            self.focal_spin, self.rotation_spin, self.highlights_spin, self.grain_spin,
            self.detail_spin,
        ):  # fmt: skip
            spin.valueChanged.connect(self._changed)
        self.blades_spin.valueChanged.connect(self._changed)
        for combo in (self.focus_combo, self.sr_combo, self.upscaler_combo, self.engine_combo):
            combo.currentIndexChanged.connect(self._changed)

    @staticmethod
    def _combo(param: schema.Param) -> QtWidgets.QComboBox:
        combo = QtWidgets.QComboBox()
        for index, value in enumerate(param.choices):  # no zip(strict=): Python 3.8 hosts
            combo.addItem(param.choice_labels[index], value)
        return combo

    @staticmethod
    def _note() -> QtWidgets.QLabel:
        """A greyed line under a choice that says why some of it is unavailable."""
        note = QtWidgets.QLabel()
        note.setWordWrap(True)
        note.setEnabled(False)  # greyed: it explains, it is not a control
        return note

    @staticmethod
    def _float_spin(param: schema.Param, decimals: int, step: float):
        spin = QtWidgets.QDoubleSpinBox()
        spin.setRange(param.minimum, param.maximum)
        spin.setDecimals(decimals)
        spin.setSingleStep(step)
        return spin

    # ------------------------------------------------------------ parameters
    def params(self) -> dict:
        """The current parameters, complete and valid for the engine."""
        blades = self.blades_spin.value()
        focal = self.focal_spin.value()
        values = {
            "aperture": round(self.aperture_spin.value(), 2),
            "focal_length": 0.0 if focal < 8 else float(focal),
            "sr_factor": self.sr_combo.currentData(),
            "focus_source": self.focus_combo.currentData(),
            "focus_x": round(self._focus[0], 4),
            "focus_y": round(self._focus[1], 4),
            "blades": 0 if blades == _ROUND_BLADES else blades,
            "blade_rotation": float(self.rotation_spin.value()),
            "highlights": round(self.highlights_spin.value(), 2),
            "grain": round(self.grain_spin.value(), 2),
            "engine": self.engine_combo.currentData(),
            "upscaler": self.upscaler_combo.currentData(),
            "sr_detail": round(self.detail_spin.value(), 2),
        }
        return schema.validate(values)

    def set_has_mask(self, has_mask: bool) -> None:
        """Say whether the current document has a painted mask (a docker follows the active
        document); without one, "Painted mask" is greyed out and not chosen."""
        self._has_mask = bool(has_mask)
        if not self._has_mask and self.focus_combo.currentData() == "mask":
            self.set_params({**self.params(), "focus_source": "auto"})
        self._changed()

    def set_params(self, params: dict) -> None:
        """Show `params` (validated; missing ones at their defaults)."""
        values = schema.validate(params)
        if values["focus_source"] == "mask" and not self._has_mask:
            values["focus_source"] = "auto"
        self._updating = True
        try:
            self.aperture_spin.setValue(values["aperture"])
            self.aperture_slider.setValue(self._slider_pos(values["aperture"]))
            self.focal_spin.setValue(values["focal_length"] or self.focal_spin.minimum())
            sr_param = schema.BY_NAME["sr_factor"]
            self.sr_combo.setCurrentIndex(_choice_index(sr_param, values["sr_factor"]))
            focus_param = schema.BY_NAME["focus_source"]
            self.focus_combo.setCurrentIndex(_choice_index(focus_param, values["focus_source"]))
            self._focus = (values["focus_x"], values["focus_y"])
            self.blades_spin.setValue(values["blades"] or _ROUND_BLADES)
            self.rotation_spin.setValue(values["blade_rotation"])
            self.highlights_spin.setValue(values["highlights"])
            self.grain_spin.setValue(values["grain"])
            for combo, name in ((self.engine_combo, "engine"), (self.upscaler_combo, "upscaler")):
                index = _choice_index(schema.BY_NAME[name], values[name])
                if combo.model().item(index).isEnabled():
                    combo.setCurrentIndex(index)
            self.detail_spin.setValue(values["sr_detail"])
        finally:
            self._updating = False
        self._changed()

    def set_engines(self, engines: dict) -> None:
        """Grey out renderers and upscalers the engine cannot run, with the reason from its
        `pong` (its "engines" also says whether the "realesrgan" upscaler can run)."""
        self._grey_out(self.engine_combo, "engine", engines, self.engine_note)
        # The classical upscaler needs no model; engines["classical"] is the renderer.
        upscalers = dict(engines, classical={"available": True})
        self._grey_out(self.upscaler_combo, "upscaler", upscalers, self.upscaler_note)
        self._show_upscaler_note()

    @staticmethod
    def _grey_out(combo, name: str, status: dict, note: QtWidgets.QLabel) -> None:
        """Disable the choices of `combo` that `status` says are unavailable (a tooltip and
        `note` give the reason); one that was chosen falls back to the first."""
        notes = []
        for index, value in enumerate(schema.BY_NAME[name].choices):
            info = status.get(value) or {"available": False, "reason": "unknown to this engine"}
            item = combo.model().item(index)
            item.setEnabled(bool(info.get("available")))
            reason = info.get("reason", "")
            item.setToolTip(reason)
            if not info.get("available"):
                label = combo.itemText(index)
                notes.append(f"{label}: {reason}" if reason else f"{label}: not available")
                if combo.currentIndex() == index:
                    combo.setCurrentIndex(0)
        note.setText("\n".join(notes))
        note.setVisible(bool(notes))

    def set_image_size(self, width: int, height: int) -> None:
        """The full image's size, for the blur estimate."""
        self._image_size = (width, height)
        self._update_blur_label()

    # -------------------------------------------------------------- progress
    def set_progress(self, fraction: float, text: str = "") -> None:
        self.progress.setValue(int(round(1000 * min(max(fraction, 0.0), 1.0))))
        self.progress.setFormat(f"{text} – %p%" if text else "%p%")

    def set_busy(self, busy: bool, text: str = "") -> None:
        """A host render started or ended: Stop works, OK waits."""
        self.stop_button.setEnabled(busy)
        if self.buttons is not None:
            self.buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok).setEnabled(not busy)
        if not busy:
            self.progress.setValue(0)
            self.progress.setFormat(text)

    def _stop(self) -> None:
        self._worker.cancel()
        self.cancelRequested.emit()
        self.set_busy(False, "stopped")

    # ----------------------------------------------------------------- slots
    @staticmethod
    def _slider_pos(f_number: float) -> int:
        lo, hi = schema.BY_NAME["aperture"].minimum, schema.BY_NAME["aperture"].maximum
        # f-numbers are perceived on a log scale (each stop is ×√2)
        return round(_SLIDER_STEPS * math.log(f_number / lo) / math.log(hi / lo))

    def _slider_moved(self, pos: int) -> None:
        if self._updating:
            return
        lo, hi = schema.BY_NAME["aperture"].minimum, schema.BY_NAME["aperture"].maximum
        self._updating = True
        self.aperture_spin.setValue(lo * (hi / lo) ** (pos / _SLIDER_STEPS))
        self._updating = False
        self._changed()

    def _spin_changed(self, value: float) -> None:
        if self._updating:
            return
        self._updating = True
        self.aperture_slider.setValue(self._slider_pos(value))
        self._updating = False
        self._changed()

    def _focus_clicked(self, fx: float, fy: float) -> None:
        self._focus = (fx, fy)
        point = schema.BY_NAME["focus_source"].choices.index("point")
        if self.focus_combo.currentIndex() != point:
            self.focus_combo.setCurrentIndex(point)  # emits _changed
        else:
            self._changed()

    def _changed(self, *_args) -> None:
        if self._updating:
            return
        self._update_blur_label()
        self.rotation_spin.setEnabled(self.blades_spin.value() != _ROUND_BLADES)
        enlarging = self._enlarging()
        self.upscaler_combo.setEnabled(enlarging)  # nothing to upscale at ×1
        learned = self.upscaler_combo.currentData() == "realesrgan"
        self.detail_spin.setEnabled(enlarging and learned)
        self._show_upscaler_note()
        focus = self.focus_combo.currentData()
        self.preview.set_focus_marker(self._focus if focus == "point" else None)
        mask_item = self.focus_combo.model().item(0)
        mask_item.setEnabled(self._has_mask)
        mask_item.setToolTip("" if self._has_mask else "Paint a selection or mask first")
        params = self.params()
        changed = {k for k in params if params[k] != self._emitted.get(k)}
        self._emitted = params
        self.paramsChanged.emit(params)
        # Nothing changed (a host asking for a fresh preview) renders too; SR alone does not.
        if self._worker.enabled and not (changed and changed <= _SR_ONLY):
            self._debounce.start()

    def _enlarging(self) -> bool:
        return (self.sr_combo.currentData() or 1) > 1

    def _show_upscaler_note(self) -> None:
        # Only where the upscaler matters: a docker has little height to spare.
        self.upscaler_note.setVisible(self._enlarging() and bool(self.upscaler_note.text()))

    def _update_blur_label(self) -> None:
        width, height = self._image_size
        if not width:
            self.blur_label.setText("")
            return
        radius = background_blur_px(
            self.aperture_spin.value(),
            self.focal_spin.value() if self.focal_spin.value() >= 8 else 0.0,
            width,
            height,
            self.sr_combo.currentData() or 1,
        )
        self.blur_label.setText(f"background blur ≈ {radius:.0f} px")

    def _start_preview(self) -> None:
        self.set_progress(0.0, "preview")
        self.stop_button.setEnabled(True)
        self.preview.set_message("rendering preview…")
        self._worker.request(self.params())

    def _preview_done(self, image: PreviewImage) -> None:
        self.preview.set_image(image)
        self.preview.set_message("")
        self.stop_button.setEnabled(False)
        self.set_progress(1.0, "preview")

    def _preview_failed(self, message: str) -> None:
        self.preview.set_message(message)
        self.stop_button.setEnabled(False)
        self.progress.setValue(0)
        self.progress.setFormat("preview failed")

    def _accept(self) -> None:
        self._worker.cancel()
        self.accepted.emit(self.params())

    def shutdown(self) -> None:
        """Stop a preview in flight (call before the widget goes away)."""
        self._debounce.stop()
        self._worker.cancel()

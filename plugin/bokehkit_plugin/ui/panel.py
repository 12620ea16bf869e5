"""BokehPanel: every parameter of the schema, a live preview and progress, in one QWidget.

The same widget sits in a QDialog (GIMP, via the engine) and in a Krita docker (`compact`:
preview above the controls, for a narrow dock on a small screen). It knows nothing of hosts
or engines: it takes a `preview_fn` that renders a small preview, emits the chosen
parameters, and asks the host for the fixes it offers (`fixRequested`).
"""

from __future__ import annotations

from .. import schema
from .blur_hint import background_blur_px
from .controls import ApertureControl, DepthRangeSlider, FocalLengthControl
from .notices import DepthNotice, short_reason
from .preview import PreviewFn, PreviewImage, PreviewView, PreviewWorker
from .qt import Qt, QtCore, QtWidgets, Signal

_ROUND_BLADES = 4  # the blades spin box shows "round" at this value; it means 0
# The preview is rendered without super-resolution: changing only these needs no new one.
_SR_ONLY = frozenset(("sr_factor", "upscaler", "sr_detail"))
MASK_GONE = (
    'No painted mask any more (layer mask, selection or "Focus" channel), so focus is on '
    "Auto. Paint one to focus on it."
)
#: A mask that hides the photo while one paints it, and what to paint instead, by where the
#: host says the mask comes from (GIMP's layer mask, Krita's transparency mask).
HIDING_MASK_TIPS = {
    "layer mask": (
        "Tip: a layer mask hides the photo where you paint black. Paint the focus in Quick "
        'Mask (Shift+Q) or in a channel named "Focus" instead: the photo stays visible.'
    ),
    "transparencymask": (
        "Tip: a transparency mask hides the photo where you paint black. Paint the focus "
        'on a layer named "Focus" or in a selection mask instead: the photo stays visible.'
    ),
}


def _choice_index(param: schema.Param, value) -> int:
    return param.choices.index(value) if value in param.choices else 0


class BokehPanel(QtWidgets.QWidget):
    """Parameters, preview (click = focus point), progress; emits `accepted(params)`."""

    paramsChanged = Signal(dict)
    accepted = Signal(dict)
    rejected = Signal()
    cancelRequested = Signal()  # stop the render in progress (host renders)
    fixRequested = Signal(str)  # a "no depth" fix (notices.DEPTH_FIXES) the host carries out

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
        compact: bool = False,
        parent=None,
    ) -> None:
        super().__init__(parent)
        self._updating = True  # no signals until every control shows `params`
        self._emitted: dict = {}  # the params last sent out, to tell what changed
        self._has_mask = has_mask
        self._mask_was_chosen = False  # to say so when the mask goes away
        self._has_depth: bool | None = None  # None: not known (no ping yet)
        self._mask_source: str | None = None
        self._focus = (0.5, 0.5)
        if image_size is None:
            image_size = (source.width, source.height) if source is not None else (0, 0)
        self._image_size = image_size
        self._worker = PreviewWorker(preview_fn, self)
        self._debounce = QtCore.QTimer(self)
        self._debounce.setSingleShot(True)
        self._debounce.setInterval(250)
        self._debounce.timeout.connect(self._start_preview)
        self._build(ok_text, show_buttons, compact)
        self._worker.finished.connect(self._preview_done)
        self._worker.failed.connect(self._preview_failed)
        self._worker.progress.connect(self.set_progress)
        self.set_engines(engines or {"classical": {"available": True}})
        if source is not None:
            self.preview.set_image(source)
            self.preview.set_message("")
        self.set_params(params or {})

    # ---------------------------------------------------------------- building
    def _build(self, ok_text: str, show_buttons: bool, compact: bool) -> None:
        p = schema.BY_NAME
        self.preview = PreviewView(self)
        self.preview.focusClicked.connect(self._focus_clicked)
        self.preview.viewChanged.connect(self._view_changed)
        if compact:
            self.preview.setMinimumSize(200, 140)
            self.preview.zoom_needs_ctrl = True

        self.aperture = ApertureControl(p["aperture"].minimum, p["aperture"].maximum)
        self.aperture_slider, self.aperture_spin = self.aperture.slider, self.aperture.spin
        self.blur_label = QtWidgets.QLabel()
        self.blur_label.setToolTip("Disc radius of a distant background in the result")
        self.focal = FocalLengthControl(8.0, p["focal_length"].maximum)
        self.focal_spin = self.focal.spin

        self.focus_combo = self._combo(p["focus_source"])
        self.range_slider = DepthRangeSlider()
        self.range_label = QtWidgets.QLabel()
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
        self.engine_where = self._note()  # "remote: CUDA, MagicBokeh available"
        self.focus_note = self._note()  # the mask went away; a layer mask hides the photo
        self.focus_note.setEnabled(True)
        self.depth_notice = DepthNotice()
        self.depth_notice.fixRequested.connect(self.fixRequested.emit)
        self.depth_notice.hide()

        blades_row = QtWidgets.QHBoxLayout()
        blades_row.addWidget(self.blades_spin)
        blades_row.addWidget(QtWidgets.QLabel("rotation"))
        blades_row.addWidget(self.rotation_spin)
        range_row = QtWidgets.QVBoxLayout()
        range_row.setSpacing(0)
        range_row.addWidget(self.range_slider)
        range_row.addWidget(self.range_label)

        form = QtWidgets.QFormLayout()
        if compact:  # labels above their fields: a docker is narrow
            form.setRowWrapPolicy(QtWidgets.QFormLayout.RowWrapPolicy.WrapLongRows)
        form.addRow(p["aperture"].label.replace(" (f-number)", ""), self.aperture)
        form.addRow("", self.blur_label)
        form.addRow("Focal length", self.focal)
        form.addRow(p["focus_source"].label, self.focus_combo)
        form.addRow("", self.focus_note)
        self._range_row = QtWidgets.QWidget()
        self._range_row.setLayout(range_row)
        range_row.setContentsMargins(0, 0, 0, 0)
        form.addRow("Sharp band", self._range_row)
        form.addRow(p["sr_factor"].label, self.sr_combo)
        form.addRow(p["upscaler"].label, self.upscaler_combo)
        form.addRow(p["sr_detail"].label, self.detail_spin)
        form.addRow("", self.upscaler_note)
        form.addRow(p["blades"].label, blades_row)
        form.addRow(p["highlights"].label, self.highlights_spin)
        form.addRow(p["grain"].label, self.grain_spin)
        form.addRow(p["engine"].label, self.engine_combo)
        form.addRow("", self.engine_note)
        form.addRow("", self.engine_where)
        self._form = form
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
        self.aperture_slider.setToolTip(p["aperture"].help + " The slider moves in ⅓ stops.")

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
        # One line, always there: a message that comes or goes never moves the buttons.
        self.status = QtWidgets.QLabel("")
        self.status.setSizePolicy(
            QtWidgets.QSizePolicy.Policy.Ignored, QtWidgets.QSizePolicy.Policy.Fixed
        )
        self.status.setFixedHeight(self.status.fontMetrics().height() + 4)

        layout = QtWidgets.QVBoxLayout(self)
        if compact:
            # A docker on a small screen may be short: the preview and the settings scroll,
            # progress, status and the buttons stay in view below them.
            layout.setContentsMargins(0, 0, 0, 0)
            scrolled = QtWidgets.QWidget()
            inner = QtWidgets.QVBoxLayout(scrolled)
            inner.setContentsMargins(0, 0, 4, 0)
            inner.addWidget(self.preview, 1)
            inner.addWidget(self.depth_notice)
            inner.addLayout(form)
            self.scroll = QtWidgets.QScrollArea()
            self.scroll.setWidgetResizable(True)
            self.scroll.setFrameShape(QtWidgets.QFrame.Shape.NoFrame)
            self.scroll.setWidget(scrolled)
            self.scroll.setMinimumHeight(60)
            layout.addWidget(self.scroll, 1)
        else:
            side = QtWidgets.QVBoxLayout()
            side.addWidget(self.depth_notice)
            side.addLayout(form)
            side.addStretch(1)
            top = QtWidgets.QHBoxLayout()
            top.addWidget(self.preview, 3)
            top.addLayout(side, 2)
            layout.addLayout(top, 1)
        layout.addLayout(progress_row)
        layout.addWidget(self.status)
        self.buttons = None
        if show_buttons:
            std = QtWidgets.QDialogButtonBox.StandardButton
            self.buttons = QtWidgets.QDialogButtonBox(std.Ok | std.Cancel)
            self.buttons.button(std.Ok).setText(ok_text)
            self.depth_button = self.buttons.addButton(
                "Depth as layer", QtWidgets.QDialogButtonBox.ButtonRole.ActionRole
            )
            self.depth_button.setToolTip(
                "Add the depth the engine uses as a new layer (near warm, far dark, the focal "
                "plane green), to check it and paint Focus or Blur over it"
            )
            self.depth_button.clicked.connect(self._accept_depth)
            self.buttons.accepted.connect(self._accept)
            self.buttons.rejected.connect(self.rejected.emit)
            layout.addWidget(self.buttons)

        self.aperture.valueChanged.connect(self._changed)
        self.focal.valueChanged.connect(self._changed)
        for spin in (self.rotation_spin, self.highlights_spin, self.grain_spin, self.detail_spin):
            spin.valueChanged.connect(self._changed)
        self.blades_spin.valueChanged.connect(self._changed)
        for combo in (self.focus_combo, self.sr_combo, self.upscaler_combo, self.engine_combo):
            combo.currentIndexChanged.connect(self._changed)
        self.focus_combo.activated.connect(self._user_chose_focus)
        self.range_slider.rangeChanged.connect(self._changed)

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
        note.hide()
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
        near, far = self.range_slider.values()
        values = {
            "aperture": self.aperture.value(),
            "focal_length": self.focal.value(),
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
            "focus_near": round(near, 3),
            "focus_far": round(far, 3),
        }
        return schema.validate(values)

    def set_has_mask(self, has_mask: bool) -> None:
        """Say whether the current document has a painted mask (a docker follows the active
        document); without one, "Painted mask" is greyed out and not chosen, and if it was
        chosen the panel says why focus moved to Auto."""
        self._has_mask = bool(has_mask)
        if not self._has_mask and self.focus_combo.currentData() == "mask":
            self._mask_was_chosen = True
            self.set_params({**self.params(), "focus_source": "auto"})
        self._changed()

    def set_mask_source(self, name: str | None) -> None:
        """Where the painted mask comes from ("layer mask", "selection"...): a layer mask
        earns a tip, since it hides the photo while one paints it."""
        self._mask_source = name
        self._show_focus_note()

    def set_params(self, params: dict) -> None:
        """Show `params` (validated; missing ones at their defaults)."""
        values = schema.validate(params)
        if values["focus_source"] == "mask" and not self._has_mask:
            self._mask_was_chosen = True
            values["focus_source"] = "auto"
        self._updating = True
        try:
            self.aperture.set_value(values["aperture"])
            self.focal.set_value(values["focal_length"])
            sr_param = schema.BY_NAME["sr_factor"]
            self.sr_combo.setCurrentIndex(_choice_index(sr_param, values["sr_factor"]))
            focus_param = schema.BY_NAME["focus_source"]
            self.focus_combo.setCurrentIndex(_choice_index(focus_param, values["focus_source"]))
            self._focus = (values["focus_x"], values["focus_y"])
            self.range_slider.set_values(values["focus_near"], values["focus_far"])
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
        """What the engine can do, from its `pong`: renderers and the "realesrgan" upscaler
        it cannot run are greyed out with a short reason; "subject" says what Auto focuses
        on; "depth" whether it has depth (else the "no depth" notice)."""
        self.engines = dict(engines)
        where = (engines.get("where") or {}).get("label")
        self.engine_where.setText(f"Engine: {where}" if where else "")
        self.engine_where.setVisible(bool(where))
        self._grey_out(self.engine_combo, "engine", engines, self.engine_note)
        # The classical upscaler needs no model; engines["classical"] is the renderer.
        upscalers = dict(engines, classical={"available": True})
        self._grey_out(self.upscaler_combo, "upscaler", upscalers, self.upscaler_note)
        self._show_upscaler_note()
        subject = engines.get("subject")
        auto = schema.BY_NAME["focus_source"].choices.index("auto")
        finds = None if subject is None else bool(subject.get("available"))
        self.focus_combo.setItemText(auto, schema.AUTO_LABELS[finds])
        if subject is not None and not finds:
            self.focus_combo.setItemData(
                auto, short_reason(subject.get("reason", "")), Qt.ItemDataRole.ToolTipRole
            )
        depth = engines.get("depth")
        if depth is not None:
            self.set_has_depth(bool(depth.get("available")))

    def set_has_depth(self, has_depth: bool | None) -> None:
        """Whether the render has real depth (a model, a depth map, the phone's): without
        it the panel says so, before any render, and offers the fixes."""
        self._has_depth = has_depth
        self.depth_notice.setVisible(has_depth is False)

    @staticmethod
    def _grey_out(combo, name: str, status: dict, note: QtWidgets.QLabel) -> None:
        """Disable the choices of `combo` that `status` says are unavailable; the note says
        why in a few words, the tooltip has the engine's whole reason (with the command)."""
        notes = []
        for index, value in enumerate(schema.BY_NAME[name].choices):
            info = status.get(value) or {"available": False, "reason": "unknown to this engine"}
            item = combo.model().item(index)
            item.setEnabled(bool(info.get("available")))
            reason = info.get("reason", "")
            item.setToolTip(reason)
            if not info.get("available"):
                label = combo.itemText(index)
                notes.append(f"{label}: {short_reason(reason) if reason else 'not available'}")
                if combo.currentIndex() == index:
                    combo.setCurrentIndex(0)
        note.setText("\n".join(notes))
        note.setToolTip(
            "\n".join(
                f"{combo.itemText(i)}: {(status.get(v) or {}).get('reason', '')}"
                for i, v in enumerate(schema.BY_NAME[name].choices)
                if not (status.get(v) or {}).get("available")
            )
        )
        note.setVisible(bool(notes))

    def set_image_size(self, width: int, height: int) -> None:
        """The full image's size, for the blur estimate."""
        self._image_size = (width, height)
        self._update_blur_label()

    def set_status(self, text: str, tooltip: str = "") -> None:
        """One line under the progress bar (the whole text in the tooltip)."""
        metrics = self.status.fontMetrics()
        width = max(self.status.width(), 120)
        self.status.setText(metrics.elidedText(text, Qt.TextElideMode.ElideRight, width))
        self.status.setToolTip(tooltip or text)

    # -------------------------------------------------------------- progress
    def set_progress(self, fraction: float, text: str = "") -> None:
        self.progress.setValue(int(round(1000 * min(max(fraction, 0.0), 1.0))))
        self.progress.setFormat(f"{text} – %p%" if text else "%p%")

    def set_busy(self, busy: bool, text: str = "") -> None:
        """A host render started or ended: Stop works, OK waits."""
        self.stop_button.setEnabled(busy)
        if self.buttons is not None:
            self.buttons.button(QtWidgets.QDialogButtonBox.StandardButton.Ok).setEnabled(not busy)
            self.depth_button.setEnabled(not busy)
        if not busy:
            self.progress.setValue(0)
            self.progress.setFormat(text)

    def _stop(self) -> None:
        self._worker.cancel()
        self.cancelRequested.emit()
        self.set_busy(False, "stopped")

    # ----------------------------------------------------------------- slots
    def _focus_clicked(self, fx: float, fy: float) -> None:
        self._focus = (fx, fy)
        point = schema.BY_NAME["focus_source"].choices.index("point")
        if self.focus_combo.currentIndex() != point:
            self.focus_combo.setCurrentIndex(point)  # emits _changed
        else:
            self._changed()

    def _user_chose_focus(self, _index: int) -> None:
        self._mask_was_chosen = False  # the user's own choice needs no explanation
        self._show_focus_note()

    def _view_changed(self, _view: str) -> None:
        if self._worker.enabled:
            self._debounce.start()

    def _show_focus_note(self) -> None:
        focus = self.focus_combo.currentData()
        text = ""
        if self._mask_was_chosen and not self._has_mask and focus == "auto":
            text = MASK_GONE
        elif focus == "mask" and self._mask_source:
            kind = self._mask_source.split(" “")[0]  # Krita: 'transparencymask “Sharp”'
            text = HIDING_MASK_TIPS.get(kind, "")
        self.focus_note.setText(text)
        self.focus_note.setVisible(bool(text))

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
        for widget in (self._range_row, self._form.labelForField(self._range_row)):
            widget.setVisible(focus == "range")
        near, far = self.range_slider.values()
        self.range_label.setText(f"sharp from {near:.0%} to {far:.0%} of the depth (near → far)")
        mask_item = self.focus_combo.model().item(0)
        mask_item.setEnabled(self._has_mask)
        mask_item.setToolTip("" if self._has_mask else "Paint a selection or mask first")
        self._show_focus_note()
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
            self.aperture.value(),
            self.focal.value(),
            width,
            height,
            self.sr_combo.currentData() or 1,
        )
        self.blur_label.setText(f"background blur ≈ {radius:.0f} px")

    def _start_preview(self) -> None:
        self.set_progress(0.0, "preview")
        self.stop_button.setEnabled(True)
        self.preview.set_message("rendering preview…")
        params = self.params()
        if self.preview.view() == "depth":
            params["output"] = "depth"
        self._worker.request(params)

    def _preview_done(self, image: PreviewImage) -> None:
        self.preview.set_result(image)
        self.preview.set_message("")
        self.stop_button.setEnabled(False)
        self.set_progress(1.0, "preview")
        report = getattr(image, "report", None) or []
        depth_line = next((line for line in report if line.startswith("depth: ")), "")
        if depth_line:  # the engine's own word: was there real depth?
            self.set_has_depth(not depth_line.startswith("depth: none given"))

    def _preview_failed(self, message: str) -> None:
        self.preview.set_message(message)
        self.stop_button.setEnabled(False)
        self.progress.setValue(0)
        self.progress.setFormat("preview failed")

    def _accept(self) -> None:
        self._worker.cancel()
        self.accepted.emit(self.params())

    def _accept_depth(self) -> None:
        self._worker.cancel()
        self.accepted.emit(dict(self.params(), output="depth"))

    def shutdown(self) -> None:
        """Stop a preview in flight (call before the widget goes away)."""
        self._debounce.stop()
        self._worker.cancel()

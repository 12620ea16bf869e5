#!/usr/bin/env python3
"""bokehkit for GIMP 3: photorealistic lens bokeh on the active layer.

Install: <GIMP profile>/plug-ins/bokehkit-gimp/bokehkit-gimp.py (executable, folder name ==
file name) with a copy of plugin/bokehkit_plugin next to it. PDB: python-fu-bokehkit,
menu Filters > Bokeh. The engine runs in its own process (docs/protocol.md); this file only
does GIMP things: arguments, pixels in and out, progress, undo.

Focus mask (white = sharp), first found: the "mask" argument, the layer's mask, the
selection, a channel named "Focus". None of them is modified.
"""

import os
import sys
import threading

# Nothing is written into the plug-in folder at run time (an update must not meet stale
# bytecode, and uninstall removes exactly what was installed).
sys.dont_write_bytecode = True

import gi  # noqa: E402

gi.require_version("Gimp", "3.0")
gi.require_version("Gegl", "0.4")
gi.require_version("Babl", "0.1")
from gi.repository import Babl, Gegl, Gimp, GLib, GObject  # noqa: E402


def _add_plugin_path():
    """The vendored bokehkit_plugin next to this file, else the repository's (development)."""
    here = os.path.dirname(os.path.realpath(__file__))
    for cand in (here, os.path.join(here, "..", "..", "plugin")):
        if os.path.isdir(os.path.join(cand, "bokehkit_plugin")):
            sys.path.insert(0, os.path.abspath(cand))
            return


_add_plugin_path()

PROC = "python-fu-bokehkit"
RGBA = "RGBA float"  # linear light, what the engine renders in
FOCUS_CHANNEL = "focus"  # a channel with this name (any case) is a focus mask


# ------------------------------------------------------------------ shared logic (no GIMP)


def arg_name(param_name):
    """Schema name -> GIMP argument name ("focal_length" -> "focal-length")."""
    return param_name.replace("_", "-")


def choice_nick(value):
    """GIMP choice nicks are strings; numbers get a letter ("x2")."""
    return value if isinstance(value, str) else f"x{value:g}"


def params_from_values(schema, values):
    """The engine's params (validated by the schema) from GIMP argument values by name."""
    params = {}
    for p in schema.SCHEMA:
        v = values[arg_name(p.name)]
        if p.choices:
            v = dict((choice_nick(c), c) for c in p.choices)[v]
        params[p.name] = v
    return schema.validate(params)


NO_MASK = (
    'focus on "Painted mask" but there is none: paint a layer mask, make a selection or add '
    'a channel named "Focus" (white = sharp), or focus on a point or auto'
)


def first_mask(candidates):
    """The first (name, drawable) whose drawable exists, else (None, None)."""
    for name, drawable in candidates:
        if drawable is not None:
            return name, drawable
    return None, None


def gimp_death_watch(interval=0.5):
    """An Event set when GIMP (our parent) goes away: a plug-in blocked on the engine never
    reads GIMP's wire, so without this a killed GIMP would leave it and the engine (and an
    engine dialog) behind. Used as the cancel event of every engine request."""
    event, parent = threading.Event(), os.getppid()

    def watch():
        while not event.wait(interval):
            if os.getppid() != parent:
                event.set()

    threading.Thread(target=watch, name="bokehkit-gimp-watch", daemon=True).start()
    return event


# ------------------------------------------------------------------ GIMP pixels


def pixel_format(precision_nick):
    """(babl format, dtype, transfer) to hand a layer of this precision to the engine.

    8/16-bit integer layers go as their own code values (sRGB curve or linear), so the engine
    sees what a file of the same image holds: clipped lights are then known to be clipped
    (highlight recovery) and the result is rounded as the CLI rounds it. Half/float/u32/
    double layers go as linear float32 ("RGBA float").
    """
    bits, _, trc = precision_nick.partition("-")
    dtype = {"u8": ("u8", "uint8"), "u16": ("u16", "uint16")}.get(bits)
    if dtype is None:
        return RGBA, "float32", "linear"
    if trc == "linear":
        return f"RGBA {dtype[0]}", dtype[1], "linear"
    return f"R~G~B~A {dtype[0]}", dtype[1], "srgb"


def _read(drawable, x, y, w, h, fmt, abyss=Gegl.AbyssPolicy.NONE):
    buf = drawable.get_buffer()
    return buf.get(Gegl.Rectangle.new(x, y, w, h), 1.0, fmt, abyss)


def _mask_format(drawable):
    """Read a mask as its stored code values / full scale, in float.

    Layer masks and the selection are linear ("Y u8"); in 8-bit perceptual images channels
    are stored as "Y' u8": reading those as linear would turn a painted 50 % grey into 21 %.
    """
    try:
        enc = Babl.format_get_encoding(drawable.get_format()) or ""
    except Exception:  # noqa: BLE001 - older bindings: linear is GIMP's mask default
        enc = ""
    for prefix in ("Y'", "Y~"):
        if enc.startswith(prefix):
            return prefix + " float"
    return "Y float"


def read_mask(mask, layer):
    """The mask under the layer, in the layer's coordinates, float32 bytes (0 outside)."""
    _, lx, ly = layer.get_offsets()
    if mask.is_layer_mask():  # in the coordinates of the layer it belongs to
        _, mx, my = Gimp.Layer.from_mask(mask).get_offsets()
    elif mask.is_layer():
        _, mx, my = mask.get_offsets()
    else:  # the selection and channels are image-sized
        mx, my = 0, 0
    w, h = layer.get_width(), layer.get_height()
    return _read(mask, lx - mx, ly - my, w, h, _mask_format(mask))


def mask_candidates(image, layer, mask_arg):
    """(name, drawable) in priority order; None where there is none."""
    sel = None
    if not Gimp.Selection.is_empty(image):
        sel = image.get_selection()
    chan = None
    for c in image.get_channels():
        if c.get_name().strip().lower() == FOCUS_CHANNEL:
            chan = c
            break
    return [
        ("mask argument", mask_arg),
        ("layer mask", layer.get_mask()),
        ("selection", sel),
        ('channel "Focus"', chan),
    ]


# ------------------------------------------------------------------ the procedure


def _schema():
    from bokehkit_plugin import schema

    return schema


def _error(procedure, message, status=Gimp.PDBStatusType.EXECUTION_ERROR):
    return procedure.new_return_values(
        status, GLib.Error.new_literal(Gimp.PlugIn.error_quark(), message, 0)
    )


def _interactive_dialog(procedure, config):
    """GIMP's procedure dialog over the arguments (last values, Repeat, presets for free)."""
    gi.require_version("GimpUi", "3.0")
    from gi.repository import GimpUi

    GimpUi.init(PROC)
    dialog = GimpUi.ProcedureDialog.new(procedure, config, "Lens Bokeh (bokehkit)")
    dialog.fill(None)
    if os.environ.get("BOKEHKIT_GIMP_DIALOG_TEST"):  # screenshot hook for the tests
        print("bokehkit-gimp: dialog shown", file=sys.stderr, flush=True)
    ok = dialog.run()
    dialog.destroy()
    return ok


def _choose_interactively(
    procedure, config, engine, img_buf, params, mask_buf, engine_error, cancel_event, frame
):
    """The engine's Qt dialog (with its preview) when it has one, else GIMP's procedure
    dialog. The chosen values go back into the config, so Filters > Repeat reuses them.
    Returns None when the user cancelled. `frame` = (image, layer): the engine's dialog shows
    the layer, so its focus point is in layer fractions, the arguments' in image fractions."""
    image, layer = frame
    if not os.environ.get("BOKEHKIT_GIMP_NATIVE_DIALOG"):
        params = dict(params)
        params["focus_x"], params["focus_y"] = _to_layer(params, image, layer)
        if os.environ.get("BOKEHKIT_GIMP_DIALOG_TEST"):  # screenshot hook for the tests
            print("bokehkit-gimp: engine dialog requested", file=sys.stderr, flush=True)
        try:
            chosen = engine.dialog(img_buf, params, mask=mask_buf, cancel_event=cancel_event)
        except engine_error as exc:
            print(
                f"bokehkit-gimp: no engine dialog ({exc}); using GIMP's",
                file=sys.stderr,
                flush=True,
            )
            if not engine.running:
                engine.start()
        else:
            if chosen is None:
                return None
            chosen = dict(chosen)
            chosen["focus_x"], chosen["focus_y"] = _to_image(chosen, image, layer)
            by_name = _schema().BY_NAME
            for name, value in chosen.items():
                if name in by_name:
                    prm = by_name[name]
                    config.set_property(
                        arg_name(name), choice_nick(value) if prm.choices else value
                    )
            return chosen
    return params if _interactive_dialog(procedure, config) else None


def _to_layer(params, image, layer):
    """The focus point from image fractions to layer fractions (unclamped)."""
    _, ox, oy = layer.get_offsets()
    x = (params["focus_x"] * image.get_width() - ox) / layer.get_width()
    y = (params["focus_y"] * image.get_height() - oy) / layer.get_height()
    return x, y


def _to_image(params, image, layer):
    """The focus point from layer fractions back to image fractions."""
    _, ox, oy = layer.get_offsets()
    x = (params["focus_x"] * layer.get_width() + ox) / image.get_width()
    y = (params["focus_y"] * layer.get_height() + oy) / image.get_height()
    return min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)


def _layer_point(params, image, layer):
    """The focus point from image fractions to layer fractions (the engine sees the layer)."""
    x, y = _to_layer(params, image, layer)
    if params["focus_source"] == "point" and not (0 <= x <= 1 and 0 <= y <= 1):
        raise ValueError("the focus point lies outside the layer")
    params["focus_x"], params["focus_y"] = min(max(x, 0.0), 1.0), min(max(y, 0.0), 1.0)


def run(procedure, run_mode, image, drawables, config, data):
    if len(drawables) != 1:
        return _error(procedure, "select exactly one layer", Gimp.PDBStatusType.CALLING_ERROR)
    layer = drawables[0]
    if layer.is_layer_mask():  # painting the mask: render its layer
        layer = Gimp.Layer.from_mask(layer)
    if not layer.is_layer():
        return _error(procedure, "select a layer (not a channel)", Gimp.PDBStatusType.CALLING_ERROR)
    try:
        from bokehkit_plugin import client as bk_client
        from bokehkit_plugin import rawbuffer as bk_raw

        schema = _schema()
    except ImportError as exc:
        return _error(procedure, f"bokehkit: the plug-in is incomplete ({exc}); reinstall it")

    def values():
        return {arg_name(p.name): config.get_property(arg_name(p.name)) for p in schema.SCHEMA}

    w, h = layer.get_width(), layer.get_height()
    _, off_x, off_y = layer.get_offsets()
    try:
        params = params_from_values(schema, values())
    except ValueError as exc:  # schema.ParamError
        return _error(procedure, f"bokehkit: {exc}")
    mask_name, mask = first_mask(mask_candidates(image, layer, config.get_property("mask")))
    fmt, dtype, transfer = pixel_format(image.get_precision().value_nick)
    img_buf = bk_raw.RawImage(
        w, h, _read(layer, 0, 0, w, h, fmt, Gegl.AbyssPolicy.CLAMP), "RGBA", "RGBA", dtype, transfer
    )
    mask_buf = None
    if mask is not None:
        mask_buf = bk_raw.RawImage(w, h, read_mask(mask, layer), "Y", "RGBA", "float32", "linear")

    def on_progress(fraction, text=""):
        if text:
            Gimp.progress_set_text(f"Bokeh: {text}")
        Gimp.progress_update(max(0.0, min(1.0, float(fraction))))

    engine = bk_client.EngineClient()
    gimp_gone = gimp_death_watch()
    try:
        try:
            engine.start()
            if run_mode == Gimp.RunMode.INTERACTIVE:
                chosen = _choose_interactively(
                    procedure,
                    config,
                    engine,
                    img_buf,
                    params,
                    mask_buf,
                    bk_client.EngineError,
                    gimp_gone,
                    (image, layer),
                )
                if chosen is None or gimp_gone.is_set():
                    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
                params = params_from_values(schema, values())
            _layer_point(params, image, layer)
            if params["focus_source"] == "mask":
                if mask is None:
                    raise ValueError(NO_MASK)
                print(
                    f"bokehkit-gimp: focus mask from the {mask_name}", file=sys.stderr, flush=True
                )
            else:
                mask_buf = None
            Gimp.progress_init("Bokeh: rendering")
            result = engine.render(
                img_buf, params, mask=mask_buf, on_progress=on_progress, cancel_event=gimp_gone
            )
        finally:
            engine.close()
    except bk_client.Cancelled:
        Gimp.progress_end()
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
    except (bk_client.EngineError, OSError, ValueError) as exc:
        Gimp.progress_end()
        return _error(procedure, f"bokehkit: {exc}")
    for line in getattr(result, "report", None) or []:
        print(f"bokehkit-gimp: {line}", file=sys.stderr, flush=True)

    out = result.image
    Gimp.progress_set_text("Bokeh: adding the result")
    if params["sr_factor"] > 1:  # a new image at the new size
        new = _new_image_with(image, layer, out, params["sr_factor"], fmt)
        if run_mode == Gimp.RunMode.INTERACTIVE:
            Gimp.Display.new(new)
        Gimp.progress_end()
        return Gimp.ValueArray.new_from_values(
            [
                GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
                GObject.Value(Gimp.Image, new),
            ]
        )

    image.undo_group_start()
    try:
        res = _new_layer(image, f"{layer.get_name()} bokeh", w, h)
        image.insert_layer(res, layer.get_parent(), image.get_item_position(layer))
        res.set_offsets(off_x, off_y)
        _write(res, out, fmt)
    finally:
        image.undo_group_end()
    Gimp.progress_end()
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


def _new_layer(image, name, w, h):
    gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
    kind = Gimp.ImageType.GRAYA_IMAGE if gray else Gimp.ImageType.RGBA_IMAGE
    return Gimp.Layer.new(image, name, w, h, kind, 100.0, Gimp.LayerMode.NORMAL)


def _write(layer, out, fmt):
    if out.width != layer.get_width() or out.height != layer.get_height():
        raise RuntimeError(
            f"engine returned {out.width}×{out.height}, expected "
            f"{layer.get_width()}×{layer.get_height()}"
        )
    buf = layer.get_buffer()
    if (out.channels, out.order, out.dtype, out.transfer) != (
        "RGBA",
        "RGBA",
        *pixel_format_of(fmt),
    ):
        raise RuntimeError(
            f"engine returned {out.channels}/{out.order} {out.dtype} "
            f"{out.transfer}; expected what was sent ({fmt})"
        )
    buf.set(Gegl.Rectangle.new(0, 0, out.width, out.height), fmt, out.data)
    buf.flush()
    layer.update(0, 0, out.width, out.height)


def pixel_format_of(fmt):
    """(dtype, transfer) of one of pixel_format()'s babl formats."""
    dtype = {"u8": "uint8", "u16": "uint16", "float": "float32"}[fmt.split()[-1]]
    return dtype, "linear" if fmt.startswith("RGBA") else "srgb"


def _new_image_with(image, layer, out, factor, fmt):
    new = Gimp.Image.new_with_precision(
        out.width, out.height, image.get_base_type(), image.get_precision()
    )
    profile = image.get_color_profile()
    if profile is not None:
        new.set_color_profile(profile)
    new.undo_disable()
    res = _new_layer(new, f"{layer.get_name()} bokeh ×{factor}", out.width, out.height)
    new.insert_layer(res, None, 0)
    _write(res, out, fmt)
    new.undo_enable()
    return new


def _add_schema_arguments(p, schema):
    """One GIMP argument per schema parameter (so batch calls and Filters > Repeat work)."""
    rw = GObject.ParamFlags.READWRITE
    for prm in schema.SCHEMA:
        name, label = arg_name(prm.name), "_" + prm.label
        if prm.choices:
            ch = Gimp.Choice.new()
            for i, c in enumerate(prm.choices):
                lab = prm.choice_labels[i] if i < len(prm.choice_labels) else str(c)
                ch.add(choice_nick(c), i, lab, "")
            p.add_choice_argument(name, label, prm.help, ch, choice_nick(prm.default), rw)
            continue
        lo = min((prm.minimum,) + tuple(prm.extra_values))
        hi = max((prm.maximum,) + tuple(prm.extra_values))
        if prm.type == "int":
            p.add_int_argument(name, label, prm.help, int(lo), int(hi), int(prm.default), rw)
        else:
            p.add_double_argument(
                name, label, prm.help, float(lo), float(hi), float(prm.default), rw
            )


class BokehKit(Gimp.PlugIn):
    def do_set_i18n(self, name):
        return False

    def do_query_procedures(self):
        return [PROC]

    def do_create_procedure(self, name):
        p = Gimp.ImageProcedure.new(self, name, Gimp.PDBProcType.PLUGIN, run, None)
        p.set_image_types("RGB*, GRAY*")
        p.set_sensitivity_mask(Gimp.ProcedureSensitivityMask.DRAWABLE)
        p.set_menu_label("_Lens Bokeh…")
        p.add_menu_path("<Image>/Filters/Bokeh")
        p.set_documentation(
            "Photorealistic lens bokeh (depth of field) and super-resolution",
            "Renders the background blur of a real lens from the active layer into a new layer "
            "above it (a new image for super-resolution). What stays sharp, with focus on "
            "'Painted mask': the 'mask' argument, else the layer mask, the selection, or a "
            'channel named "Focus" (white = sharp). Focus x/y are fractions of the image.',
            name,
        )
        p.set_attribution("bokehkit contributors", "MIT", "2026")
        _add_schema_arguments(p, _schema())
        p.add_drawable_argument(
            "mask",
            "Focus _mask",
            "optional focus mask (white = sharp); "
            'else the layer mask, selection or "Focus" channel',
            True,
            GObject.ParamFlags.READWRITE,
        )
        p.add_image_return_value(
            "new-image",
            "New image",
            "the enlarged image when super-resolution > 1, else none",
            True,
            GObject.ParamFlags.READWRITE,
        )
        return p


if __name__ == "__main__":
    Gimp.main(BokehKit.__gtype__, sys.argv)

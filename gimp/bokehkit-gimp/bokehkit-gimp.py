#!/usr/bin/env python3
"""bokehkit for GIMP 3: photorealistic lens bokeh on the active layer.

Install: <GIMP profile>/plug-ins/bokehkit-gimp/bokehkit-gimp.py (executable, folder name ==
file name) with a copy of plugin/bokehkit_plugin next to it. PDB: python-fu-bokehkit,
menu Filters > Bokeh. The engine runs in its own process (docs/protocol.md); this file only
does GIMP things: arguments, pixels in and out, progress, undo.

Focus mask (white = sharp), first found: the "mask" argument, the layer's mask, the
selection, a channel named "Focus". None of them is modified.
"""

import json
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
from gi.repository import Babl, Gegl, Gimp, Gio, GLib, GObject  # noqa: E402


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
    procedure,
    config,
    engine,
    img_buf,
    params,
    mask_buf,
    engine_error,
    cancel_event,
    frame,
    helpers=None,
    context=None,
):
    """The engine's Qt dialog (with its preview) when it has one, else GIMP's procedure
    dialog. The chosen values go back into the config, so Filters > Repeat reuses them and
    GIMP remembers them for the next session. Returns a client.DialogChoice, or None when
    the user cancelled. `frame` = (image, layer): the engine's dialog shows the layer, so
    its focus point is in layer fractions, the arguments' in image fractions."""
    from bokehkit_plugin.client import DialogChoice

    image, layer = frame
    helpers = helpers or {}
    if not os.environ.get("BOKEHKIT_GIMP_NATIVE_DIALOG"):
        params = dict(params)
        params["focus_x"], params["focus_y"] = _to_layer(params, image, layer)
        if os.environ.get("BOKEHKIT_GIMP_DIALOG_TEST"):  # screenshot hook for the tests
            print(f"bokehkit-gimp: engine dialog requested {json.dumps(params)}",
                  file=sys.stderr, flush=True)  # fmt: skip
        try:
            chosen = engine.dialog(
                img_buf,
                params,
                mask=mask_buf,
                depth=helpers.get("depth"),
                blur=helpers.get("blur"),
                cancel_event=cancel_event,
                context=context,
            )
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
            values = dict(chosen.params)
            values["focus_x"], values["focus_y"] = _to_image(values, image, layer)
            by_name = _schema().BY_NAME
            for name, value in values.items():
                if name in by_name and name != "output":  # a one-off, not a setting to keep
                    prm = by_name[name]
                    config.set_property(
                        arg_name(name), choice_nick(value) if prm.choices else value
                    )
            chosen.params = values
            return chosen
    if _interactive_dialog(procedure, config):
        return DialogChoice(params)
    return None


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


# ------------------------------------------------------------------ helper channels


def named_channel(image, name):
    """The image's channel called `name` (any case), or None."""
    for channel in image.get_channels():
        if channel.get_name().strip().lower() == name:
            return channel
    return None


def read_plane(channel, layer):
    """A channel under the layer as a Y float32 RawImage; None when it is unpainted (one
    value everywhere: a fresh Depth or Blur channel says nothing yet)."""
    from bokehkit_plugin import rawbuffer as bk_raw

    data = read_mask(channel, layer)
    if data.count(data[:4]) * 4 == len(data):
        return None
    w, h = layer.get_width(), layer.get_height()
    return bk_raw.RawImage(w, h, data, "Y", "RGBA", "float32", "linear")


def add_helper_channel(image, name):
    """A black, visible, selected channel to paint on (the "Paint Depth/Blur" fixes)."""
    channel = named_channel(image, name.lower())
    if channel is None:
        channel = Gimp.Channel.new(
            image, name, image.get_width(), image.get_height(), 50.0, Gegl.Color.new("black")
        )
        image.insert_channel(channel, None, 0)
    channel.set_visible(True)
    image.set_selected_channels([channel])
    return channel


PAINT_HINTS = {
    "paint_depth": ("Depth", "paint it white where things are near, black where far"),
    "paint_blur": ("Blur", "paint it white where the blur should be stronger"),
}


# ------------------------------------------------------------------ re-edit records


def read_record_of(layer):
    """(params, source record) when `layer` is one of our results, else None."""
    from bokehkit_plugin import edits

    parasite = layer.get_parasite(edits.RECORD_NAME)
    if parasite is None:
        return None
    return edits.read_record(bytes(parasite.get_data()))


def attach_record(layer, params, source):
    from bokehkit_plugin import edits

    data = list(edits.make_record(params, source).encode("utf-8"))
    layer.attach_parasite(Gimp.Parasite.new(edits.RECORD_NAME, Gimp.PARASITE_PERSISTENT, data))


def non_raster_kind(layer):
    """ "text", "vector" or "link" for GIMP's layers whose pixels are drawn from something
    else (3.2 adds vector and link layers), else None."""
    for kind in ("text", "vector", "link"):
        test = getattr(layer, f"is_{kind}_layer", None)
        if test is not None and test():
            return kind
    return None


def photo_file(image):
    """The photo's file on disk (imported, else the XCF), for the phone's depth; or ""."""
    for getter in ("get_imported_file", "get_file", "get_exported_file"):
        fn = getattr(image, getter, None)
        gfile = fn() if fn is not None else None
        if gfile is not None and gfile.get_path():
            return gfile.get_path()
    return ""


def host_colours():
    """GIMP's theme colours (window, text) for the engine's dialog, or {}."""
    try:
        gi.require_version("GimpUi", "3.0")
        gi.require_version("Gtk", "3.0")
        from gi.repository import GimpUi, Gtk

        GimpUi.init(PROC)  # loads GIMP's theme into GTK
        style = Gtk.Window().get_style_context()
        state = Gtk.StateFlags.NORMAL

        def hexa(c):
            return "#" + "".join(f"{round(255 * v):02x}" for v in (c.red, c.green, c.blue))

        window = style.get_property("background-color", state)
        if window.alpha < 0.5:  # a theme that paints an image: no usable colour
            return {}
        return {"window": hexa(window), "text": hexa(style.get_color(state))}
    except Exception:  # noqa: BLE001 - the dialog then keeps Qt's own colours
        return {}


# ------------------------------------------------------------------ the procedure


def run(procedure, run_mode, image, drawables, config, data):
    """GIMP calls this. Every failure is one line in GIMP's error message, never a traceback."""
    try:
        return _run(procedure, run_mode, image, drawables, config)
    except Exception as exc:  # noqa: BLE001 - the last resort: one line, and the log
        import traceback

        traceback.print_exc()
        return _error(procedure, f"bokehkit: internal error: {type(exc).__name__}: {exc}")


def _run(procedure, run_mode, image, drawables, config):
    if len(drawables) != 1:
        return _error(procedure, "select exactly one layer", Gimp.PDBStatusType.CALLING_ERROR)
    layer = drawables[0]
    if layer.is_layer_mask():  # painting the mask: render its layer
        layer = Gimp.Layer.from_mask(layer)
    if not layer.is_layer():
        return _error(procedure, "select a layer (not a channel)", Gimp.PDBStatusType.CALLING_ERROR)
    try:
        from bokehkit_plugin import client as bk_client
        from bokehkit_plugin import config as bk_config
        from bokehkit_plugin import edits
        from bokehkit_plugin import rawbuffer as bk_raw
        from bokehkit_plugin import remote as bk_remote

        schema = _schema()
    except ImportError as exc:
        return _error(procedure, f"bokehkit: the plug-in is incomplete ({exc}); reinstall it")

    def values():
        return {arg_name(p.name): config.get_property(arg_name(p.name)) for p in schema.SCHEMA}

    try:
        params = params_from_values(schema, values())
    except ValueError as exc:  # schema.ParamError
        return _error(procedure, f"bokehkit: {exc}")

    # Run on one of our results: render again from its source, replacing it (re-edit).
    result_layer, record = None, read_record_of(layer)
    if record is not None:
        stored, source = record
        found = image.get_layer_by_tattoo(source.get("tattoo", -1))
        if found is None or not found.is_valid():
            return _error(
                procedure,
                f"bokehkit: the source layer of this result (\u201c{source.get('name', '?')}"
                "\u201d) is gone; run Lens Bokeh on the photo layer",
            )
        result_layer, layer = layer, found
        if run_mode == Gimp.RunMode.INTERACTIVE:
            params = dict(stored)
    note = ""
    kind = non_raster_kind(layer)
    if kind is not None:  # its pixels as drawn; the source layer stays as it is
        note = f"the {kind} layer is rendered as drawn: the result is an ordinary layer"
        print(f"bokehkit-gimp: note: {note}", file=sys.stderr, flush=True)
    if edits.is_helper(layer.get_name()):
        return _error(
            procedure,
            f"bokehkit: \u201c{layer.get_name()}\u201d is a helper you paint for the engine; "
            "select the photo layer",
            Gimp.PDBStatusType.CALLING_ERROR,
        )

    w, h = layer.get_width(), layer.get_height()
    _, off_x, off_y = layer.get_offsets()
    mask_name, mask = first_mask(mask_candidates(image, layer, config.get_property("mask")))
    fmt, dtype, transfer = pixel_format(image.get_precision().value_nick)
    img_buf = bk_raw.RawImage(
        w, h, _read(layer, 0, 0, w, h, fmt, Gegl.AbyssPolicy.CLAMP), "RGBA", "RGBA", dtype, transfer
    )
    mask_buf = None
    if mask is not None:
        mask_buf = bk_raw.RawImage(w, h, read_mask(mask, layer), "Y", "RGBA", "float32", "linear")
    helpers = {}
    for name in (edits.BLUR, edits.DEPTH):
        channel = named_channel(image, name)
        helpers[name] = read_plane(channel, layer) if channel is not None else None

    def on_progress(fraction, text=""):
        if text:
            Gimp.progress_set_text(f"Bokeh: {text}")
        Gimp.progress_update(max(0.0, min(1.0, float(fraction))))

    engine = bk_remote.make_client()  # a remote engine when install-plugins --remote said so
    gimp_gone = gimp_death_watch()
    depth_photo = None
    try:
        try:
            engine.start()
            if run_mode == Gimp.RunMode.INTERACTIVE:
                context = {
                    "mask_source": mask_name,
                    "photo_file": photo_file(image),
                    "colours": host_colours(),
                    "title": f"Lens Bokeh \u2013 re-edit \u201c{result_layer.get_name()}\u201d"
                    if result_layer is not None
                    else "",
                    "note": note,
                }
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
                    helpers,
                    context,
                )
                if chosen is None or gimp_gone.is_set():
                    return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
                if chosen.action in PAINT_HINTS:  # the dialog's fix: a channel to paint
                    name, how = PAINT_HINTS[chosen.action]
                    add_helper_channel(image, name)
                    Gimp.displays_flush()
                    Gimp.message(f"bokehkit: a {name} channel was added: {how}, then run Lens "
                                 "Bokeh again.")  # fmt: skip
                    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)
                depth_photo = chosen.depth_photo
                params = params_from_values(schema, values())
                params["output"] = chosen.params.get("output", "bokeh")
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
                img_buf,
                params,
                mask=mask_buf,
                depth=helpers[edits.DEPTH],
                blur=helpers[edits.BLUR],
                depth_photo=depth_photo,
                on_progress=on_progress,
                cancel_event=gimp_gone,
            )
        finally:
            engine.close()
    except bk_client.Cancelled:
        Gimp.progress_end()
        return procedure.new_return_values(Gimp.PDBStatusType.CANCEL, None)
    except (bk_client.EngineError, bk_config.EngineNotConfigured, OSError, ValueError) as exc:
        Gimp.progress_end()
        return _error(procedure, f"bokehkit: {exc}")
    for line in getattr(result, "report", None) or []:
        print(f"bokehkit-gimp: {line}", file=sys.stderr, flush=True)

    out = result.image
    enlarged = params["sr_factor"] > 1 and params["output"] == "bokeh"
    factor = params["sr_factor"] if enlarged else 1
    try:  # before anything is added: the image only ever gets a complete result
        check_result(out, w * factor, h * factor, fmt)
    except ValueError as exc:
        Gimp.progress_end()
        return _error(procedure, f"bokehkit: {exc}")
    Gimp.progress_set_text("Bokeh: adding the result")
    name = edits.result_name(layer.get_name(), params)
    source = {"tattoo": layer.get_tattoo(), "name": layer.get_name()}
    if enlarged:  # a new image at the new size
        new = _new_image_with(image, out, name, fmt, params)
        if run_mode == Gimp.RunMode.INTERACTIVE:
            Gimp.Display.new(new)
        Gimp.progress_end()
        return Gimp.ValueArray.new_from_values(
            [
                GObject.Value(Gimp.PDBStatusType, Gimp.PDBStatusType.SUCCESS),
                GObject.Value(Gimp.Image, new),
            ]
        )
    # A re-edit replaces the result it was run on (same place, opacity, mode, visibility);
    # the undo group makes the swap one step.
    replaced = result_layer if result_layer is not None else None
    if replaced is not None and record[0].get("output") != params["output"]:
        replaced = None  # the depth view of a result: a layer of its own
    res = _new_layer(image, name, w, h)
    try:
        _write(res, out, fmt)
    except Exception:
        res.delete()  # never inserted: nothing half-written reaches the image
        raise
    image.undo_group_start()
    try:
        anchor = replaced if replaced is not None else layer
        image.insert_layer(res, anchor.get_parent(), image.get_item_position(anchor))
        res.set_offsets(off_x, off_y)
        if replaced is not None:
            res.set_opacity(replaced.get_opacity())
            res.set_mode(replaced.get_mode())
            res.set_visible(replaced.get_visible())
            image.remove_layer(replaced)
        attach_record(res, params, source)
    finally:
        image.undo_group_end()
    Gimp.progress_end()
    Gimp.displays_flush()
    return procedure.new_return_values(Gimp.PDBStatusType.SUCCESS, None)


def _new_layer(image, name, w, h):
    gray = image.get_base_type() == Gimp.ImageBaseType.GRAY
    kind = Gimp.ImageType.GRAYA_IMAGE if gray else Gimp.ImageType.RGBA_IMAGE
    return Gimp.Layer.new(image, name, w, h, kind, 100.0, Gimp.LayerMode.NORMAL)


def check_result(out, width, height, fmt):
    """ValueError unless the engine's result is what was asked for: its size, and the
    format that was sent."""
    if (out.width, out.height) != (width, height):
        raise ValueError(
            f"the engine returned {out.width}×{out.height}, expected {width}×{height}; "
            "nothing was added"
        )
    expected = ("RGBA", "RGBA", *pixel_format_of(fmt))
    if (out.channels, out.order, out.dtype, out.transfer) != expected:
        raise ValueError(
            f"the engine returned {out.channels}/{out.order} {out.dtype} {out.transfer}; "
            f"expected what was sent ({fmt}); nothing was added"
        )


def _write(layer, out, fmt):
    """The result's pixels into a new layer, before it joins the image."""
    buf = layer.get_buffer()
    buf.set(Gegl.Rectangle.new(0, 0, out.width, out.height), fmt, out.data)
    buf.flush()
    layer.update(0, 0, out.width, out.height)


def pixel_format_of(fmt):
    """(dtype, transfer) of one of pixel_format()'s babl formats."""
    dtype = {"u8": "uint8", "u16": "uint16", "float": "float32"}[fmt.split()[-1]]
    return dtype, "linear" if fmt.startswith("RGBA") else "srgb"


def _new_image_with(image, out, name, fmt, params):
    """A new image holding the enlarged result, named after the source (not "Untitled")."""
    new = Gimp.Image.new_with_precision(
        out.width, out.height, image.get_base_type(), image.get_precision()
    )
    profile = image.get_color_profile()
    if profile is not None:
        new.set_color_profile(profile)
    new.undo_disable()
    res = _new_layer(new, name, out.width, out.height)
    _write(res, out, fmt)
    new.insert_layer(res, None, 0)
    from bokehkit_plugin import edits

    photo = photo_file(image)
    folder = os.path.dirname(photo) or os.path.expanduser("~")
    # the photo's file name; an image never saved or imported has only its layer's name
    stem = os.path.splitext(os.path.basename(photo))[0] or name.split(" bokeh")[0]
    xcf = os.path.join(folder, edits.file_stem(stem, params) + ".xcf")
    new.set_file(Gio.File.new_for_path(xcf))
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
        p.add_menu_path("<Image>/Filters/Blur")  # where photographers look for blurs
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

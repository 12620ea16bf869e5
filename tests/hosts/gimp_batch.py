# Run inside gimp-console-3.0 by python-fu-eval (exec'd; Gimp, Gegl, Gio... already imported).
# Drives python-fu-bokehkit on $BK_JOB/in.png the way a user would, for
# tests/hosts/test_hosts_gimp.py.
#
#   BK_JOB    the job folder: in.png in; per case <case>/result.png, mask.raw, report.json
#   BK_CASES  comma-separated (one GIMP start for all): layermask | selection | focus-channel |
#             mask-arg | sr2 | float | nomask-error | magicbokeh | reedit | helpers |
#             depthview | range | nonraster | noengine
#   BK_ARGS   JSON: procedure arguments (aperture, focal-length, ...)
import json
import os
import struct
import sys
import time

import gi

gi.require_version("Gimp", "3.0")
from gi.repository import Gegl, Gimp, Gio  # noqa: E402


def run_case(J, CASE, ARGS):
    report = {"case": CASE}
    os.makedirs(J, exist_ok=True)

    def fail(msg):
        report["error"] = msg
        json.dump(report, open(f"{J}/report.json", "w"), indent=1)
        print("gimp_batch: FAIL:", msg, file=sys.stderr, flush=True)
        raise CaseFailed(msg)

    src = Gio.File.new_for_path(os.path.join(os.path.dirname(J), "in.png"))
    img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, src)
    layer = img.get_layers()[0]
    w, h = layer.get_width(), layer.get_height()
    rect = Gegl.Rectangle.new(0, 0, w, h)
    report["precision"] = img.get_precision().value_nick  # str() of an enum differs by PyGObject

    def ellipse_selection():
        Gimp.context_set_feather(True)
        Gimp.context_set_feather_radius(24.0, 24.0)
        img.select_ellipse(Gimp.ChannelOps.REPLACE, 120, 30, 220, 300)

    def painted_channel(name, strokes=(170.0, 80.0, 250.0, 150.0, 230.0, 280.0), size=90.0):
        """An image-sized channel, painted white on black."""
        chan = Gimp.Channel.new(img, name, w, h, 100.0, Gegl.Color.new("black"))
        img.insert_channel(chan, None, 0)
        Gimp.context_set_foreground(Gegl.Color.new("white"))
        Gimp.context_set_brush(Gimp.Brush.get_by_name("2. Hardness 050"))
        Gimp.context_set_brush_size(size)
        if not Gimp.paintbrush_default(chan, list(strokes)):
            fail("paintbrush on the channel failed")
        return chan

    def make_text_layer():
        font = Gimp.Font.get_by_name("Sans-serif") or Gimp.fonts_get_list("")[0]
        text = Gimp.TextLayer.new(img, "Bokeh", font, 120.0, Gimp.Unit.pixel())
        img.insert_layer(text, None, 0)
        return text

    def make_vector_layer():  # GIMP 3.2: a filled path drawn as a layer
        path = Gimp.Path.new(img, "disc")
        img.insert_path(path, None, 0)
        stroke = path.bezier_stroke_new_ellipse(480.0, 320.0, 200.0, 150.0, 0.0)
        assert stroke > 0
        layer = Gimp.VectorLayer.new(img, path)
        img.insert_layer(layer, None, 0)
        return layer

    def make_link_layer():  # GIMP 3.2: a layer that shows another file
        layer = Gimp.LinkLayer.new(
            img, Gio.File.new_for_path(os.path.join(os.path.dirname(J), "in.png"))
        )
        img.insert_layer(layer, None, 0)
        return layer

    def non_raster(layer):
        kinds = ("text", "vector", "link")
        return any(getattr(layer, f"is_{k}_layer", lambda: False)() for k in kinds)

    def run_proc(drawable, args, mode=Gimp.RunMode.NONINTERACTIVE):
        """Run our procedure on `drawable`; (status nick, message)."""
        proc = Gimp.get_pdb().lookup_procedure("python-fu-bokehkit")
        if proc is None:
            fail("python-fu-bokehkit is not registered (plug-in not installed or not executable)")
        cfg = proc.create_config()
        cfg.set_property("run-mode", mode)
        cfg.set_property("image", img)
        cfg.set_core_object_array("drawables", [drawable])
        for k, v in {**ARGS, **args}.items():
            cfg.set_property(k, v)
        res = proc.run(cfg)
        status = res.index(0)
        message = ""
        if res.length() > 1 and status != Gimp.PDBStatusType.SUCCESS:
            err = res.index(1)
            message = err if isinstance(err, str) else str(err)
        return (status.value_nick if hasattr(status, "value_nick") else str(status)), message

    mask, mask_fmt, extra = None, "Y u8", {}
    if CASE in ("helpers", "depthview", "range", "reedit", "noengine"):
        # Blur and Depth channels painted as a user would (helpers), the depth view (a new
        # layer), a focus range, a second run on the result (re-edit), no engine at all.
        # The channels first: paint is clipped to a selection.
        if CASE in ("helpers", "depthview", "range"):
            depth = painted_channel("Depth", [40.0, 600.0, 480.0, 560.0, 900.0, 620.0], 260.0)
            blur = painted_channel("Blur", [700.0, 60.0, 880.0, 200.0], 120.0)
            for chan, name in ((depth, "depth"), (blur, "blur")):
                data = chan.get_buffer().get(rect, 1.0, "Y' u8", Gegl.AbyssPolicy.NONE)
                open(f"{J}/{name}.raw", "wb").write(data)
        ellipse_selection()
        mask = img.get_selection()
        if CASE == "depthview":
            extra = {"output": "depth", "focus-source": "point"}
        if CASE == "range":
            extra = {"focus-source": "range", "focus-near": 0.0, "focus-far": 0.45}
    elif CASE == "nonraster":  # GIMP 3.2's vector and link layers, and text layers
        kinds = [("text", make_text_layer)]
        if hasattr(Gimp, "VectorLayer"):
            kinds += [("vector", make_vector_layer), ("link", make_link_layer)]
        results = {}
        for kind, make in kinds:
            src_layer = make()
            status, message = run_proc(src_layer, {"focus-source": "auto"})
            top = img.get_layers()[0]
            results[kind] = {
                "status": status,
                "message": message,
                "source_still": getattr(src_layer, f"is_{kind}_layer")(),
                "result_name": top.get_name(),
                "result_is_plain": not non_raster(top),
            }
        report["kinds"] = results
        json.dump(report, open(f"{J}/report.json", "w"), indent=1)
        return
    elif CASE == "layermask":  # a painted layer mask: black, then white strokes with a soft brush
        mask = layer.create_mask(Gimp.AddMaskType.BLACK)
        layer.add_mask(mask)
        Gimp.context_set_foreground(Gegl.Color.new("white"))
        Gimp.context_set_brush(Gimp.Brush.get_by_name("2. Hardness 050"))  # data: no -d
        Gimp.context_set_brush_size(70.0)
        Gimp.context_set_brush_hardness(0.5)
        strokes = [150.0, 60.0, 260.0, 110.0, 300.0, 200.0, 240.0, 300.0]
        if not Gimp.paintbrush_default(mask, strokes):
            fail("paintbrush on the layer mask failed")
    elif CASE in ("selection", "sr2", "magicbokeh"):  # a feathered elliptical selection
        ellipse_selection()
        mask = img.get_selection()
        if CASE == "sr2":
            extra["sr-factor"] = "x2"
        if CASE == "magicbokeh":  # the learned engine (a tiny model in $BOKEHKIT_MODELS)
            extra["engine"] = "magicbokeh"
    elif CASE == "float":  # a 32-bit float linear image: the layer goes as "RGBA float"
        img.convert_precision(Gimp.Precision.FLOAT_LINEAR)
        layer = img.get_layers()[0]
        ellipse_selection()
        mask, mask_fmt = img.get_selection(), "Y float"  # a float image's selection is float
    elif CASE == "focus-channel":  # a channel named "Focus" (stored as Y' u8: perceptual)
        mask, mask_fmt = painted_channel("Focus"), "Y' u8"
    elif CASE == "mask-arg":  # the argument wins over the selection that is also there
        ellipse_selection()
        mask, mask_fmt = painted_channel("Subject"), "Y' u8"
        extra["mask"] = mask
    elif CASE != "nomask-error":
        fail(f"unknown case {CASE}")

    before = None
    if mask is not None:
        # the stored code values: what the plug-in sends and the CLI reads from mask.png
        before = mask.get_buffer().get(rect, 1.0, mask_fmt, Gegl.AbyssPolicy.NONE)
        open(f"{J}/mask.raw", "wb").write(before)  # the CLI gets exactly this mask
        if "float" in mask_fmt:
            report["mask_mean"] = sum(struct.unpack(f"<{w * h}f", before)) / (w * h)
        else:
            report["mask_mean"] = sum(before) / len(before) / 255.0

    proc = Gimp.get_pdb().lookup_procedure("python-fu-bokehkit")
    if proc is None:
        fail("python-fu-bokehkit is not registered (plug-in not installed or not executable)")
    cfg = proc.create_config()
    cfg.set_property("run-mode", Gimp.RunMode.NONINTERACTIVE)
    cfg.set_property("image", img)
    cfg.set_core_object_array("drawables", [layer])
    for k, v in {**ARGS, **extra}.items():
        cfg.set_property(k, v)
    t0 = time.monotonic()
    res = proc.run(cfg)
    report["seconds"] = round(time.monotonic() - t0, 2)
    status = res.index(0)
    report["status"] = status.value_nick if hasattr(status, "value_nick") else str(status)
    if res.length() > 1 and status != Gimp.PDBStatusType.SUCCESS:
        err = res.index(1)
        report["message"] = err if isinstance(err, str) else str(err)
    if CASE == "reedit" and status == Gimp.PDBStatusType.SUCCESS:
        # the first result, as it was; then the filter on the result itself, f/2.8
        first = img.get_layers()[0]
        report["first_name"] = first.get_name()
        open(f"{J}/first.rgba", "wb").write(
            first.get_buffer().get(rect, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE)
        )
        second, report["message"] = run_proc(first, {"aperture": 2.8})
        report["status"] = second
        report["first_gone"] = not first.is_valid()  # replaced, in the same place
    report["layers"] = [lay.get_name() for lay in img.get_layers()]
    report["menu_paths"] = list(proc.get_menu_paths())  # where users find it
    if before is not None:
        after = mask.get_buffer().get(rect, 1.0, mask_fmt, Gegl.AbyssPolicy.NONE)
        report["mask_untouched"] = after == before
    report["undo_enabled"] = img.undo_is_enabled()

    if status == Gimp.PDBStatusType.SUCCESS and CASE == "sr2":  # a new image, returned
        new = res.index(1)
        if new is None:
            fail("super-resolution returned no image")
        report["new_image_size"] = [new.get_width(), new.get_height()]
        report["new_image_layers"] = [lay.get_name() for lay in new.get_layers()]
        report["new_image_file"] = os.path.basename(new.get_file().get_path())
        Gimp.file_save(
            Gimp.RunMode.NONINTERACTIVE, new, Gio.File.new_for_path(f"{J}/result.png"), None
        )
    elif status == Gimp.PDBStatusType.SUCCESS:
        top = img.get_layers()[0]
        parasite = top.get_parasite("bokehkit-settings")
        report["record"] = bytes(parasite.get_data()).decode() if parasite else None
        report["result_offsets"] = list(top.get_offsets()[1:])
        report["result_size"] = [top.get_width(), top.get_height()]
        if CASE == "float":  # the result as 8-bit sRGB code values, as babl rounds them
            data = top.get_buffer().get(rect, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE)
            open(f"{J}/result.rgba", "wb").write(data)
            report["precision_after"] = img.get_precision().value_nick
        layer.set_visible(False)  # export only the result layer
        Gimp.file_save(
            Gimp.RunMode.NONINTERACTIVE, img, Gio.File.new_for_path(f"{J}/result.png"), None
        )
    json.dump(report, open(f"{J}/report.json", "w"), indent=1)
    print("gimp_batch: done", json.dumps(report), file=sys.stderr, flush=True)


class CaseFailed(Exception):
    pass


failed = []
for case in os.environ["BK_CASES"].split(","):
    try:
        run_case(
            os.path.join(os.environ["BK_JOB"], case),
            case,
            json.loads(os.environ.get("BK_ARGS", "{}")),
        )
    except CaseFailed as exc:
        failed.append(f"{case}: {exc}")
if failed:
    raise SystemExit("; ".join(failed))

# Run inside the GUI GIMP by python-fu-eval (exec'd), for tests/hosts/gimp_mouse.py: it opens
# the photo and then only watches, while the harness drives GIMP with the mouse and keyboard.
# Markers in /job/mouse (JSON files) tell the harness what happened; it answers with its own.
#
#   BK_SESSION=1  a layer mask painted on the photo; waits for the first result, then deletes
#                 the mask and selects the result (for Re-Show), waits for the re-edit, then
#                 for the harness's Ctrl+Z, and reports what the image holds after each step
#   BK_SESSION=2  the photo only (GIMP must remember the last settings)
import json
import os
import time

from gi.repository import Gegl, Gimp, Gio

OUT = "/job/mouse"


def mark(marker, **facts):
    with open(f"{OUT}/{marker}.tmp", "w") as f:
        json.dump(facts, f)
    os.replace(f"{OUT}/{marker}.tmp", f"{OUT}/{marker}.json")


def until(test, timeout):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if test():
            return True
        time.sleep(0.5)
    return False


def pixels(layer):
    w, h = layer.get_width(), layer.get_height()
    rect = Gegl.Rectangle.new(0, 0, w, h)
    return layer.get_buffer().get(rect, 1.0, "R'G'B'A u8", Gegl.AbyssPolicy.NONE)


img = Gimp.file_load(Gimp.RunMode.NONINTERACTIVE, Gio.File.new_for_path("/job/in.png"))
Gimp.Display.new(img)
photo = img.get_layers()[0]
if os.environ.get("BK_SESSION") == "1":  # focus painted as a layer mask: the photo hides
    mask = photo.create_mask(Gimp.AddMaskType.BLACK)
    photo.add_mask(mask)
    Gimp.context_set_foreground(Gegl.Color.new("white"))
    Gimp.context_set_brush(Gimp.Brush.get_by_name("2. Hardness 050"))
    Gimp.context_set_brush_size(120.0)
    Gimp.paintbrush_default(mask, [160.0, 80.0, 260.0, 160.0, 240.0, 290.0])
img.set_selected_layers([photo])
Gimp.displays_flush()
mark("loaded", layers=[lay.get_name() for lay in img.get_layers()])

if os.environ.get("BK_SESSION") == "1":
    until(lambda: len(img.get_layers()) == 2, 300)
    first = img.get_layers()[0]
    first_pixels = pixels(first)
    photo.remove_mask(Gimp.MaskApplyMode.DISCARD)  # the user deletes the mask
    img.set_selected_layers([first])  # and selects the result to change it
    Gimp.displays_flush()
    mark("first", name=first.get_name(), layers=[lay.get_name() for lay in img.get_layers()])

    until(lambda: not first.is_valid(), 300)  # the re-edit replaces the result
    second = img.get_layers()[0]
    mark(
        "second",
        name=second.get_name(),
        layers=[lay.get_name() for lay in img.get_layers()],
        differs=pixels(second) != first_pixels,
    )
    until(lambda: os.path.exists(f"{OUT}/undone.json"), 300)
    back = until(lambda: pixels(img.get_layers()[0]) == first_pixels, 30)
    mark(
        "after_undo",
        layers=[lay.get_name() for lay in img.get_layers()],
        first_pixels_back=back,
    )
gimp = os.getppid()
until(lambda: os.getppid() != gimp, 600)  # GIMP stays up until the harness ends it

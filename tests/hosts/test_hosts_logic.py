"""The plug-ins' host-independent logic, without GIMP or Krita (runs everywhere): the Krita
plug-in's core.py against fake documents, the GIMP plug-in's small shared functions with
a stand-in for `gi`. The real applications are exercised in test_hosts_gimp/krita.py."""

from __future__ import annotations

import sys
import types
from pathlib import Path
from unittest import mock

import pytest
from krita_fakes import Doc, H, Node, Selection, W, load_module

from bokehkit_plugin import rawbuffer, schema

REPO = Path(__file__).resolve().parents[2]


core = load_module("bokehkit_krita_core_under_test", REPO / "krita" / "bokehkit_krita" / "core.py")


MASK = bytes([0, 0, 255, 128, 0, 0, 64, 0])
PHOTO = bytes(range(W * H * 4))


def test_pixel_layout_per_depth():
    assert core.pixel_layout(Node("a")) == ("uint8", "BGRA", "srgb")
    assert core.pixel_layout(Node("a", depth="U16")) == ("uint16", "BGRA", "srgb")
    assert core.pixel_layout(Node("a", depth="F32", profile="sRGB-elle-V2-g10.icc")) == (
        "float32", "RGBA", "linear")  # fmt: skip
    with pytest.raises(ValueError, match="RGB/Alpha"):
        core.pixel_layout(Node("a", model="GRAYA"))


def test_mask_priority_selection_then_mask_node_then_focus_layer():
    tmask = Node("Sharp", "transparencymask", data=bytes([9] * (W * H)))
    focus = Node("Focus", data=b"".join(bytes([255, 255, 255, m]) for m in MASK))
    src = Node("Background", data=PHOTO, children=[tmask])
    doc = Doc([src, focus], Selection(MASK))
    name, m = core.find_mask(doc, src)
    assert (name, m.data, m.channels, m.dtype) == ("selection", MASK, "Y", "uint8")
    doc._sel = None
    name, m = core.find_mask(doc, src)
    assert name.startswith("transparencymask") and m.data == bytes([9] * (W * H))
    src._children = []
    name, m = core.find_mask(doc, src)
    assert name == "layer “Focus”" and m.data == MASK  # white paint: its alpha
    focus._data = b"".join(bytes([m, m, m, 255]) for m in MASK)  # grey paint, opaque
    assert core.find_mask(doc, src)[1].data == MASK
    focus._name = "Other"
    assert core.find_mask(doc, src) == (None, None)


def test_empty_selection_is_no_mask():
    src = Node("Background", data=PHOTO)
    assert core.find_mask(Doc([src], Selection(bytes(W * H))), src) == (None, None)


def test_prepare_reads_pixels_and_requires_a_mask_only_for_mask_focus():
    src = Node("Background", data=PHOTO)
    doc = Doc([src])
    with pytest.raises(ValueError, match="Painted mask"):
        core.prepare(doc, src, {"focus_source": "mask"})
    job = core.prepare(doc, src, {"focus_source": "auto", "aperture": 2.8})
    assert job.mask is None and job.params["aperture"] == 2.8
    assert (job.image.data, job.image.order, job.image.dtype) == (PHOTO, "BGRA", "uint8")
    group = Node("g", "grouplayer")
    with pytest.raises(ValueError, match="paint layer"):  # nothing to render at all
        core.prepare(Doc([group]), group, {"focus_source": "auto"})
    with pytest.raises(schema.ParamError):
        core.prepare(doc, src, {"aperture": 0.1})


def test_apply_adds_a_layer_above_and_leaves_the_source():
    src, top = Node("Background", data=PHOTO), Node("Top")
    doc = Doc([src, top])
    job = core.prepare(doc, src, {"focus_source": "auto"})
    out = rawbuffer.RawImage(W, H, bytes(reversed(PHOTO)), "RGBA", "BGRA", "uint8", "srgb")
    result = types.SimpleNamespace(image=out, report=[])
    got_doc, layer = core.apply(job, result)
    assert got_doc is doc and doc.active is layer
    names = [n.name() for n in doc.root.childNodes()]
    assert names == ["Background", "Background bokeh f/2", "Top"]
    assert layer.pixelData(0, 0, W, H) == out.data and src.pixelData(0, 0, W, H) == PHOTO
    bad = types.SimpleNamespace(
        image=rawbuffer.RawImage(W, H, bytes(W * H * 16), "RGBA", "RGBA", "float32", "linear")
    )
    with pytest.raises(ValueError, match="not what was sent"):
        core.apply(job, bad)


def test_engines_are_shut_down():
    engine = mock.Mock()
    core._engines.append(engine)
    core.shutdown_engines()
    engine.close.assert_called_once()
    assert core._engines == []


# ------------------------------------------------------------------ the GIMP plug-in


@pytest.fixture(scope="module")
def gimp_plugin():
    """bokehkit-gimp.py with `gi` replaced (only its pure functions are called)."""
    fake_gi = types.ModuleType("gi")
    fake_gi.require_version = lambda *a: None
    repo = types.ModuleType("gi.repository")
    for name in ("Babl", "Gegl", "Gimp", "Gio", "GLib", "GObject"):
        setattr(repo, name, mock.MagicMock(name=name))
    with mock.patch.dict(sys.modules, {"gi": fake_gi, "gi.repository": repo}):
        yield load_module(
            "bokehkit_gimp_under_test", REPO / "gimp" / "bokehkit-gimp" / "bokehkit-gimp.py"
        )


def test_gimp_arguments_map_to_schema_params(gimp_plugin):
    g = gimp_plugin
    values = {g.arg_name(p.name): p.default for p in schema.SCHEMA}
    for p in schema.SCHEMA:
        if p.choices:
            values[g.arg_name(p.name)] = g.choice_nick(p.default)
    values.update({"sr-factor": "x2", "aperture": 1.4, "focus-source": "point"})
    params = g.params_from_values(schema, values)
    assert params["sr_factor"] == 2 and params["aperture"] == 1.4
    assert params["focus_source"] == "point" and set(params) == set(schema.BY_NAME)
    values.update({"upscaler": "realesrgan", "sr-detail": 0.6})
    params = g.params_from_values(schema, values)
    assert params["upscaler"] == "realesrgan" and params["sr_detail"] == 0.6
    values["aperture"] = 100.0
    with pytest.raises(schema.ParamError):
        g.params_from_values(schema, values)


def test_gimp_registers_upscaler_and_detail_arguments(gimp_plugin):
    proc = mock.Mock()
    gimp_plugin._add_schema_arguments(proc, schema)
    doubles = {c.args[0]: c.args for c in proc.add_double_argument.call_args_list}
    assert doubles["sr-detail"][1] == "_AI detail" and doubles["sr-detail"][3:] == (
        0.0, 1.0, 0.25, mock.ANY)  # fmt: skip
    choices = {c.args[0]: c.args for c in proc.add_choice_argument.call_args_list}
    assert choices["upscaler"][4] == "classical"
    # arguments are added in schema order; the new ones come last (positional callers)
    names = [c.args[0] for c in proc.method_calls]
    assert names[-5:] == ["upscaler", "sr-detail", "focus-near", "focus-far", "output"]


def test_gimp_pixel_formats(gimp_plugin):
    pf = gimp_plugin.pixel_format
    assert pf("u8-non-linear") == ("R~G~B~A u8", "uint8", "srgb")
    assert pf("u8-perceptual") == ("R~G~B~A u8", "uint8", "srgb")
    assert pf("u16-linear") == ("RGBA u16", "uint16", "linear")
    assert pf("half-non-linear") == ("RGBA float", "float32", "linear")
    assert pf("float-linear") == ("RGBA float", "float32", "linear")
    assert pf("u32-linear") == ("RGBA float", "float32", "linear")
    for fmt, dtype, transfer in (pf("u8-non-linear"), pf("u16-linear"), pf("float-linear")):
        assert gimp_plugin.pixel_format_of(fmt) == (dtype, transfer)


def test_gimp_first_mask_in_priority_order(gimp_plugin):
    first = gimp_plugin.first_mask
    assert first([("argument", None), ("layer mask", "M"), ("selection", "S")]) == (
        "layer mask", "M")  # fmt: skip
    assert first([("argument", None), ("selection", None)]) == (None, None)


def test_gimp_focus_point_between_image_and_layer_fractions(gimp_plugin):
    """The engine's dialog shows the layer; GIMP's arguments speak of the image. A layer
    offset by (100, 50) and half the image's size: the point maps there and back."""

    class Image:
        def get_width(self):
            return 400

        def get_height(self):
            return 300

    class Layer:
        def get_offsets(self):
            return True, 100, 50

        def get_width(self):
            return 200

        def get_height(self):
            return 150

    image, layer = Image(), Layer()
    params = {"focus_x": 0.5, "focus_y": 0.5, "focus_source": "point"}
    x, y = gimp_plugin._to_layer(params, image, layer)
    assert (x, y) == (0.5, 2 / 3)
    back = gimp_plugin._to_image({"focus_x": x, "focus_y": y}, image, layer)
    assert back == pytest.approx((0.5, 0.5))


# ------------------------------------------------- the GIMP plug-in's run(), with stand-ins


class _GimpRun:
    """run() against stand-ins: a 4×2 RGB layer, no mask, arguments at their defaults
    (focus on auto), an engine given by `engine` (a stand-in EngineClient)."""

    def __init__(self, g, engine=None, **args):
        self.g = g
        self.errors = []
        self.layer = mock.MagicMock(name="layer")
        self.layer.is_layer_mask.return_value = False
        self.layer.is_layer.return_value = True
        self.layer.get_width.return_value, self.layer.get_height.return_value = W, H
        self.layer.get_offsets.return_value = (True, 0, 0)
        self.layer.get_name.return_value = "Background"
        self.layer.get_mask.return_value = None
        self.layer.get_parasite.return_value = None  # not one of our results
        for kind in ("text", "vector", "link"):
            getattr(self.layer, f"is_{kind}_layer").return_value = False
        self.layer.get_buffer.return_value.get.return_value = PHOTO
        self.image = mock.MagicMock(name="image")
        self.image.get_width.return_value, self.image.get_height.return_value = W, H
        self.image.get_precision.return_value.value_nick = "u8-non-linear"
        self.image.get_channels.return_value = []
        self.image.get_layers.return_value = [self.layer]
        values = {g.arg_name(p.name): p.default for p in schema.SCHEMA}
        for p in schema.SCHEMA:
            if p.choices:
                values[g.arg_name(p.name)] = g.choice_nick(p.default)
        values.update({"focus-source": "auto", "mask": None, **args})
        self.config = mock.MagicMock(name="config")
        self.config.get_property.side_effect = values.__getitem__
        self.engine = engine

    def __call__(self, monkeypatch):
        g = self.g
        monkeypatch.setattr(g, "_error", lambda proc, msg, *a: self.errors.append(msg) or "error")
        g.Gimp.Selection.is_empty = lambda image: True
        if self.engine is not None:
            from bokehkit_plugin import client

            monkeypatch.setattr(client, "EngineClient", lambda *a, **k: self.engine)
        return g.run(mock.MagicMock(name="procedure"), g.Gimp.RunMode.NONINTERACTIVE,
                     self.image, [self.layer], self.config, None)  # fmt: skip


def test_gimp_without_an_engine_says_run_install_plugins(gimp_plugin, monkeypatch, tmp_path):
    """A GIMP with no engine configured: one line naming `bokehkit install-plugins`, not a
    traceback (EngineNotConfigured was not caught in run)."""
    monkeypatch.delenv("BOKEHKIT_ENGINE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    case = _GimpRun(gimp_plugin)
    assert case(monkeypatch) == "error"
    assert len(case.errors) == 1 and "bokehkit install-plugins" in case.errors[0], case.errors
    case.image.insert_layer.assert_not_called()


def test_gimp_checks_the_result_before_adding_a_layer(gimp_plugin, monkeypatch):
    """An engine result of the wrong size: an error and no layer (the layer was inserted
    before its pixels were written, so a failed write left an empty layer)."""
    engine = mock.MagicMock(name="engine")
    wrong = rawbuffer.RawImage(W + 1, H, bytes((W + 1) * H * 4), "RGBA", "RGBA", "uint8", "srgb")
    engine.render.return_value = types.SimpleNamespace(image=wrong, report=[])
    case = _GimpRun(gimp_plugin, engine)
    assert case(monkeypatch) == "error"
    assert case.errors and "expected" in case.errors[0], case.errors
    case.image.insert_layer.assert_not_called()


def test_gimp_auto_focus_is_not_labelled_image_centre_when_it_may_be_the_subject(gimp_plugin):
    """GIMP registers its arguments once, before any ping: "Auto" must not promise the image
    centre when the engine will focus on the subject ISNet finds. The engine's dialog knows
    (the ping's "subject") and says which (test_dialog.py)."""
    gimp_plugin.Gimp.Choice.new.reset_mock()
    gimp_plugin._add_schema_arguments(mock.Mock(), schema)
    labels = [c.args[2] for c in gimp_plugin.Gimp.Choice.new.return_value.add.call_args_list]
    assert "Auto (image centre)" not in labels
    assert schema.AUTO_LABELS[None] in labels


def test_result_records_and_names():
    from bokehkit_plugin import edits

    params = schema.validate({"aperture": 1.4, "focal_length": 85.0, "sr_factor": 2})
    assert edits.result_name("Background", params) == "Background bokeh f/1.4 85 mm ×2"
    assert edits.result_name("IMG", schema.validate({"aperture": 2.8})) == "IMG bokeh f/2.8"
    ranged = schema.validate({"focus_source": "range", "focus_near": 0.1, "focus_far": 0.35})
    assert edits.result_name("a", ranged) == "a bokeh f/2 sharp 10%–35%"
    assert edits.result_name("a", schema.validate({"output": "depth"})) == "a depth view"
    record = edits.make_record(params, {"tattoo": 7, "name": "Background"})
    assert edits.read_record(record) == (params, {"tattoo": 7, "name": "Background"})
    assert edits.read_record(record.encode()) == edits.read_record(record)
    for damaged in ("", "{", '{"version": 99}', b"\xff", '{"version": 1, "params": 3}'):
        assert edits.read_record(damaged) is None
    assert edits.is_helper(" Focus ") and edits.is_helper("BLUR") and edits.is_helper("depth")
    assert not edits.is_helper("Background")


# ------------------------------------------------------------------ Krita: which layer


def test_krita_renders_the_photo_not_the_focus_layer_the_user_just_painted():
    """Blocker: with the Focus layer active, Apply rendered a blurred copy of the white
    strokes. The layer meant is the paint layer under the helpers; the note says so."""
    photo, focus, blur = Node("Background", data=PHOTO), Node("Focus"), Node("Blur")
    doc = Doc([photo, focus, blur])
    for active in (focus, blur):
        node, note = core.choose_source(doc, active)
        assert node is photo and f"“{active.name()}” is a helper" in note, note
    assert core.choose_source(doc, photo) == (photo, "")
    tmask = Node("Sharp", "transparencymask")
    photo._children, tmask._parent = [tmask], photo
    node, note = core.choose_source(doc, tmask)
    assert node is photo and "transparencymask" in note
    job = core.prepare(doc, focus, {"focus_source": "auto"})
    assert job.node is photo and job.image.data == PHOTO and "Background" in job.note
    lonely = Doc([Node("Focus")])
    with pytest.raises(ValueError, match="paint layer"):
        core.prepare(lonely, lonely.root.childNodes()[0], {"focus_source": "auto"})


def test_krita_result_remembers_its_settings_and_reedits_from_the_source():
    photo = Node("Background", data=PHOTO)
    doc = Doc([photo])
    job = core.prepare(doc, photo, {"focus_source": "auto", "aperture": 1.4})
    out = rawbuffer.RawImage(W, H, bytes(reversed(PHOTO)), "RGBA", "BGRA", "uint8", "srgb")
    _, first = core.apply(job, types.SimpleNamespace(image=out, report=[]))
    assert first.name() == "Background bokeh f/1.4"
    params, source = core.record_of(doc, first)
    assert source is photo and params["aperture"] == 1.4
    # running on the result: its source again, the new result right above the old one
    again = core.prepare(doc, first, {**params, "aperture": 2.8})
    assert again.node is photo and again.result is first and "re-editing" in again.note
    _, second = core.apply(again, types.SimpleNamespace(image=out, report=[]))
    names = [n.name() for n in doc.root.childNodes()]
    assert names == ["Background", "Background bokeh f/1.4", "Background bokeh f/2.8"], names
    assert core.record_of(doc, second)[0]["aperture"] == 2.8
    assert photo.pixelData(0, 0, W, H) == PHOTO  # the source is never touched
    doc.root._children.remove(photo)  # the source deleted: say so, render nothing
    with pytest.raises(ValueError, match="source layer .* is gone"):
        core.prepare(doc, second, params)


def test_krita_blur_and_depth_layers_are_sent_when_painted():
    photo = Node("Background", data=PHOTO)
    blur = Node("Blur", data=b"".join(bytes([255, 255, 255, m]) for m in MASK))
    depth = Node("Depth", data=bytes(W * H * 4))  # nothing painted yet
    doc = Doc([photo, blur, depth])
    job = core.prepare(doc, photo, {"focus_source": "auto"})
    assert job.blur.data == MASK and job.depth is None


def test_krita_checks_the_result_before_touching_the_document():
    photo = Node("Background", data=PHOTO)
    doc = Doc([photo])
    job = core.prepare(doc, photo, {"focus_source": "auto"})
    wrong = rawbuffer.RawImage(W, H + 1, bytes(W * (H + 1) * 4), "RGBA", "BGRA", "uint8", "srgb")
    with pytest.raises(ValueError, match="expected 4×2"):
        core.apply(job, types.SimpleNamespace(image=wrong, report=[]))
    assert [n.name() for n in doc.root.childNodes()] == ["Background"]


def test_last_settings_persist_in_the_config_folder(tmp_path, monkeypatch):
    from bokehkit_plugin import settings

    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    assert settings.load("krita") == {}  # nothing saved yet
    params = schema.validate({"aperture": 1.4, "focal_length": 85.0, "output": "depth"})
    settings.save("krita", params)
    assert settings.path("krita") == str(tmp_path / "bokehkit" / "last-settings-krita.json")
    loaded = settings.load("krita")
    assert loaded["aperture"] == 1.4 and loaded["output"] == "bokeh"  # the depth view: once
    Path(settings.path("krita")).write_text('{"aperture": 1.4, "from_the_future": 1}')
    assert settings.load("krita")["aperture"] == 1.4  # unknown keys are dropped
    Path(settings.path("krita")).write_text('{"aperture": 100}')
    assert settings.load("krita") == {}  # out of range: the defaults, no error
    Path(settings.path("krita")).write_text("{half a fi")
    assert settings.load("krita") == {}


def test_gimp_paint_depth_fix_adds_a_channel_to_paint_and_renders_nothing(gimp_plugin, monkeypatch):
    """The dialog's "Paint Depth layer": it closes, GIMP adds a Depth channel (selected,
    visible) and says how to paint it; nothing is rendered, no layer added."""
    from bokehkit_plugin.client import DialogChoice

    engine = mock.MagicMock(name="engine")
    engine.dialog.return_value = DialogChoice(schema.validate({}), action="paint_depth")
    case = _GimpRun(gimp_plugin, engine)
    g = gimp_plugin
    monkeypatch.setattr(g, "host_colours", lambda: {})
    monkeypatch.setattr(g.Gimp.RunMode, "INTERACTIVE", "interactive")
    messages = []
    monkeypatch.setattr(g.Gimp, "message", messages.append)
    added = []
    monkeypatch.setattr(g, "add_helper_channel", lambda image, name: added.append(name))
    monkeypatch.setattr(g, "_error", lambda proc, msg, *a: case.errors.append(msg) or "error")
    g.Gimp.Selection.is_empty = lambda image: True
    from bokehkit_plugin import client

    monkeypatch.setattr(client, "EngineClient", lambda *a, **k: engine)
    result = g.run(mock.MagicMock(name="procedure"), "interactive", case.image, [case.layer],
                   case.config, None)  # fmt: skip
    assert result != "error" and not case.errors, case.errors
    assert added == ["Depth"] and "white where things are near" in messages[0]
    engine.render.assert_not_called()
    case.image.insert_layer.assert_not_called()


def test_engine_dialog_uses_the_photos_own_file_for_the_phone_depth(tmp_path, monkeypatch):
    """The dialog's "Phone's depth…" in the engine: the photo GIMP opened, when it can hold a
    phone's depth, is used at once (no file chooser); the render then gets it too."""
    from bokehkit.serve.dialog_fixes import DialogFixes, phone_photo

    photo = tmp_path / "IMG_0001.jpg"
    photo.write_bytes(b"jpeg")
    assert phone_photo({"photo_file": str(photo)}) == str(photo)
    assert phone_photo({"photo_file": str(tmp_path / "shot.png")}) is None  # no phone depth
    assert phone_photo({}) is None
    inputs = types.SimpleNamespace(depth_photo=None)
    monkeypatch.setenv("QT_QPA_PLATFORM", "offscreen")  # no display needed
    pytest.importorskip("PyQt6.QtWidgets")
    from bokehkit_plugin.ui.dialog import ensure_app

    ensure_app()
    fixes = DialogFixes(inputs, {"photo_file": str(photo)}, lambda: {}, None)
    dialog = mock.MagicMock(name="dialog")
    fixes("phone_depth", dialog)
    assert inputs.depth_photo == str(photo) and dialog.depth_photo == str(photo)
    dialog.panel.set_params.assert_called_once()  # a fresh preview with that depth
    fixes("paint_blur", dialog)
    dialog.finish_with.assert_called_once_with("paint_blur")  # GIMP's work, after the dialog

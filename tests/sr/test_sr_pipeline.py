"""The "realesrgan" upscaler in the pipeline and the CLI."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bokehkit.errors import BokehkitError
from bokehkit.io.image import load_image
from bokehkit.pipeline import RenderSettings, render_image
from bokehkit.sr import realesrgan
from bokehkit.sr.upscale import UPSCALERS, get_upscaler

REPO = Path(__file__).resolve().parents[2]


def nearest_net(store=None, backend="auto"):
    return lambda x: np.repeat(np.repeat(x, 4, 2), 4, 3)


@pytest.fixture
def tiny_photo(tmp_path):
    import skimage.data

    path = tmp_path / "tiny.png"
    Image.fromarray(skimage.data.chelsea()[100:124, 180:212]).save(path)
    return path


def test_registered_without_importing_torch():
    assert "realesrgan" in UPSCALERS and get_upscaler("realesrgan")
    code = (
        "import sys, bokehkit.pipeline, bokehkit.sr.upscale, bokehkit.sr, "
        "bokehkit.commands; "
        "print('torch' in sys.modules, 'onnxruntime' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        env={"PYTHONPATH": str(REPO / "core"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.split() == ["False", "False"]


def test_detail_is_an_option_of_the_registry(monkeypatch):
    monkeypatch.setattr(realesrgan, "network", nearest_net)
    linear = np.random.default_rng(0).random((12, 16, 3), dtype=np.float32)
    for detail in (0.0, 0.3, 1.0):
        upscale = get_upscaler("realesrgan", detail=detail)
        want = realesrgan.upscale_realesrgan(linear, 4, detail=detail)
        assert np.array_equal(upscale(linear, 4, None, None), want)
    assert not np.array_equal(
        get_upscaler("realesrgan", detail=0.0)(linear, 2, None, None),
        get_upscaler("realesrgan", detail=1.0)(linear, 2, None, None),
    )


def test_wrong_options_are_refused_before_any_work():
    with pytest.raises(BokehkitError, match=r"detail must be a number from 0 .* to 1 .*, not 1.5"):
        get_upscaler("realesrgan", detail=1.5)
    with pytest.raises(BokehkitError, match=r"detail must be .*, not -0.5"):
        get_upscaler("realesrgan", detail=-0.5)
    with pytest.raises(BokehkitError, match="the realesrgan upscaler has no option 'strength'"):
        get_upscaler("realesrgan", strength=0.5)
    with pytest.raises(BokehkitError, match="the classical upscaler has no option 'detail'"):
        get_upscaler("classical", detail=0.5)


@pytest.mark.parametrize("factor", [2, 4])
def test_through_the_pipeline(tiny_photo, monkeypatch, factor):
    monkeypatch.setattr(realesrgan, "network", nearest_net)
    image = load_image(tiny_photo)
    settings = RenderSettings(sr_factor=factor, upscaler="realesrgan", auto_subject=False)
    out, report = render_image(image, settings)
    assert out.shape == (24 * factor, 32 * factor, 3)
    assert report.output_size == (32 * factor, 24 * factor)
    assert np.isfinite(out).all()
    # Same picture: the mean colour is kept.
    assert np.allclose(out.mean((0, 1)), image.linear_rgb.mean((0, 1)), rtol=0.05, atol=0.01)


def bokehkit(*args, env_extra=None):
    import os

    env = {"PYTHONPATH": str(REPO / "core"), "PATH": "/usr/bin:/bin", "HOME": os.environ["HOME"]}
    env.update(env_extra or {})
    return subprocess.run(
        [sys.executable, "-m", "bokehkit", *map(str, args)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )


def test_cli_without_the_model_says_how_to_install(tiny_photo, tmp_path):
    out = tmp_path / "out.png"
    r = bokehkit(
        "render",
        tiny_photo,
        "--sr",
        "2",
        "--upscaler",
        "realesrgan",
        "-o",
        out,
        env_extra={"BOKEHKIT_MODELS": str(tmp_path / "empty-store")},
    )
    assert r.returncode == 2
    assert "run: bokehkit models install realesrgan-x4plus" in r.stderr
    assert not out.exists()


@pytest.mark.slow
def test_cli_with_the_real_model(tiny_photo, tmp_path):
    """`bokehkit render --sr 4 --upscaler realesrgan` with the model installed: ×4, and the
    same picture (its ×4 reduced back is close to the input)."""
    from models_helpers import models_test_store

    from bokehkit.store import ModelStore

    store = models_test_store()
    ModelStore(store).install(realesrgan.MODEL_ID, log=lambda m: None)
    out = tmp_path / "out.png"
    r = bokehkit(
        "render",
        tiny_photo,
        "--sr",
        "4",
        "--upscaler",
        "realesrgan",
        "-q",
        "-o",
        out,
        env_extra={"BOKEHKIT_MODELS": str(store)},
    )
    assert r.returncode == 0, r.stderr
    big = np.asarray(Image.open(out).convert("RGB"), np.float64)
    assert big.shape == (96, 128, 3)
    src = np.asarray(Image.open(tiny_photo), np.float64)
    small = big.reshape(24, 4, 32, 4, 3).mean((1, 3))
    psnr = 10 * np.log10(255**2 / np.mean((small - src) ** 2))
    print(f"×4 reduced back vs input: {psnr:.1f} dB")
    assert psnr > 28

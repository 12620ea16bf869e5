"""Parity of ``bokehkit render --engine magicbokeh --reference`` with the OFFICIAL code.

The official MagicBokeh source tree (github.com/vivoCameraResearch/MagicBokeh: its
``inference.py``, ``magicbokeh.py``, ``bokeh_utils.py``, ``models/``, ``utils/``) must be
on disk at the path in the environment variable ``BOKEHKIT_OFFICIAL_MAGICBOKEH``;
otherwise the test skips. Nothing of it is vendored here.

What the test does:

1. Builds (once; reused when present) a separate virtual environment with the official
   code's pins that install on Python 3.11 from PyPI: diffusers 0.25.0, peft 0.9.0,
   transformers 4.46.0, huggingface_hub 0.23.2 (diffusers 0.25 needs < 0.26), numpy < 2,
   and torch 2.13.0 (the CPU wheel on this disk; the official pin list names no torch) with
   the torchvision that matches it. Location: ``$BOKEHKIT_OFFICIAL_ENV``, default
   ``~/.cache/bokehkit/official-env``. Skips if it cannot be built (no PyPI).
   PyPI's torchvision wheel is linked against CUDA torch, so its C extension cannot load
   with the CPU torch; the official code uses only ``torchvision.transforms`` (pure
   Python), so the builder moves the extension aside and guards the two unconditional
   ``register_fake`` calls in ``torchvision/_meta_registrations.py`` that would otherwise
   fail at import.
2. Writes the tiny SD 2.1-like folder (``magicbokeh_fixtures.make_sd21``, UNet
   ``sample_size`` 64 as SD 2.1's, which the official code sizes its attention masks
   from), and in the official env (``magicbokeh_official_driver.py``) adds a tiny CLIP
   tokenizer + text encoder (the official ``model_test`` loads them) and makes ``lora.pkl``
   with the official classes (a pickled ``models.controlnet.ControlNetModel``).
3. Runs the official ``inference.py`` unchanged except for these textual patches to a copy
   (each asserted to apply): ``"cuda"`` → ``"cpu"`` and ``.cuda()`` → ``.cpu()`` in
   ``magicbokeh.py``, ``.to('cuda')`` → ``.to('cpu')`` in ``inference.py``;
   ``torch.load(args.model_path)`` gets ``weights_only=False`` (torch ≥ 2.6 default); the
   VAE ``latent_dist.sample()`` → ``latent_dist.mode()`` (the posterior mean: our reference
   mode's documented deterministic variant). ``--mixed_precision fp32``, ``--K 32``.
   Input 640×544: one full tile, plus the official bottom-edge, right-edge and corner tiles.
4. Imports that ``lora.pkl`` with ``bokehkit models import magicbokeh`` and runs
   ``bokehkit render IN --engine magicbokeh --model NAME --depth D.npy --focus-mask M.png
   --strength 32 --reference --device cpu --save-float OUT.npy -o OUT.png``, and asserts
   PSNR ≥ 45 dB (our bar) between the official PNG and our float output (both carry
   the official 8-bit truncations). Measured here: 86.2 dB (94 of 1 044 480 codes off by
   1–2). The tiny random model is weakly sensitive to the conditioning (rendering ours at
   K=16 still gives ≈62 dB against the official K=32), so the test also requires ≥ 75 dB
   and checks that K=31 falls below that.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import numpy as np
import pytest

pytestmark = pytest.mark.slow

OFFICIAL_FILES = ["inference.py", "magicbokeh.py", "bokeh_utils.py", "models/controlnet.py",
                  "models/unet_2d_condition.py", "utils/wavelet_color_fix.py"]  # fmt: skip
PINS = ["torch==2.13.0", "torchvision", "diffusers==0.25.0", "peft==0.9.0",
        "transformers==4.46.0", "huggingface_hub==0.23.2", "accelerate", "safetensors",
        "numpy<2", "Pillow", "pyyaml"]  # fmt: skip
READY = ".bokehkit-official-ready"
HERE = Path(__file__).resolve().parent


def _official_tree() -> Path:
    root = os.environ.get("BOKEHKIT_OFFICIAL_MAGICBOKEH")
    if not root:
        pytest.skip("set BOKEHKIT_OFFICIAL_MAGICBOKEH to a checkout of the official MagicBokeh")
    missing = [f for f in OFFICIAL_FILES if not (Path(root) / f).is_file()]
    if missing:
        pytest.skip(f"BOKEHKIT_OFFICIAL_MAGICBOKEH={root} lacks {', '.join(missing)}")
    return Path(root)


def _clean_env() -> dict:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONWARNINGS"] = "ignore"
    return env


def _run(cmd, timeout, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, env=_clean_env(), **kw)  # fmt: skip


def _fix_torchvision(python: Path) -> None:
    """Make PyPI's CUDA-linked torchvision importable on CPU torch (transforms only)."""
    if _run([python, "-c", "import torchvision.transforms"], 300).returncode == 0:
        return
    site = _run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], 60)
    tv = Path(site.stdout.strip()) / "torchvision"
    for so in ("_C.so", "image.so"):
        if (tv / so).exists():
            (tv / so).rename(tv / f"{so}.cuda-linked")
    meta = tv / "_meta_registrations.py"
    text = meta.read_text()
    for op in ("nms", "qnms"):
        old = f'@torch.library.register_fake("torchvision::{op}")\n'
        new = (f'@(torch.library.register_fake("torchvision::{op}") '
               "if torchvision.extension._has_ops() else (lambda f: f))\n")  # fmt: skip
        text = text.replace(old, new)
    meta.write_text(text)


def _official_env() -> Path:
    root = Path(os.environ.get("BOKEHKIT_OFFICIAL_ENV",
                               Path.home() / ".cache" / "bokehkit" / "official-env"))  # fmt: skip
    python = root / "bin" / "python"
    if (root / READY).exists() and python.exists():
        return python
    if root.exists():
        shutil.rmtree(root)
    venv.create(root, with_pip=True)
    try:
        r = _run([python, "-m", "pip", "install", "-q", *PINS], 3600)
    except subprocess.TimeoutExpired:
        pytest.skip("building the official env timed out")
    if r.returncode != 0:
        pytest.skip(f"cannot build the official env (PyPI?): {r.stderr.strip()[-400:]}")
    _fix_torchvision(python)
    check = _run([python, "-c", "import torchvision.transforms, diffusers, peft, transformers; "
                  "print(diffusers.__version__, peft.__version__)"], 300)  # fmt: skip
    if check.returncode != 0 or not check.stdout.startswith("0.25.0 0.9.0"):
        pytest.skip(f"the official env does not import: {check.stderr.strip()[-400:]}")
    (root / READY).write_text(check.stdout)
    return python


def _patched_copy(src: Path, dst: Path) -> Path:
    skip = shutil.ignore_patterns(".git", "*.png", "*.jpg", "*.npy", "*.pth", "*.pkl", "assets")
    shutil.copytree(src, dst, ignore=skip)

    def patch(name: str, pairs) -> None:
        text = (dst / name).read_text()
        for old, new in pairs:
            assert old in text, f"official {name} changed: {old!r} not found"
            text = text.replace(old, new)
        (dst / name).write_text(text)

    patch("magicbokeh.py", [
        ('"cuda"', '"cpu"'),
        (".cuda()", ".cpu()"),
        ("torch.load(args.model_path)", "torch.load(args.model_path, weights_only=False)"),
        (".latent_dist.sample()", ".latent_dist.mode()"),
    ])  # fmt: skip
    patch("inference.py", [(".to('cuda')", ".to('cpu')")])
    return dst


def _scene(h: int = 544, w: int = 640):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack(
        [0.2 + 0.6 * xx / w, 0.3 + 0.4 * yy / h,
         0.5 + 0.25 * np.sin(xx / 9.0) * np.cos(yy / 13.0)], axis=-1,
    ) + rng.normal(0, 0.04, (h, w, 3))  # fmt: skip
    u8 = (np.clip(image, 0, 1) * 255).round().astype(np.uint8)
    depth = np.clip(0.1 + 0.8 * xx / (w - 1) + 0.05 * np.sin(yy / 20.0), 0, 1).astype(np.float32)
    mask = np.zeros((h, w), np.uint8)
    mask[150:400, 60:220] = 255
    return u8, depth, mask


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def test_reference_mode_matches_official_code(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from magicbokeh_fixtures import make_sd21
    from PIL import Image

    from bokehkit.commands import main

    official = _official_tree()
    python = _official_env()
    code = _patched_copy(official, tmp_path / "official")

    sd21 = make_sd21(tmp_path / "sd21", sample_size=64)
    r = _run([python, HERE / "magicbokeh_official_driver.py", "make", sd21, tmp_path / "lora.pkl"],
             1200, cwd=code)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]

    data = tmp_path / "data"
    for sub in ("inputs", "depth", "mask", "out"):
        (data / sub).mkdir(parents=True)
    u8, depth, mask = _scene()
    Image.fromarray(u8).save(data / "inputs" / "scene.png")
    np.save(data / "depth" / "scene.npy", depth)
    Image.fromarray(mask).save(data / "mask" / "scene.png")
    r = _run([python, "inference.py", "--input_dir", data / "inputs", "--depth_dir",
              data / "depth", "--mask_dir", data / "mask", "--output_dir", data / "out",
              "--K", "32", "--pretrained_model_name_or_path", sd21, "--model_path",
              tmp_path / "lora.pkl", "--mixed_precision", "fp32"], 1800, cwd=code)  # fmt: skip
    assert r.returncode == 0, r.stderr[-3000:]
    theirs = np.asarray(Image.open(data / "out" / "scene.png").convert("RGB")) / 255.0

    store = tmp_path / "store"
    assert (
        main(
            [
                "models",
                "--store",
                str(store),
                "import",
                "magicbokeh",
                "--sd21",
                str(sd21),
                "--checkpoint",
                str(tmp_path / "lora.pkl"),
                "--name",
                "official",
                "-q",
            ]
        )
        == 0
    )
    monkeypatch.setenv("BOKEHKIT_MODELS", str(store))
    out = tmp_path / "ours"
    args = ["render", str(data / "inputs" / "scene.png"), "--engine", "magicbokeh", "--model",
            "official", "--depth", str(data / "depth" / "scene.npy"), "--focus-mask",
            str(data / "mask" / "scene.png"), "--strength", "32", "--reference", "--device",
            "cpu", "--save-float", f"{out}.npy", "-o", f"{out}.png", "-q"]  # fmt: skip
    assert main(args) == 0
    ours = np.load(f"{out}.npy")

    assert ours.shape == theirs.shape == (544, 640, 3)
    assert psnr(theirs, u8 / 255.0) < 30  # the network did change the image
    value = psnr(ours, theirs)
    print(f"PSNR ours vs official: {value:.2f} dB")
    assert value >= 45, f"PSNR {value:.2f} dB against the official code"  # our bar for parity
    # With these small random weights 45 dB is a weak bar: K=16 instead of 32 still scores
    # ≈62 dB and K=31 ≈69 dB. Exact parity measures ≈86 dB here, so hold it to 75 dB
    # and check that the comparison does see a wrong strength.
    assert value >= 75, f"PSNR {value:.2f} dB: 45 passes, but parity gives ≈86 dB here"
    wrong = [{"32": "31", f"{out}.npy": f"{out}31.npy", f"{out}.png": f"{out}31.png"}.get(a, a)
             for a in args]  # fmt: skip
    assert main(wrong) == 0
    assert psnr(np.load(f"{out}31.npy"), theirs) < 75


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__, "-s", "-m", "slow"]))

"""The light engine (installer/build_light_engine.py): PyInstaller freezes bokehkit into one
folder with no torch in it; the frozen binary renders the demo, answers the plug-ins'
protocol and installs the plug-ins from the files bundled in it. The build is cached by a
hash of the sources (BOKEHKIT_BUILD_CACHE moves the cache), so only the first run after a
change pays for PyInstaller (about a minute here)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import build_light_engine as ble
import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.slow


def clean_env(**extra) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env["PATH"] = "/usr/bin:/bin"  # no venv, no pyenv: the bundle must bring its own Python
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def engine() -> Path:
    t0 = time.monotonic()
    exe = ble.build()
    folder = exe.parent
    ble.check_no_torch(folder)
    size = ble.bundle_size(folder) / 1e6
    start = ble.startup_seconds(exe)
    print(f"\nlight engine: {folder}: {size:.0f} MB, start-up {start:.2f} s "
          f"(build or cache: {time.monotonic() - t0:.0f} s)", file=sys.stderr)  # fmt: skip
    return exe


def test_no_torch_in_the_bundle(engine):
    folder = engine.parent
    names = {p.name for p in folder.rglob("*")}
    assert not any(n == "torch" or n.startswith(("libtorch", "libc10")) for n in names)
    assert any(n.startswith("onnxruntime") for n in names), "onnxruntime must be in it"
    assert any(n.startswith("libQt6Widgets") for n in names), "the Qt dialog must be in it"
    assert ble.bundle_size(folder) < 600e6


def test_frozen_engine_renders_the_demo(engine, tmp_path):
    t0 = time.monotonic()
    p = subprocess.run([str(engine), "demo"], cwd=tmp_path, env=clean_env(),
                       capture_output=True, text=True, timeout=600)  # fmt: skip
    seconds = time.monotonic() - t0
    assert p.returncode == 0, p.stderr[-3000:]
    out = tmp_path / "bokehkit-demo"
    src, res = out / "sample.jpg", out / "sample-bokeh.jpg"
    assert src.exists() and res.exists() and (out / "sample-before-after.jpg").exists()
    a = np.asarray(Image.open(src).convert("RGB"), np.int16)
    b = np.asarray(Image.open(res).convert("RGB"), np.int16)
    assert a.shape == b.shape
    diff = np.abs(a - b)
    assert diff.max() > 40 and diff.mean() > 1.0, (diff.max(), diff.mean())
    print(f"\nfrozen demo render: {seconds:.1f} s", file=sys.stderr)


def test_frozen_engine_serves_the_protocol(engine):
    p = subprocess.run([str(engine), "serve", "--stdio"], input='{"type": "ping"}\n',
                       env=clean_env(), capture_output=True, text=True, timeout=120)  # fmt: skip
    pong = json.loads(p.stdout.splitlines()[0])
    assert pong["type"] == "pong" and pong["engines"]["classical"]["available"], pong
    assert not pong["engines"]["magicbokeh"]["available"]  # torch is not in it


def test_frozen_engine_installs_the_plugins(engine, tmp_path):
    home = tmp_path / "home"
    (home / ".config/GIMP/3.0").mkdir(parents=True)
    (home / ".local/share/krita").mkdir(parents=True)
    env = clean_env(HOME=str(home), XDG_CONFIG_HOME="", XDG_DATA_HOME="")
    p = subprocess.run([str(engine), "install-plugins"], env=env, capture_output=True,
                       text=True, timeout=120)  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    gimp = home / ".config/GIMP/3.0/plug-ins/bokehkit-gimp"
    assert (gimp / "bokehkit-gimp.py").read_bytes() == (
        REPO / "gimp/bokehkit-gimp/bokehkit-gimp.py"
    ).read_bytes()
    assert (gimp / "bokehkit_plugin/client.py").exists()
    assert not list(gimp.rglob("__pycache__"))
    cfg = json.loads((home / ".config/bokehkit/engine.json").read_text())
    assert cfg == {"command": [str(engine)]}  # the frozen binary starts itself


def test_frozen_engine_renders_magicbokeh_over_onnx(engine, tmp_path):
    """The light engine (no torch) renders MagicBokeh from a bundle exported to ONNX on a
    full install, and its result matches the torch runtime's."""
    pytest.importorskip("torch")
    pytest.importorskip("diffusers")
    from magicbokeh_fixtures import make_bundle, write_focus_scene

    from bokehkit.commands import main
    from bokehkit.pipeline import RenderSettings, render_file

    folder = make_bundle(tmp_path / "mb", name="tiny")
    store = folder.parent
    assert main(["models", "--store", str(store), "export-onnx", "magicbokeh", "--name",
                 "tiny", "-q"]) == 0  # fmt: skip
    write_focus_scene(tmp_path)  # in.png, d.npy, m.png
    common = ["--depth", str(tmp_path / "d.npy"), "--focus-mask", str(tmp_path / "m.png"),
              "--strength", "24"]  # fmt: skip
    p = subprocess.run(
        [str(engine), "render", str(tmp_path / "in.png"), "--engine", "magicbokeh", "--model",
         "tiny", "--runtime", "auto", *common, "-o", str(tmp_path / "frozen.png")],
        env=clean_env(BOKEHKIT_MODELS=str(store)), capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr[-3000:]
    assert "MagicBokeh on cpu" in p.stdout and "onnx" in p.stdout.lower(), p.stdout
    settings = RenderSettings(
        engine="magicbokeh", depth_path=str(tmp_path / "d.npy"),
        focus_mask_path=str(tmp_path / "m.png"), strength=24.0,
        engine_options={"model": "tiny", "store": str(store), "runtime": "torch",
                        "device": "cpu", "precision": "fp32"},
    )  # fmt: skip
    render_file(tmp_path / "in.png", tmp_path / "torch.png", settings)
    a = np.asarray(Image.open(tmp_path / "frozen.png"), np.int16)
    b = np.asarray(Image.open(tmp_path / "torch.png"), np.int16)
    src = np.asarray(Image.open(tmp_path / "in.png"), np.int16)
    assert np.abs(a - src).mean() > 1  # the network did something
    assert np.abs(a - b).max() <= 2 and (a != b).mean() < 0.01

"""MagicBokeh over ONNX Runtime (the light engine's path): the export of the three stages,
their parity with torch, the torch-free import and render, stale exports, and the
renderer's `runtime` option through the pipeline, on the tiny official-layout model."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from magicbokeh_fixtures import make_bundle, write_focus_scene  # noqa: E402
from PIL import Image  # noqa: E402
from test_magicbokeh_render import _scene  # noqa: E402

from bokehkit.commands import main  # noqa: E402
from bokehkit.errors import BokehkitError  # noqa: E402
from bokehkit.magicbokeh import fast  # noqa: E402
from bokehkit.magicbokeh import onnx_stages as ox  # noqa: E402
from bokehkit.magicbokeh.inputs import defocus_map, focal_value, quantise_depth  # noqa: E402
from bokehkit.magicbokeh.network import load_network  # noqa: E402
from bokehkit.magicbokeh.stages import TorchStages  # noqa: E402
from bokehkit.render import magicbokeh as mb  # noqa: E402
from bokehkit.store.download import file_sha256  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TINY = dict(vae_tile=64, vae_overlap=4, latent_tile=8, latent_overlap=4)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """The tiny bundle, under the default name, exported through the CLI."""
    root = tmp_path_factory.mktemp("mbonnx")
    folder = make_bundle(root, name="magicbokeh")
    rc = main(["models", "--store", str(folder.parent), "export-onnx", "magicbokeh", "-q"])
    assert rc == 0
    return folder


@pytest.fixture(scope="module")
def net(folder):
    return load_network(folder, channels_last=False)


@pytest.fixture(scope="module")
def onnx(folder):
    return ox.OnnxStages(folder)


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - b) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1 / mse)


def _scene_defocus(h, w):
    image, depth, mask = _scene(h, w)
    depth_u8 = quantise_depth(depth)
    return image, defocus_map(depth_u8, focal_value(depth_u8, mask), 32)


def test_export_files_and_manifest(folder, capsys):
    where = folder / "onnx"
    manifest = json.loads((where / "export.json").read_text())
    assert manifest["bundle_manifest_sha256"] == file_sha256(folder / "magicbokeh.json")
    assert {"encode.onnx", "denoise.onnx", "decode.onnx"} <= set(manifest["files"])
    assert all(ok for _, ok, _ in ox.verify_export(folder, hashes=True))
    assert ox.export_status(folder) == (True, "")
    assert max(manifest["check_max_abs_error"].values()) < 1e-3
    assert not list(folder.glob(".onnx*"))  # no temporary folders left
    # up to date: kept (no second export)
    mtime = (where / "denoise.onnx").stat().st_mtime_ns
    assert main(["models", "--store", str(folder.parent), "export-onnx", "magicbokeh"]) == 0
    assert "up to date" in capsys.readouterr().out
    assert (where / "denoise.onnx").stat().st_mtime_ns == mtime


def test_stage_parity(net, onnx):
    """Each stage, onnxruntime vs torch (fp32, contiguous weights), on random inputs at
    two sizes other than the export's example (16×24 latents). Measured max |Δ|: encode
    1.7–2.6e-7 (latents ~1), denoise 1.3–2.4e-5 (|x0| up to 60: ε's error is amplified
    ×15 by √(1−ᾱ)/√ᾱ at t=999), decode 3–7e-6 (image in [−1, 1]). All-in-focus labels
    instead of the mixed ones move x0 by 0.016–0.028 in both."""
    g = np.random.default_rng(0)
    for lh, lw in [(8, 8), (24, 16)]:  # denoise: sides multiples of 8 latents
        image = g.uniform(-1, 1, (1, 3, 8 * lh + 8, 8 * lw - 8)).astype(np.float32)
        latent = g.standard_normal((1, 4, lh, lw)).astype(np.float32)
        defocus = (g.random((1, 1, 8 * lh, 8 * lw)) * 0.4).astype(np.float32)
        in_focus = (defocus <= 0.1).astype(np.float32)
        with torch.inference_mode():
            t = torch.from_numpy
            want_enc = net.encode(t(image)).numpy()
            want_den = net.denoise(t(latent), t(defocus), t(in_focus)).numpy()
            want_all = net.denoise(t(latent), t(defocus), t(np.ones_like(in_focus))).numpy()
            want_dec = net.decode(t(latent[..., 1:, 1:])).numpy()  # decode: any size
        assert np.abs(onnx.encode(image) - want_enc).max() < 1e-5
        got = onnx.denoise(latent, defocus, in_focus)
        assert np.abs(got - want_den).max() < 2e-4
        # the attention masks come from the labels given, at this size (not baked in)
        got_all = onnx.denoise(latent, defocus, np.ones_like(in_focus))
        assert np.abs(got_all - want_all).max() < 2e-4
        assert np.abs(got_all - got).max() > 5e-3
        assert np.abs(onnx.decode(latent[..., 1:, 1:]) - want_dec).max() < 1e-4
    with pytest.raises(BokehkitError, match="multiple of 8"):
        onnx.denoise(latent[..., :12, :], defocus[..., :96, :], in_focus[..., :96, :])


def test_render_parity(net, onnx):
    """The whole default-mode render (fast.render_defocus), TorchStages vs OnnxStages:
    measured 123.5 dB with the tiny tiles (max |Δ| 8e-6) and 120.2 dB with the default
    tiles (one 192×256 tile, max |Δ| 1.3e-5); the bar is 60 dB."""
    image, defocus = _scene_defocus(160, 224)
    torch_stages = TorchStages(net, channels_last=False)
    for tiles in (TINY, {}):
        a = fast.render_defocus(image, defocus, torch_stages, **tiles)
        b = fast.render_defocus(image, defocus, onnx, **tiles)
        assert psnr(a, b) >= 60


def _copy_export(folder: Path, dest: Path) -> Path:
    """The files the ONNX runtime reads (the manifest and onnx/; no safetensors)."""
    dest.mkdir(parents=True)
    shutil.copy2(folder / "magicbokeh.json", dest)
    shutil.copytree(folder / "onnx", dest / "onnx")
    return dest


def test_stale_damaged_and_missing_exports_are_refused(folder, tmp_path):
    copy = _copy_export(folder, tmp_path / "store" / "magicbokeh")
    assert ox.export_status(copy) == (True, "")  # the weights themselves are not needed
    manifest = copy / "magicbokeh.json"
    manifest.write_text(manifest.read_text() + "\n")  # the bundle was imported again
    ok, reason = ox.export_status(copy)
    assert not ok and "stale" in reason
    assert "bokehkit models export-onnx magicbokeh --force" in reason
    with pytest.raises(BokehkitError, match="stale"):
        ox.OnnxStages(copy)
    shutil.copy2(folder / "magicbokeh.json", copy)
    data = copy / "onnx" / "decode.onnx.data"
    data.write_bytes(data.read_bytes()[:-4])
    ok, reason = ox.export_status(copy)
    assert not ok and "decode.onnx.data (DAMAGED" in reason
    shutil.rmtree(copy / "onnx")
    ok, reason = ox.export_status(copy)
    assert not ok and "no ONNX export" in reason and "export-onnx magicbokeh" in reason
    # a bundle under another name: the command names it
    other = _copy_export(folder, tmp_path / "store" / "mine")
    shutil.rmtree(other / "onnx")
    with pytest.raises(BokehkitError, match="export-onnx magicbokeh --name mine"):
        mb.MagicBokehRenderer(model="mine", store=tmp_path / "store", runtime="onnx")


def test_export_needs_a_bundle(tmp_path, capsys):
    rc = main(["models", "--store", str(tmp_path), "export-onnx", "magicbokeh", "--name", "x"])
    assert rc != 0
    assert "bokehkit models import magicbokeh" in capsys.readouterr().err


def test_runtime_choice(folder):
    store = folder.parent
    assert mb.choose_runtime("auto") == "torch"  # torch is here
    with pytest.raises(BokehkitError, match="--runtime 'tf'"):
        mb.choose_runtime("tf")
    r = mb.MagicBokehRenderer(store=store, runtime="onnx")
    assert r.describe() == "MagicBokeh on cpu (ONNX Runtime), float32"
    assert mb.MagicBokehRenderer(store=store, runtime="onnx", device="cpu", precision="fp32")
    with pytest.raises(BokehkitError, match="runs on the CPU"):
        mb.MagicBokehRenderer(store=store, runtime="onnx", device="cuda")
    with pytest.raises(BokehkitError, match="export is fp32"):
        mb.MagicBokehRenderer(store=store, runtime="onnx", precision="bf16")
    assert mb.model_status(store=store, runtime="onnx") == (True, "")


@pytest.fixture()
def photo(tmp_path):
    """A 96×128 photo: near subject on the left (painted as the focus), far wall behind."""
    return write_focus_scene(tmp_path)


def test_pipeline_with_the_onnx_runtime(folder, photo, monkeypatch):
    """runtime="onnx" through the render pipeline: the fast driver gets OnnxStages, the
    report says so, and the 8-bit result matches the torch runtime's (fp32, CPU,
    channels-last weights; measured: 5 of 36 864 values differ, by one code value)."""
    from bokehkit.pipeline import RenderSettings, render_file

    seen = []
    real = fast.render_defocus

    def spy(image, defocus, network, progress=None, **kw):
        seen.append(network)
        return real(image, defocus, network, progress, **kw)

    monkeypatch.setattr(fast, "render_defocus", spy)
    monkeypatch.setenv("BOKEHKIT_MODELS", str(folder.parent))
    outs = {}
    for runtime in ("onnx", "torch"):
        settings = RenderSettings(
            engine="magicbokeh", depth_path=str(photo / "d.npy"),
            focus_mask_path=str(photo / "m.png"), strength=16,
            engine_options={"device": "cpu", "precision": "fp32", "runtime": runtime},
        )  # fmt: skip
        report = render_file(photo / "in.png", photo / f"{runtime}.png", settings)
        outs[runtime] = np.asarray(Image.open(photo / f"{runtime}.png")).astype(np.int16)
        if runtime == "onnx":
            assert "engine: MagicBokeh on cpu (ONNX Runtime), float32" in report.lines()
    assert isinstance(seen[0], ox.OnnxStages) and not isinstance(seen[1], ox.OnnxStages)
    src = np.asarray(Image.open(photo / "in.png")).astype(np.int16)
    assert np.abs(outs["onnx"] - src).mean() > 1  # it did render
    assert np.abs(outs["onnx"] - outs["torch"]).max() <= 1


NO_TORCH = """
import sys

class _Blocked:
    # what the light engine lacks: torch (and the onnx/onnxscript packages)
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("torch", "onnx", "onnxscript", "diffusers", "safetensors"):
            raise ModuleNotFoundError(f"No module named {name!r} (blocked)", name=name)
        return None

sys.meta_path.insert(0, _Blocked())
"""


def test_torch_free_render(folder, onnx, tmp_path):
    """With `import torch` failing, onnx_stages, the fast driver, the renderer module and
    the engine server import; the ONNX render equals the one made here; the server lists
    magicbokeh as available iff the export is there, and the pipeline renders with it
    (runtime auto → onnx)."""
    image, defocus = _scene_defocus(96, 128)
    np.save(tmp_path / "image.npy", image)
    np.save(tmp_path / "defocus.npy", defocus)
    want = fast.render_defocus(image, defocus, onnx, **TINY)
    (tmp_path / "empty").mkdir()
    Image.fromarray(np.round(image * 255).astype(np.uint8)).save(tmp_path / "in.png")
    code = NO_TORCH + textwrap.dedent(f"""
        import os
        import numpy as np
        from pathlib import Path
        from bokehkit.magicbokeh import fast
        from bokehkit.magicbokeh.onnx_stages import OnnxStages

        tmp = Path({str(tmp_path)!r})
        image, defocus = np.load(tmp / "image.npy"), np.load(tmp / "defocus.npy")
        out = fast.render_defocus(image, defocus, OnnxStages({str(folder)!r}),
                                  vae_tile=64, vae_overlap=4, latent_tile=8, latent_overlap=4)
        np.save(tmp / "out.npy", out)

        from bokehkit.render import magicbokeh as mb
        from bokehkit.serve.server import engines_status
        from bokehkit.errors import BokehkitError
        assert mb.choose_runtime("auto") == "onnx"
        try:
            mb.choose_runtime("torch")
            raise SystemExit("runtime torch accepted without torch")
        except BokehkitError as exc:
            assert "torch is not installed" in str(exc)
        assert engines_status()["magicbokeh"] == {{"available": True}}, engines_status()
        os.environ["BOKEHKIT_MODELS"] = str(tmp / "empty")
        entry = engines_status()["magicbokeh"]
        assert not entry["available"] and "export-onnx magicbokeh" in entry["reason"], entry
        os.environ["BOKEHKIT_MODELS"] = {str(folder.parent)!r}

        from bokehkit.pipeline import RenderSettings, render_file
        mask = np.zeros((96, 128), np.uint8)
        mask[:, :32] = 255
        from PIL import Image
        Image.fromarray(mask).save(tmp / "m.png")
        report = render_file(tmp / "in.png", tmp / "out.png", RenderSettings(
            engine="magicbokeh", depth_path=str(tmp / "defocus.npy"),
            focus_mask_path=str(tmp / "m.png")))
        assert "engine: MagicBokeh on cpu (ONNX Runtime), float32" in report.lines()
        assert (tmp / "out.png").exists()
        assert not any(m.split(".")[0] == "torch" for m in sys.modules)
        print("ok")
    """)
    env = dict(os.environ, PYTHONPATH=str(REPO / "core"), BOKEHKIT_MODELS=str(folder.parent))
    p = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                       timeout=300)  # fmt: skip
    assert p.returncode == 0 and p.stdout.strip().endswith("ok"), p.stderr[-3000:]
    assert np.array_equal(np.load(tmp_path / "out.npy"), want)

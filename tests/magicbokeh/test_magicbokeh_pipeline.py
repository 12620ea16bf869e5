"""MagicBokeh's default mode behind the render pipeline, the CLI and the engine server, on
the tiny official-layout model: K from the lens, joint SR, device and precision choice."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from magicbokeh_fixtures import make_bundle, write_focus_scene  # noqa: E402
from PIL import Image  # noqa: E402

from bokehkit.commands import main  # noqa: E402
from bokehkit.errors import BokehkitError  # noqa: E402
from bokehkit.magicbokeh import fast  # noqa: E402
from bokehkit.render import magicbokeh as mb  # noqa: E402


@pytest.fixture(scope="module")
def bundle_folder(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("mbpipe"))


@pytest.fixture()
def photo(tmp_path):
    """A 96×128 photo: near subject on the left (painted as the focus), far wall behind."""
    return write_focus_scene(tmp_path)


@pytest.fixture()
def spy(monkeypatch):
    """Records what the renderer hands the fast driver, then runs it."""
    seen = []
    real = fast.render_defocus

    def wrapped(image, defocus, network, progress=None, **kw):
        seen.append((image.copy(), defocus.copy(), network))
        return real(image, defocus, network, progress, **kw)

    monkeypatch.setattr(fast, "render_defocus", wrapped)
    return seen


def _render(photo, bundle_folder, monkeypatch, *extra, out="out.png"):
    monkeypatch.setenv("BOKEHKIT_MODELS", str(bundle_folder.parent))
    args = ["render", str(photo / "in.png"), "--engine", "magicbokeh", "--model",
            bundle_folder.name, "--depth", str(photo / "d.npy"), "--focus-mask",
            str(photo / "m.png"), "--device", "cpu", "--precision", "fp32",
            "-o", str(photo / out), *extra]  # fmt: skip
    return main(args)


def test_render_through_the_pipeline(photo, bundle_folder, monkeypatch, spy, capsys):
    assert (
        _render(photo, bundle_folder, monkeypatch, "--aperture", "2", "--focal-length", "200") == 0
    )
    printed = capsys.readouterr().out
    assert "engine: MagicBokeh on cpu, float32" in printed
    out = np.asarray(Image.open(photo / "out.png"))
    src = np.asarray(Image.open(photo / "in.png"))
    assert out.shape == src.shape and np.abs(out.astype(int) - src).mean() > 1
    ((image, defocus, _),) = spy
    # the network saw the sRGB photo itself (no highlight boost above 1)
    assert image.max() <= 1 and np.abs(image * 255 - src).max() < 0.51
    # painted subject in focus, the far wall defocused, within the trained range
    assert defocus[20:76, 10:60].max() == 0 and defocus[:10].min() > 0.1
    assert defocus.max() <= 1.0


def test_k_follows_the_aperture(photo, bundle_folder, monkeypatch, spy, capsys):
    assert _render(photo, bundle_folder, monkeypatch, "--aperture", "16", out="a.png") == 0
    assert _render(photo, bundle_folder, monkeypatch, "--aperture", "32", out="b.png") == 0
    assert _render(photo, bundle_folder, monkeypatch, "--strength", "16", out="c.png") == 0
    (_, d16, _), (_, d32, _), (_, dk, _) = spy
    wall = (slice(0, 10), slice(None))
    # defocus ∝ K ∝ 1/N (unclipped here), and --strength K gives |d − f|·K/32 exactly
    assert d16[wall].mean() == pytest.approx(2 * d32[wall].mean(), rel=1e-4)
    assert dk[wall] == pytest.approx(np.full((10, 128), 0.8 * 16 / 32), abs=1e-6)
    assert "renders blur radii up to" not in capsys.readouterr().out


def test_blur_beyond_the_trained_range_is_capped_and_said(
    photo, bundle_folder, monkeypatch, spy, capsys
):
    import bokehkit.pipeline

    monkeypatch.setattr(bokehkit.pipeline, "MAX_COC_FRACTION", 1.0)  # a tiny photo
    assert _render(photo, bundle_folder, monkeypatch, "--strength", "64") == 0
    ((_, defocus, _),) = spy
    assert defocus.max() == 1.0
    assert "magicbokeh renders blur radii up to 32 px" in capsys.readouterr().out


def test_joint_super_resolution(photo, bundle_folder, monkeypatch, spy):
    assert _render(photo, bundle_folder, monkeypatch, "--sr", "2", "--strength", "16") == 0
    ((image, defocus, _),) = spy
    assert image.shape == (192, 256, 3) and defocus.shape == (192, 256)  # network at output size
    assert np.asarray(Image.open(photo / "out.png")).shape == (192, 256, 3)
    # the blur radius doubles with the image: K·2 in output pixels
    assert defocus[:20].mean() == pytest.approx(2 * 0.8 * 16 / 32, rel=1e-3)


def test_cancel_leaves_no_output(photo, bundle_folder, monkeypatch):
    from bokehkit.pipeline import RenderSettings, render_file
    from bokehkit.progress import Cancelled, Progress

    monkeypatch.setenv("BOKEHKIT_MODELS", str(bundle_folder.parent))
    settings = RenderSettings(
        engine="magicbokeh", depth_path=str(photo / "d.npy"),
        focus_mask_path=str(photo / "m.png"),
        engine_options={"model": bundle_folder.name, "device": "cpu", "precision": "fp32"},
    )  # fmt: skip
    progress = Progress(lambda f, t: progress.cancel() if "tile 1/" in t else None)
    with pytest.raises(Cancelled):
        render_file(photo / "in.png", photo / "out.png", settings, progress)
    assert not (photo / "out.png").exists()
    assert not list(photo.glob(".*part*"))


def test_device_and_precision_choice(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(mb, "_cpu_has_native_bf16", lambda: True)
    assert mb.choose_dtype(cpu) == torch.bfloat16
    monkeypatch.setattr(mb, "_cpu_has_native_bf16", lambda: False)
    assert mb.choose_dtype(cpu) == torch.float32
    assert mb.choose_dtype(cpu, "bf16") == torch.bfloat16
    assert mb.choose_dtype(torch.device("cuda"), "auto") == torch.float16
    with pytest.raises(BokehkitError, match="fp16 is for GPUs"):
        mb.choose_dtype(cpu, "fp16")
    if not torch.cuda.is_available():
        assert mb.choose_device("auto").type in ("cpu", "mps")
        with pytest.raises(BokehkitError, match="no CUDA device"):
            mb.choose_device("cuda")


def test_bf16_render_is_close_to_fp32(photo, bundle_folder, monkeypatch):
    assert _render(photo, bundle_folder, monkeypatch, "--strength", "16", out="f.png") == 0
    assert _render(photo, bundle_folder, monkeypatch, "--strength", "16", "--precision",
                   "bf16", out="b.png") == 0  # fmt: skip
    a = np.asarray(Image.open(photo / "f.png")).astype(np.float64)
    b = np.asarray(Image.open(photo / "b.png")).astype(np.float64)
    psnr = 10 * np.log10(255**2 / np.mean((a - b) ** 2))
    assert 25 < psnr < 99  # bf16 differs, but stays near fp32 even with random weights


def test_engine_server_renders_with_magicbokeh(tmp_path, monkeypatch):
    """What the plug-ins get: the server lists the engine as available once its bundle is
    in the store, and renders a job with it from the schema's parameters."""
    from bokehkit.io.image import load_image
    from bokehkit.progress import Progress
    from bokehkit.serve.server import Inputs, engines_status, render_inputs

    folder = make_bundle(tmp_path / "mb", name="magicbokeh")  # the default bundle name
    monkeypatch.setenv("BOKEHKIT_MODELS", str(folder.parent))
    assert engines_status()["magicbokeh"] == {"available": True}
    rng = np.random.default_rng(1)
    Image.fromarray((rng.random((64, 80, 3)) * 255).astype(np.uint8)).save(tmp_path / "p.png")
    image = load_image(tmp_path / "p.png")
    mask = np.zeros((64, 80), np.float32)
    mask[16:48, 20:60] = 1
    events = []
    encoded, alpha, report = render_inputs(
        Inputs(image, None, mask, None),
        {"engine": "magicbokeh", "focus_source": "mask", "aperture": 1.4, "sr_factor": 2},
        Progress(lambda f, t: events.append(t)),
    )
    assert encoded.shape == (128, 160, 3) and encoded.dtype == np.uint8 and alpha is None
    assert any("MagicBokeh decode tile" in t for t in events)
    assert any(line.startswith("engine: MagicBokeh on") for line in report.lines())


def test_models_list_shows_bundles(bundle_folder, tmp_path, capsys):
    import shutil

    store = tmp_path / "store"
    assert main(["models", "--store", str(store), "list"]) == 0
    line = capsys.readouterr().out.splitlines()[-1]
    assert line.startswith("magicbokeh\tnot installed (import: bokehkit models import magicbokeh")
    shutil.copytree(bundle_folder, store / "mine")
    shutil.copytree(bundle_folder, store / "broken")
    with open(store / "broken" / "vae.safetensors", "r+b") as f:
        f.truncate(100)
    assert main(["models", "--store", str(store), "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert any(x.startswith("mine\tinstalled (") and "imported" in x for x in lines)
    broken = [x for x in lines if x.startswith("broken\t")]
    assert broken and "damaged" in broken[0] and "vae.safetensors" in broken[0]
    assert not any(x.startswith("magicbokeh\t") for x in lines)


def test_the_loaded_network_is_kept_between_renders(photo, bundle_folder, monkeypatch):
    """The engine server renders preview after preview: the weights load once per bundle,
    device and precision, and again after a new import."""
    import os

    import bokehkit.magicbokeh.network as network

    loads = []
    real = network.load_network
    monkeypatch.setattr(network, "load_network", lambda *a, **k: loads.append(a) or real(*a, **k))
    mb._LOADED.clear()
    for out, precision in (("1.png", "fp32"), ("2.png", "fp32"), ("3.png", "bf16")):
        assert _render(photo, bundle_folder, monkeypatch, "--strength", "16", "--precision",
                       precision, out=out) == 0  # fmt: skip
    assert len(loads) == 2  # fp32 once, then bf16
    manifest = bundle_folder / "magicbokeh.json"
    st = manifest.stat()
    os.utime(manifest, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))  # "re-imported"
    assert _render(photo, bundle_folder, monkeypatch, "--strength", "16", "--precision",
                   "bf16", out="4.png") == 0  # fmt: skip
    assert len(loads) == 3
    mb._LOADED.clear()

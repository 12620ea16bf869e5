"""The Krita plug-in for real: Krita 5.2.9 in the Debian 13 root (tests/hosts/hostroot.sh),
headless (kritarunner), the host's engine (tests/hosts/run-with-engine.sh). The result layer
must equal `bokehkit render` on the same photo, mask and parameters within 1/255."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

sys.path.insert(0, str(Path(__file__).resolve().parent / "hosts"))
import hostkit  # noqa: E402

KRITA_DIR = hostkit.REPO / "krita"
PARAMS = {
    "aperture": 1.8,
    "focal_length": 85.0,
    "sr_factor": 1,
    "focus_source": "mask",
    "blades": 6,
    "blade_rotation": 15.0,
    "highlights": 6.0,
    "grain": 1.0,
    "engine": "classical",
}
CASES = ("selection", "focuslayer", "transparencymask", "sr2", "f32", "cancel", "nomask-error")
try:  # the magicbokeh case needs a tiny model built here (torch + diffusers)
    import diffusers  # noqa: F401
    import torch  # noqa: F401

    CASES += ("magicbokeh",)
except ImportError:
    pass
KRITARUNNER = (
    "QT_QPA_PLATFORM=offscreen PYTHONPATH=/bokehkit/tests/hosts "
    "timeout 240 kritarunner -s krita_batch -f main /job"
)


def install(home: Path) -> Path:
    """Into a fresh profile: pykrita/<name>.desktop + <name>/ with the vendored package,
    enabled in kritarc (kritarunner reads kritarunnerrc, the GUI kritarc: both)."""
    pykrita = home / ".local" / "share" / "krita" / "pykrita"
    pykrita.mkdir(parents=True)
    shutil.copy2(KRITA_DIR / "bokehkit_krita.desktop", pykrita)
    shutil.copytree(
        KRITA_DIR / "bokehkit_krita",
        pykrita / "bokehkit_krita",
        ignore=shutil.ignore_patterns("__pycache__"),
    )
    hostkit.copy_plugin_package(pykrita / "bokehkit_krita")
    config = home / ".config"
    config.mkdir(parents=True, exist_ok=True)
    for rc in ("kritarc", "kritarunnerrc"):
        (config / rc).write_text("[python]\nenable_bokehkit_krita=true\n")
    return pykrita


def make_mask(path_raw: Path, path_png: Path, size=(960, 640)) -> None:
    """A soft painted-looking mask around the cat: an ellipse plus a stroke, blurred."""
    im = Image.new("L", size, 0)
    d = ImageDraw.Draw(im)
    d.ellipse((110, 20, 330, 330), fill=255)
    d.line((140, 300, 260, 380), fill=180, width=40)
    im = im.filter(ImageFilter.GaussianBlur(12))
    im.save(path_png)
    path_raw.write_bytes(np.asarray(im).tobytes())


@pytest.fixture(scope="module")
def krita_run(tmp_path_factory):
    hostkit.require_hostroot()
    job = hostkit.make_job(tmp_path_factory.mktemp("krita"))
    install(job / "home")
    make_mask(job / "mask.raw", job / "mask.png")
    if "magicbokeh" in CASES:
        from magicbokeh_fixtures import make_bundle

        make_bundle(job / "mb", name="magicbokeh")  # the default bundle name, in job/mb/store
    t0 = time.monotonic()
    p = hostkit.run_in_root(
        f"HOME=/job/home BOKEHKIT_MODELS=/job/mb/store BK_CASES={','.join(CASES)} "
        f"BK_PARAMS='{json.dumps(PARAMS)}' {KRITARUNNER}",
        job,
    )
    log = p.stdout + p.stderr
    (job / "krita.log").write_text(log)
    hostkit.log(f"kritarunner: {time.monotonic() - t0:.1f} s, exit {p.returncode}")
    assert p.returncode == 0, f"kritarunner failed (exit {p.returncode}):\n{log[-4000:]}"
    # kritarunner exits 0 when it cannot even import the script
    assert "Failed to resolve" not in log, f"kritarunner did not run the script:\n{log[-4000:]}"
    return job, log


def report(job: Path, case: str) -> dict:
    path = job / case / "report.json"
    assert path.exists(), f"{case}: the headless script wrote no report"
    return json.loads(path.read_text())


@pytest.fixture(scope="module")
def cli_reference(krita_run):
    job, _ = krita_run
    hostkit.cli_render(job / "in.png", job / "cli.png", PARAMS, job / "mask.png")
    return job / "cli.png"


@pytest.mark.parametrize("case", ["selection", "focuslayer", "transparencymask"])
def test_krita_result_matches_cli(krita_run, cli_reference, case):
    job, _ = krita_run
    r = report(job, case)
    assert r["status"] == "success", r
    assert r["depth"][:2] == ["RGBA", "U8"], r["depth"]
    expected_source = {
        "selection": "selection",
        "focuslayer": "layer “Focus”",
        "transparencymask": "transparencymask “Sharp”",
    }[case]
    assert r["mask_source"] == expected_source
    assert r["mask_untouched"], "the plug-in changed the user's mask"
    # one new layer, "<source> bokeh", right above the source ("Background")
    assert len(r["layers"]) == len(r["layers_before"]) + 1, r["layers"]
    i = r["layers"].index("Background")
    assert r["layers"][i + 1] == "Background bokeh", r["layers"]
    assert r["saved"]
    diff = hostkit.max_diff(job / case / "result.png", cli_reference)
    hostkit.log(f"Krita {case}: max difference vs CLI {diff}/255 ({r['seconds']} s)")
    assert diff <= 1, f"Krita {case} result differs from the CLI by {diff}/255"
    assert hostkit.max_diff(job / case / "result.png", job / "in.png") > 20


def test_krita_renders_with_magicbokeh(krita_run, monkeypatch):
    """The learned engine from inside Krita (a tiny official-layout model): the new layer
    equals the CLI's with the same model, mask and parameters."""
    if "magicbokeh" not in CASES:
        pytest.skip("needs torch and diffusers to build the tiny model")
    job, _ = krita_run
    r = report(job, "magicbokeh")
    assert r["status"] == "success", r
    assert r["mask_untouched"] and r["layers"][r["layers"].index("Background") + 1] == (
        "Background bokeh"
    ), r
    monkeypatch.setenv("BOKEHKIT_MODELS", str(job / "mb" / "store"))
    cli = job / "magicbokeh" / "cli.png"
    hostkit.cli_render(job / "in.png", cli, {**PARAMS, "engine": "magicbokeh"}, job / "mask.png")
    diff = hostkit.max_diff(job / "magicbokeh" / "result.png", cli)
    hostkit.log(f"Krita magicbokeh: max difference vs CLI {diff}/255 ({r['seconds']} s)")
    assert diff <= 1, f"Krita magicbokeh result differs from the CLI by {diff}/255"
    assert hostkit.max_diff(job / "magicbokeh" / "result.png", job / "in.png") > 20


def test_krita_error_leaves_document_untouched(krita_run):
    job, _ = krita_run
    r = report(job, "nomask-error")
    assert r["status"] == "error" and "Painted mask" in r["message"], r
    assert r["layers"] == r["layers_before"]


def test_krita_docker_screenshot(tmp_path):
    """Krita GUI under Xvfb: the plug-in loads from the profile, its docker is shown, Apply
    renders a new layer; a screenshot of it all."""
    hostkit.require_hostroot()
    job = hostkit.make_job(tmp_path)
    install(job / "home")
    params = json.dumps(
        {
            "focus_source": "point",
            "focus_x": 0.22,
            "focus_y": 0.14,
            "aperture": 1.8,
            "focal_length": 85,
        }
    )
    p = hostkit.run_in_root(
        f"HOME=/job/home {hostkit.XVFB} /bokehkit/tests/hosts/krita_gui.sh "
        f"/job/in.png /job/krita-docker.png '{params}'",
        job,
        timeout=300,
    )
    log = (job / "krita-docker.log").read_text() if (job / "krita-docker.log").exists() else ""
    assert p.returncode == 0, f"{p.stdout[-2000:]}\n{p.stderr[-2000:]}\n{log[-3000:]}"
    assert "[bokehkit] done: layer" in log
    assert "menu action registered: True" in log  # Tools > Scripts > Bokeh…
    hostkit.check_screenshot(job / "krita-docker.png")
    hostkit.keep_screenshot(job / "krita-docker.png", "krita-docker.png")


def test_committed_krita_screenshot_is_real():
    hostkit.check_screenshot(hostkit.SCREENSHOTS / "krita-docker.png")


def test_krita_super_resolution_makes_a_new_document(krita_run):
    job, _ = krita_run
    r = report(job, "sr2")
    assert r["status"] == "success", r
    assert r["layers"] == r["layers_before"], "the source document must stay as it was"
    assert r["new_document_size"] == [1920, 1280], r
    assert r["new_document_layers"] == ["Background bokeh"], r
    assert r["saved"]
    d = job / "sr2"
    hostkit.cli_render(job / "in.png", d / "cli.png", {**PARAMS, "sr_factor": 2}, job / "mask.png")
    diff = hostkit.max_diff(d / "result.png", d / "cli.png")
    hostkit.log(f"Krita sr2: max difference vs CLI {diff}/255 ({r['seconds']} s)")
    assert diff <= 1, f"Krita ×2 result differs from the CLI by {diff}/255"


def test_krita_float_document_matches_cli(krita_run):
    """A 32-bit float linear document: RGBA float32 to the engine and back. The reference is
    the CLI on the same linear pixels as a float TIFF."""
    import tifffile

    from bokehkit.colour import linear_to_srgb

    job, _ = krita_run
    r = report(job, "f32")
    assert r["status"] == "success", r
    assert r["depth"][:2] == ["RGBA", "F32"] and r["result_depth"] == r["depth"], r
    d = job / "f32"

    def srgb8(path):
        px = np.frombuffer(path.read_bytes(), np.float32).reshape(640, 960, 4)[..., :3]
        return np.round(linear_to_srgb(np.clip(px, 0, 1)) * 255).astype(np.uint8)

    src = np.frombuffer((d / "source.f32").read_bytes(), np.float32).reshape(640, 960, 4)
    tifffile.imwrite(d / "in.tif", np.ascontiguousarray(src[..., :3]), photometric="rgb")
    hostkit.cli_render(d / "in.tif", d / "cli.tif", PARAMS, job / "mask.png")
    cli = np.clip(tifffile.imread(d / "cli.tif")[..., :3], 0, 1)
    Image.fromarray(np.round(linear_to_srgb(cli) * 255).astype(np.uint8)).save(d / "cli.png")
    Image.fromarray(srgb8(d / "result.f32")).save(d / "result.png")
    diff = hostkit.max_diff(d / "result.png", d / "cli.png")
    hostkit.log(f"Krita f32: max difference vs CLI {diff}/255 ({r['seconds']} s)")
    assert diff <= 1, f"Krita float result differs from the CLI by {diff}/255"


def test_krita_cancel_leaves_document_untouched(krita_run):
    job, _ = krita_run
    r = report(job, "cancel")
    assert r["status"] == "cancelled", r
    assert r["progress_events"] >= 1
    assert r["layers"] == r["layers_before"]
    assert not (job / "cancel" / "result.png").exists()

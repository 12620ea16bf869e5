"""The GIMP 3 plug-in for real: GIMP 3.0.4 in the Debian 13 root (tests/hosts/hostroot.sh),
batch mode, the host's engine (tests/hosts/run-with-engine.sh). The result layer must equal
`bokehkit render` on the same photo, mask and parameters within 1/255."""

from __future__ import annotations

import json
import shutil
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent / "hosts"))
import hostkit  # noqa: E402

PLUGIN_DIR = hostkit.REPO / "gimp" / "bokehkit-gimp"
# GIMP argument values and the same as schema params for the CLI
ARGS = {
    "aperture": 1.8,
    "focal-length": 85.0,
    "sr-factor": "x1",
    "focus-source": "mask",
    "blades": 6,
    "blade-rotation": 15.0,
    "highlights": 6.0,
    "grain": 1.0,
    "engine": "classical",
}
PARAMS = {
    "aperture": 1.8,
    "focal_length": 85.0,
    "sr_factor": 1,
    "blades": 6,
    "blade_rotation": 15.0,
    "highlights": 6.0,
    "grain": 1.0,
    "engine": "classical",
}
CASES = ("layermask", "selection", "focus-channel", "mask-arg", "sr2", "float", "nomask-error")
try:  # the magicbokeh case needs a tiny model built here (torch + diffusers)
    import diffusers  # noqa: F401
    import torch  # noqa: F401

    CASES += ("magicbokeh",)
except ImportError:
    pass
GIMP = (
    "timeout 240 gimp-console-3.0 -i -f --quit --batch-interpreter python-fu-eval "
    "-b \"exec(open('/bokehkit/tests/hosts/gimp_batch.py').read())\""
)


def install(home: Path) -> Path:
    """Into a fresh profile, as the installer does: folder name == script name, exec bit."""
    dest = home / ".config" / "GIMP" / "3.0" / "plug-ins" / "bokehkit-gimp"
    dest.mkdir(parents=True)
    shutil.copy2(PLUGIN_DIR / "bokehkit-gimp.py", dest / "bokehkit-gimp.py")
    (dest / "bokehkit-gimp.py").chmod(0o755)
    hostkit.copy_plugin_package(dest)
    return dest


@pytest.fixture(scope="module")
def gimp_run(tmp_path_factory):
    """One GIMP start runs every case (GIMP's start-up dominates the time)."""
    hostkit.require_hostroot()
    job = hostkit.make_job(tmp_path_factory.mktemp("gimp"))
    install(job / "home")
    if "magicbokeh" in CASES:
        from magicbokeh_fixtures import make_bundle

        make_bundle(job / "mb", name="magicbokeh")  # the default bundle name, in job/mb/store
    t0 = time.monotonic()
    p = hostkit.run_in_root(
        f"HOME=/job/home BOKEHKIT_MODELS=/job/mb/store BK_JOB=/job BK_CASES={','.join(CASES)} "
        f"BK_ARGS='{json.dumps(ARGS)}' {GIMP}",
        job,
    )
    seconds = time.monotonic() - t0
    log = p.stdout + p.stderr
    (job / "gimp.log").write_text(log)
    hostkit.log(f"GIMP batch: {seconds:.1f} s, exit {p.returncode}, log {job / 'gimp.log'}")
    assert p.returncode == 0, f"gimp-console failed (exit {p.returncode}):\n{log[-4000:]}"
    return job, log


def report(job: Path, case: str) -> dict:
    path = job / case / "report.json"
    assert path.exists(), f"{case}: the batch script wrote no report"
    return json.loads(path.read_text())


@pytest.mark.parametrize("case", ["layermask", "selection", "focus-channel", "mask-arg"])
def test_gimp_result_matches_cli(gimp_run, case):
    job, log = gimp_run
    r = report(job, case)
    assert r["status"] == "success", r
    assert r["layers"][0].endswith(" bokeh") and len(r["layers"]) == 2, r["layers"]
    assert r["result_offsets"] == [0, 0] and r["result_size"] == [960, 640]
    assert r["mask_untouched"], "the plug-in changed the user's mask/selection"
    assert 0.02 < r["mask_mean"] < 0.6, r["mask_mean"]  # a real, partial mask
    d = job / case
    hostkit.raw_mask_to_png(d / "mask.raw", (960, 640), d / "mask.png")
    hostkit.cli_render(job / "in.png", d / "cli.png", PARAMS, d / "mask.png")
    diff = hostkit.max_diff(d / "result.png", d / "cli.png")
    hostkit.log(f"GIMP {case}: max difference vs CLI {diff}/255 ({r['seconds']} s in GIMP)")
    assert diff <= 1, f"GIMP {case} result differs from the CLI by {diff}/255"
    # and the render did something: far from the input outside the mask
    assert hostkit.max_diff(d / "result.png", job / "in.png") > 20


def test_gimp_float_image_matches_cli(gimp_run):
    """A 32-bit float linear image: the layer goes to the engine as linear "RGBA float". The
    reference is the CLI on the same linear data as a float TIFF (the engine's float path)."""
    import tifffile

    from bokehkit.colour import linear_to_srgb, srgb_to_linear

    job, log = gimp_run
    r = report(job, "float")
    assert r["status"] == "success", r
    assert "FLOAT_LINEAR" in r["precision_after"], r
    d = job / "float"
    mask = np.frombuffer((d / "mask.raw").read_bytes(), np.float32).reshape(640, 960)
    tifffile.imwrite(d / "mask.tif", mask)  # the selection's float values, unrounded
    rgb = np.asarray(Image.open(job / "in.png").convert("RGB"), np.float32) / 255
    tifffile.imwrite(d / "in.tif", srgb_to_linear(rgb).astype(np.float32), photometric="rgb")
    hostkit.cli_render(d / "in.tif", d / "cli.tif", PARAMS, d / "mask.tif")
    cli = np.clip(tifffile.imread(d / "cli.tif")[..., :3], 0, 1)
    cli8 = np.round(linear_to_srgb(cli) * 255).astype(np.uint8)
    Image.fromarray(cli8).save(d / "cli.png")
    raw = np.frombuffer((d / "result.rgba").read_bytes(), np.uint8).reshape(640, 960, 4)
    Image.fromarray(raw).save(d / "result8.png")
    diff = hostkit.max_diff(d / "result8.png", d / "cli.png")
    hostkit.log(f"GIMP float: max difference vs CLI {diff}/255 ({r['seconds']} s in GIMP)")
    assert diff <= 1, f"GIMP float result differs from the CLI by {diff}/255"


def test_gimp_error_leaves_image_untouched(gimp_run):
    job, log = gimp_run
    r = report(job, "nomask-error")
    assert r["status"] == "execution-error", r
    assert "no" in r.get("message", "").lower() or "none" in r.get("message", ""), r
    assert r["layers"] == ["in.png"] or len(r["layers"]) == 1, r["layers"]
    assert not (job / "nomask-error" / "result.png").exists()


def test_gimp_super_resolution_makes_a_new_image(gimp_run):
    job, log = gimp_run
    r = report(job, "sr2")
    assert r["status"] == "success", r
    assert r["layers"] == ["Background"], "the source image must stay as it was"
    assert r["new_image_size"] == [1920, 1280] and len(r["new_image_layers"]) == 1, r
    d = job / "sr2"
    hostkit.raw_mask_to_png(d / "mask.raw", (960, 640), d / "mask.png")
    hostkit.cli_render(job / "in.png", d / "cli.png", {**PARAMS, "sr_factor": 2}, d / "mask.png")
    diff = hostkit.max_diff(d / "result.png", d / "cli.png")
    hostkit.log(f"GIMP sr2: max difference vs CLI {diff}/255 ({r['seconds']} s in GIMP)")
    assert diff <= 1, f"GIMP ×2 result differs from the CLI by {diff}/255"


def test_gimp_dialog_screenshot(tmp_path):
    """GIMP 3 GUI under Xvfb, the plug-in run interactively: the engine's Qt dialog with its
    preview opens over GIMP; GIMP is then killed and the engine must go with it."""
    hostkit.require_hostroot()
    job = hostkit.make_job(tmp_path)
    install(job / "home")
    p = hostkit.run_in_root(
        f"HOME=/job/home {hostkit.XVFB} /bokehkit/tests/hosts/gimp_gui.sh "
        "/job/in.png /job/gimp-dialog.png",
        job,
        timeout=240,
    )
    log = (job / "gimp-dialog.log").read_text() if (job / "gimp-dialog.log").exists() else ""
    assert p.returncode == 0, f"{p.stdout[-2000:]}\n{p.stderr[-2000:]}\n{log[-3000:]}"
    assert "ENGINE LEFT RUNNING" not in p.stdout
    a = hostkit.check_screenshot(job / "gimp-dialog.png")
    # the Qt dialog (Fusion's light window colour) over GIMP's dark theme
    light = (np.abs(a.astype(int) - 239).max(-1) <= 2).mean()
    assert light > 0.05, f"no dialog in the screenshot ({light:.1%} dialog-coloured pixels)"
    hostkit.keep_screenshot(job / "gimp-dialog.png", "gimp-dialog.png")


def test_committed_gimp_screenshot_is_real():
    hostkit.check_screenshot(hostkit.SCREENSHOTS / "gimp-dialog.png")


def test_gimp_renders_with_magicbokeh(gimp_run, monkeypatch):
    """The learned engine from inside GIMP (a tiny official-layout model): the result layer
    equals the CLI's with the same model, selection and parameters."""
    job, log = gimp_run
    if "magicbokeh" not in CASES:
        pytest.skip("needs torch and diffusers to build the tiny model")
    r = report(job, "magicbokeh")
    assert r["status"] == "success", r
    assert r["mask_untouched"] and len(r["layers"]) == 2, r
    d = job / "magicbokeh"
    hostkit.raw_mask_to_png(d / "mask.raw", (960, 640), d / "mask.png")
    monkeypatch.setenv("BOKEHKIT_MODELS", str(job / "mb" / "store"))
    hostkit.cli_render(job / "in.png", d / "cli.png", {**PARAMS, "engine": "magicbokeh"},
                       d / "mask.png")  # fmt: skip
    diff = hostkit.max_diff(d / "result.png", d / "cli.png")
    hostkit.log(f"GIMP magicbokeh: max difference vs CLI {diff}/255 ({r['seconds']} s in GIMP)")
    assert diff <= 1, f"GIMP magicbokeh result differs from the CLI by {diff}/255"
    assert hostkit.max_diff(d / "result.png", job / "in.png") > 20  # the network ran

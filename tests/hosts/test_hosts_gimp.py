"""The GIMP 3 plug-in for real, in every GIMP people run: 3.0.4 (Debian 13) and 3.2.x (sid),
each in its Debian root (tests/hosts/hostroot.sh), batch mode, the host's engine
(tests/hosts/run-with-engine.sh). The result layer must equal `bokehkit render` on the same
photo, mask and parameters within 1/255. The version is in every test id ([gimp3.2-...])."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import hostkit
import numpy as np
import pytest
from PIL import Image

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
CASES = ("layermask", "selection", "focus-channel", "mask-arg", "sr2", "float", "nomask-error",
         "reedit", "helpers", "depthview", "range", "nonraster")  # fmt: skip
try:  # the magicbokeh case needs a tiny model built here (torch + diffusers)
    import diffusers  # noqa: F401
    import torch  # noqa: F401

    MAGIC = True
except ImportError:
    MAGIC = False
#: The learned engine is the engine's, not the host's: one GIMP version runs it (it is
#: the slowest case on a CPU).
MAGIC_HOST = hostkit.GIMPS[-1]


def cases_for(host: hostkit.Host) -> tuple:
    return CASES + (("magicbokeh",) if MAGIC and host == MAGIC_HOST else ())


GIMP = (
    "timeout 300 gimp-console -i --quit --batch-interpreter python-fu-eval "
    "-b \"exec(open('/bokehkit/tests/hosts/gimp_batch.py').read())\""
)


@pytest.fixture(scope="module", params=hostkit.GIMPS, ids=lambda host: host.id)
def gimp(request) -> hostkit.Host:
    """Each GIMP version in turn; its root is built (or reused) first."""
    hostkit.require_hostroot(request.param)
    return request.param


def install(home: Path, host: hostkit.Host = hostkit.GIMPS[0]) -> Path:
    """Into a fresh profile, as the installer does: folder name == script name, exec bit."""
    dest = home / ".config" / "GIMP" / host.version / "plug-ins" / "bokehkit-gimp"
    dest.mkdir(parents=True)
    shutil.copy2(PLUGIN_DIR / "bokehkit-gimp.py", dest / "bokehkit-gimp.py")
    (dest / "bokehkit-gimp.py").chmod(0o755)
    hostkit.copy_plugin_package(dest)
    return dest


@pytest.fixture(scope="module")
def gimp_run(gimp, tmp_path_factory):
    """One GIMP start runs every case (GIMP's start-up dominates the time)."""
    job = hostkit.make_job(tmp_path_factory.mktemp(gimp.id))
    install(job / "home", gimp)
    cases = cases_for(gimp)
    if "magicbokeh" in cases:
        from magicbokeh_fixtures import make_bundle

        make_bundle(job / "mb", name="magicbokeh")  # the default bundle name, in job/mb/store
    t0 = time.monotonic()
    p = hostkit.run_in_root(
        f"HOME=/job/home BOKEHKIT_MODELS=/job/mb/store BK_JOB=/job BK_CASES={','.join(cases)} "
        f"BK_ARGS='{json.dumps(ARGS)}' {GIMP}",
        job,
        timeout=420,
        host=gimp,
    )
    seconds = time.monotonic() - t0
    log = p.stdout + p.stderr
    (job / "gimp.log").write_text(log)
    hostkit.log(f"{gimp.id} batch: {seconds:.1f} s, exit {p.returncode}, log {job / 'gimp.log'}")
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
    assert r["layers"][0] == "Background bokeh f/1.8 85 mm" and len(r["layers"]) == 2, r["layers"]
    assert json.loads(r["record"])["source"]["name"] == "Background"  # it remembers (re-edit)
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

    from bokehkit.io.colour import linear_to_srgb, srgb_to_linear

    job, log = gimp_run
    r = report(job, "float")
    assert r["status"] == "success", r
    assert r["precision_after"] == "float-linear", r
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


def test_gimp_lists_lens_bokeh_where_photographers_look_for_blurs(gimp_run):
    job, log = gimp_run
    paths = report(job, "selection")["menu_paths"]
    assert "<Image>/Filters/Blur" in paths and "<Image>/Filters/Bokeh" in paths, paths


def test_gimp_error_leaves_image_untouched(gimp_run):
    job, log = gimp_run
    r = report(job, "nomask-error")
    assert r["status"] == "execution-error", r
    assert "no" in r.get("message", "").lower() or "none" in r.get("message", ""), r
    assert r["layers"] == ["in.png"] or len(r["layers"]) == 1, r["layers"]
    assert not (job / "nomask-error" / "result.png").exists()


def test_gimp_super_resolution_makes_a_new_image(gimp, gimp_run):
    job, log = gimp_run
    r = report(job, "sr2")
    assert r["status"] == "success", r
    assert r["layers"] == ["Background"], "the source image must stay as it was"
    assert r["new_image_size"] == [1920, 1280] and len(r["new_image_layers"]) == 1, r
    # named after the photo, not "[Untitled]" (GIMP 3.0's batch load leaves the image without
    # a file: then after its layer)
    stem = "Background" if gimp.version == "3.0" else "in"
    assert r["new_image_file"] == f"{stem} bokeh f1.8 85 mm ×2.xcf", r
    d = job / "sr2"
    hostkit.raw_mask_to_png(d / "mask.raw", (960, 640), d / "mask.png")
    hostkit.cli_render(job / "in.png", d / "cli.png", {**PARAMS, "sr_factor": 2}, d / "mask.png")
    diff = hostkit.max_diff(d / "result.png", d / "cli.png")
    hostkit.log(f"GIMP sr2: max difference vs CLI {diff}/255 ({r['seconds']} s in GIMP)")
    assert diff <= 1, f"GIMP ×2 result differs from the CLI by {diff}/255"


def test_committed_gimp_screenshots_are_real():
    for name in README_SHOTS.values():
        hostkit.check_screenshot(hostkit.SCREENSHOTS / name)


@pytest.mark.parametrize("gimp", [MAGIC_HOST], ids=[MAGIC_HOST.id], indirect=True)
def test_gimp_renders_with_magicbokeh(gimp, gimp_run, monkeypatch):
    """The learned engine from inside GIMP (a tiny official-layout model): the result layer
    equals the CLI's with the same model, selection and parameters."""
    job, log = gimp_run
    if not MAGIC:
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


# ------------------------------------------------------------------ the newer features


def _raw_png(job: Path, case: str, name: str) -> Path:
    d = job / case
    hostkit.raw_mask_to_png(d / f"{name}.raw", (960, 640), d / f"{name}.png")
    return d / f"{name}.png"


def test_gimp_reedit_renders_again_from_the_source_into_the_result(gimp_run):
    """The filter on a result: its source again (not the blurred result), new settings,
    the result replaced in its place (one undo step: tested with Ctrl+Z in the GUI), the
    name says f/2.8."""
    job, log = gimp_run
    r = report(job, "reedit")
    assert r["status"] == "success", r
    assert r["first_name"] == "Background bokeh f/1.8 85 mm"
    assert r["layers"] == ["Background bokeh f/2.8 85 mm", "Background"], r["layers"]
    assert r["first_gone"]
    assert json.loads(r["record"])["params"]["aperture"] == 2.8
    d, mask = job / "reedit", _raw_png(job, "reedit", "mask")
    first = np.frombuffer((d / "first.rgba").read_bytes(), np.uint8).reshape(640, 960, 4)
    Image.fromarray(first).save(d / "first.png")
    hostkit.cli_render(job / "in.png", d / "cli-first.png", PARAMS, mask)
    hostkit.cli_render(job / "in.png", d / "cli.png", {**PARAMS, "aperture": 2.8}, mask)
    assert hostkit.max_diff(d / "first.png", d / "cli-first.png") <= 1
    diff = hostkit.max_diff(d / "result.png", d / "cli.png")
    hostkit.log(f"GIMP re-edit: max difference vs CLI {diff}/255")
    assert diff <= 1, f"the re-edit differs from the CLI (f/2.8 from the source) by {diff}/255"


@pytest.mark.parametrize("case", ["helpers", "depthview", "range"])
def test_gimp_blur_and_depth_channels_range_and_depth_view_match_cli(gimp_run, case):
    """A painted Depth channel (white = near) and Blur channel (white = more blur) go to the
    engine; the focus range and the depth view (a new layer) equal the CLI's."""
    job, log = gimp_run
    r = report(job, case)
    assert r["status"] == "success", r
    depth, blur = _raw_png(job, case, "depth"), _raw_png(job, case, "blur")
    extra = ["--depth", str(depth), "--blur-mask", str(blur)]
    params, mask = dict(PARAMS), None
    if case == "helpers":
        mask = _raw_png(job, case, "mask")
        assert r["layers"][0] == "Background bokeh f/1.8 85 mm", r["layers"]
    elif case == "depthview":
        params["output"] = "depth"
        extra += ["--focus-point", "480,320"]
        assert r["layers"][0] == "Background depth view", r["layers"]
    else:
        params.update(focus_source="range", focus_near=0.0, focus_far=0.45)
        assert r["layers"][0] == "Background bokeh f/1.8 85 mm sharp 0%–45%", r["layers"]
    d = job / case
    hostkit.cli_render(job / "in.png", d / "cli.png", params, mask, *extra)
    diff = hostkit.max_diff(d / "result.png", d / "cli.png")
    hostkit.log(f"GIMP {case}: max difference vs CLI {diff}/255")
    assert diff <= 1, f"GIMP {case} differs from the CLI by {diff}/255"


def test_gimp_non_raster_layers_render_as_drawn_with_a_note(gimp, gimp_run):
    """Text layers (and GIMP 3.2's vector and link layers) render as drawn: a plain result
    layer, the source layer left as it is, a note in the log."""
    job, log = gimp_run
    kinds = report(job, "nonraster")["kinds"]
    expected = {"text"} | ({"vector", "link"} if gimp.version != "3.0" else set())
    assert set(kinds) == expected, kinds
    for kind, r in kinds.items():
        assert r["status"] == "success", (kind, r)
        assert r["source_still"] and r["result_is_plain"], (kind, r)
        assert r["result_name"].endswith("bokeh f/1.8 85 mm"), (kind, r)
        assert f"note: the {kind} layer is rendered as drawn" in log


def test_gimp_without_an_engine_says_what_to_run(gimp, tmp_path):
    """No BOKEHKIT_ENGINE and no engine.json: the procedure fails with one line naming
    `bokehkit install-plugins` (was: a Python traceback), and adds nothing."""
    job = hostkit.make_job(tmp_path)
    install(job / "home", gimp)
    p = hostkit.run_in_root(
        f"env -u BOKEHKIT_ENGINE HOME=/job/home BK_JOB=/job BK_CASES=noengine "
        f"BK_ARGS='{json.dumps(ARGS)}' {GIMP}",
        job,
        host=gimp,
    )
    log = p.stdout + p.stderr
    r = report(job, "noengine")
    assert r["status"] == "execution-error", r
    assert "bokehkit install-plugins" in r["message"] and "\n" not in r["message"].strip(), r
    assert "Traceback" not in log, log[-3000:]
    assert r["layers"] == ["Background"]


# ------------------------------------------------------------------ with the mouse

#: The mouse session's screenshots the README shows (BOKEHKIT_UPDATE_SCREENSHOTS=1), GIMP 3.2.
README_SHOTS = {"gimp-dialog.png": "gimp-3.2-dialog.png", "gimp-reshow.png": "gimp-3.2-reedit.png"}


@pytest.fixture(scope="module")
def gimp_mouse(gimp, tmp_path_factory):
    """Two GIMP GUI sessions per version, driven with the mouse and keyboard
    (tests/hosts/gimp_mouse.py); the report, logs and screenshots."""
    job = hostkit.make_job(tmp_path_factory.mktemp(f"{gimp.id}-mouse"))
    install(job / "home", gimp)
    # a user who has seen GIMP's welcome dialog (a window of its own that takes the keys)
    gimprc = job / "home" / ".config" / "GIMP" / gimp.version / "gimprc"
    gimprc.write_text("(show-welcome-dialog no)\n")
    out = job / "mouse"
    out.mkdir()
    p = hostkit.run_in_root(
        f"HOME=/job/home {hostkit.XVFB} python3 /bokehkit/tests/hosts/gimp_mouse.py /job/mouse",
        job,
        timeout=600,
        host=gimp,
    )
    logs = "".join(f.read_text(errors="replace")[-3000:] for f in sorted(out.glob("gimp-*.log")))
    assert (out / "report.json").exists(), f"{p.stdout[-3000:]}\n{p.stderr[-2000:]}\n{logs}"
    if gimp.version == "3.2":  # the README shows the newest GIMP
        for shot, name in README_SHOTS.items():
            if (out / shot).exists():
                hostkit.check_screenshot(out / shot)
                hostkit.keep_screenshot(out / shot, name)
    return json.loads((out / "report.json").read_text()), out, logs


def test_gimp_dialog_follows_the_dark_theme_and_tips_on_layer_masks(gimp_mouse):
    """The engine's dialog takes GIMP's (dark) theme colours, and says that a layer mask
    hides the photo while one paints it (Quick Mask or a "Focus" channel do not)."""
    r, out, logs = gimp_mouse
    shown = r["dialog"]
    assert shown is not None, logs
    from PIL import ImageColor

    red, green, blue = ImageColor.getrgb(shown["window_colour"])
    colour = shown["window_colour"]
    assert (red + green + blue) / 3 < 110, f"a light dialog over a dark GIMP: {colour}"
    assert "Quick Mask" in shown["focus_note"] and "Focus" in shown["focus_note"], shown
    assert shown["params"]["focus_source"] == "mask"
    assert shown["depth_notice"], shown  # no depth: said before OK is pressed
    a = hostkit.check_screenshot(out / "gimp-dialog.png")
    dark = (a.astype(int).sum(-1) < 3 * 110).mean()
    assert dark > 0.5, f"the screen is not mostly dark ({dark:.0%})"


def test_gimp_reshow_on_a_result_reedits_and_says_why_focus_moved(gimp_mouse):
    """Re-Show (Shift+Ctrl+F) on the result after the mask was deleted: the dialog reopens as
    a re-edit with the result's settings and says that focus moved to Auto (it used to
    switch silently); OK replaces the result; one Ctrl+Z brings the first result back."""
    r, out, logs = gimp_mouse
    chosen = r["chosen"]["aperture"]
    assert r["first"]["name"] == f"Background bokeh f/{chosen:g}", r["first"]
    reshow = r["reshow"]
    assert reshow is not None and "re-edit" in reshow["title"], reshow
    assert "No painted mask any more" in reshow["focus_note"], reshow
    assert reshow["params"]["focus_source"] == "auto" and reshow["params"]["aperture"] == chosen
    assert r["second"]["differs"] and len(r["second"]["layers"]) == 2, r["second"]
    assert r["after_undo"]["first_pixels_back"], r["after_undo"]
    assert r["after_undo"]["layers"] == r["first"]["layers"], r["after_undo"]


def test_gimp_slider_snaps_and_settings_persist_between_sessions(gimp_mouse):
    from bokehkit_plugin.ui.controls import THIRD_STOPS

    r, out, logs = gimp_mouse
    chosen = r["chosen"]["aperture"]
    assert chosen in THIRD_STOPS and chosen != 2.0, r["chosen"]
    assert r["session2"] is not None, logs
    assert r["session2"]["params"]["aperture"] == chosen, r["session2"]["params"]


def test_gimp_engine_goes_with_gimp(gimp_mouse):
    r, out, logs = gimp_mouse
    assert r["engines_left"] == [], r["engines_left"]

"""The installer for real: in the Debian 13 root with GIMP 3.0.4 and Krita 5.2.9
(tests/hosts/hostroot.sh), `bokehkit install-plugins` (run there by the engine's own venv,
tests/hosts/run-with-engine.sh) puts the plug-ins into the test user's profiles and writes
engine.json; then, with no other step and with BOKEHKIT_ENGINE unset (so the plug-ins find
the engine through the installer's config file), GIMP registers the procedure (pluginrc)
and runs it in batch mode, and Krita's headless runner renders through the installed
plug-in. `uninstall-plugins` then leaves the profiles as they were. Skips with the reason
where the root cannot be had."""

from __future__ import annotations

import json
import time
from pathlib import Path

import hostkit
import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFilter

PY = hostkit.VENV / "bin" / "python"
INSTALL = f"{PY} -m bokehkit install-plugins"
NO_ENV_ENGINE = "env -u BOKEHKIT_ENGINE"  # the plug-ins must use engine.json
GIMP_ARGS = {"aperture": 2.0, "focus-source": "mask", "engine": "classical"}
GIMP = (
    f"{NO_ENV_ENGINE} HOME=/job/home BK_JOB=/job BK_CASES=selection "
    f"BK_ARGS='{json.dumps(GIMP_ARGS)}' timeout 240 gimp-console-3.0 -i -f --quit "
    "--batch-interpreter python-fu-eval "
    "-b \"exec(open('/bokehkit/tests/hosts/gimp_batch.py').read())\""
)
KRITA_PARAMS = {"aperture": 2.0, "focus_source": "mask", "engine": "classical", "sr_factor": 1}
KRITA = (
    f"{NO_ENV_ENGINE} HOME=/job/home BK_CASES=selection BK_PARAMS='{json.dumps(KRITA_PARAMS)}' "
    "QT_QPA_PLATFORM=offscreen PYTHONPATH=/bokehkit/tests/hosts "
    "timeout 240 kritarunner -s krita_batch -f main /job"
)


def files(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    hostkit.require_hostroot()
    job = hostkit.make_job(tmp_path_factory.mktemp("installer"))
    home = job / "home"
    # the profiles a first start of each program leaves (GIMP's settings folder, Krita's
    # resource folder); the installer fills them, as on a user's machine
    (home / ".config" / "GIMP" / "3.0").mkdir(parents=True)
    (home / ".local" / "share" / "krita").mkdir(parents=True)
    before = files(home)
    im = Image.new("L", (960, 640), 0)
    ImageDraw.Draw(im).ellipse((110, 20, 330, 330), fill=255)
    im = im.filter(ImageFilter.GaussianBlur(12))
    (job / "mask.raw").write_bytes(np.asarray(im).tobytes())  # krita_batch's selection
    t0 = time.monotonic()
    p = hostkit.run_in_root(f"{NO_ENV_ENGINE} HOME=/job/home {INSTALL}", job)
    seconds = time.monotonic() - t0
    (job / "install.log").write_text(p.stdout + p.stderr)
    assert p.returncode == 0, f"install-plugins failed:\n{p.stdout}\n{p.stderr}"
    hostkit.log(f"install-plugins in the root: {seconds:.1f} s (with the root's start)")
    return job, home, before, p.stdout


def test_installer_found_the_profiles_and_wrote_the_engine(installed):
    job, home, _, out = installed
    assert "GIMP 3.0: /job/home/.config/GIMP/3.0" in out, out
    assert "Krita: /job/home/.local/share/krita" in out, out
    gimp = home / ".config/GIMP/3.0/plug-ins/bokehkit-gimp/bokehkit-gimp.py"
    assert gimp.exists() and gimp.stat().st_mode & 0o111
    assert (home / ".local/share/krita/pykrita/bokehkit_krita.desktop").exists()
    assert "enable_bokehkit_krita=true" in (home / ".config/kritarc").read_text()
    engine = json.loads((home / ".config/bokehkit/engine.json").read_text())
    assert engine["command"][1:] == ["-m", "bokehkit"], engine
    assert Path(engine["command"][0]).name.startswith("python"), engine


def test_gimp_registers_and_runs_the_installed_plugin(installed):
    job, home, _, _ = installed
    t0 = time.monotonic()
    p = hostkit.run_in_root(GIMP, job)
    log = p.stdout + p.stderr
    (job / "gimp.log").write_text(log)
    hostkit.log(f"GIMP batch with the installed plug-in: {time.monotonic() - t0:.1f} s")
    assert p.returncode == 0, f"gimp-console failed:\n{log[-4000:]}"
    pluginrc = (home / ".config/GIMP/3.0/pluginrc").read_text(errors="replace")
    assert "bokehkit-gimp.py" in pluginrc and "python-fu-bokehkit" in pluginrc
    r = json.loads((job / "selection" / "report.json").read_text())
    assert r["status"] == "success", r
    assert hostkit.max_diff(job / "selection" / "result.png", job / "in.png") > 20
    # nothing was written into the plug-in folder at run time but Python's bytecode
    plug = home / ".config/GIMP/3.0/plug-ins/bokehkit-gimp"
    extra = {f for f in files(plug) if "__pycache__" not in f}
    assert extra <= {"bokehkit-gimp.py", "bokehkit_plugin", "bokehkit_plugin/ui"} | {
        f for f in extra if f.endswith(".py")
    }, extra


def test_krita_runs_the_installed_plugin(installed):
    job, home, _, _ = installed
    t0 = time.monotonic()
    p = hostkit.run_in_root(KRITA, job)
    log = p.stdout + p.stderr
    (job / "krita.log").write_text(log)
    hostkit.log(f"kritarunner with the installed plug-in: {time.monotonic() - t0:.1f} s")
    assert p.returncode == 0 and "Failed to resolve" not in log, log[-4000:]
    r = json.loads((job / "selection" / "report.json").read_text())
    assert r["status"] == "success", r
    assert hostkit.max_diff(job / "selection" / "result.png", job / "in.png") > 20


def test_uninstall_leaves_the_profiles_as_they_were(installed):
    job, home, before, _ = installed
    p = hostkit.run_in_root(f"HOME=/job/home {PY} -m bokehkit uninstall-plugins", job)
    assert p.returncode == 0, p.stdout + p.stderr
    left = files(home) - before
    ours = [f for f in left if "bokehkit" in f]
    assert not ours, ours  # GIMP's and Krita's own files (pluginrc, …) may stay
    rc = home / ".config/kritarc"  # removed if the installer made it and nothing else is in it
    assert not rc.exists() or "enable_bokehkit_krita" not in rc.read_text()

#!/usr/bin/env python3
"""Build the light engine: bokehkit frozen by PyInstaller into one folder that runs on a
machine with no Python. It holds the classical renderer, image I/O, the onnxruntime models
(ISNet subject detection, Real-ESRGAN as ONNX), the Qt dialog (PyQt6) and the plug-ins'
files (so `bokehkit-engine install-plugins` works from it), and NO torch: the build venv
never gets torch, PyInstaller is told to exclude it, and the bundle is checked for it.

    python3 installer/build_light_engine.py [--out DIR] [--cache DIR] [--force]

The build venv (requirements/core.txt + PyQt6 + PyInstaller, pinned below) and the result
are kept in a cache folder keyed by a hash of the sources, so a second run with unchanged
sources is immediate. Prints the folder, its size and the start-up time.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NAME = "bokehkit-engine"
PYINSTALLER = ["pyinstaller==6.22.3", "pyinstaller-hooks-contrib==2026.9", "altgraph==0.17.5"]
QT = ["PyQt6==6.11.0", "PyQt6-Qt6==6.11.2", "PyQt6-sip==13.13.0"]  # as requirements/gui.txt
# Never in the bundle: the learned full engine and what only development needs.
EXCLUDES = ["torch", "torchvision", "safetensors", "onnxscript", "onnx", "PyQt5", "tkinter",
            "pytest", "skimage", "matplotlib", "IPython", "ncnn", "ray"]  # fmt: skip
FORBIDDEN = ("torch", "libtorch", "libc10", "PyQt5")  # names that must not appear in the bundle
ENTRY = """\
import multiprocessing
import sys

from bokehkit.commands import main

if __name__ == "__main__":
    multiprocessing.freeze_support()
    sys.exit(main())
"""


def default_cache() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("BOKEHKIT_BUILD_CACHE", os.path.join(base, "bokehkit", "build")))


def source_hash() -> str:
    """Everything that goes into the bundle or decides how it is built."""
    h = hashlib.sha256()
    h.update(sys.version.encode())
    paths = [Path(__file__), REPO / "requirements" / "core.txt", REPO / "pyproject.toml"]
    for d in ("core/bokehkit", "plugin/bokehkit_plugin", "gimp", "krita"):
        paths += sorted(
            p for p in (REPO / d).rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
        )  # fmt: skip
    for p in paths:
        h.update(str(p.relative_to(REPO)).encode())
        h.update(p.read_bytes())
    return h.hexdigest()[:16]


def run(cmd, **kw) -> None:
    print("+", " ".join(map(str, cmd)), flush=True)
    subprocess.run(cmd, check=True, **kw)


def build_venv(cache: Path) -> Path:
    """A venv of its own: only the light engine's pins, PyQt6 and PyInstaller (no torch)."""
    venv = cache / "venv"
    py = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    stamp = venv / "bokehkit-build.json"
    want = {"core": (REPO / "requirements/core.txt").read_text(), "extra": PYINSTALLER + QT}
    if py.exists() and stamp.exists() and json.loads(stamp.read_text()) == want:
        return py
    shutil.rmtree(venv, ignore_errors=True)
    run([sys.executable, "-m", "venv", str(venv)])
    pip = [str(py), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    run([*pip, "-r", str(REPO / "requirements/core.txt"), *QT, *PYINSTALLER])
    stamp.write_text(json.dumps(want))
    return py


def bundle_size(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def check_no_torch(folder: Path) -> None:
    bad = [
        str(p.relative_to(folder)) for p in folder.rglob("*")
        if any(p.name == f or p.name.startswith((f + ".", f + "-", f + "_")) for f in FORBIDDEN)
    ]  # fmt: skip
    if bad:
        raise SystemExit(f"the light engine must not contain torch/PyQt5, found: {bad[:10]}")


def startup_seconds(exe: Path, runs: int = 3) -> float:
    """Best of a few `--version` runs (the cold first run is printed separately)."""
    best = float("inf")
    for _ in range(runs):
        t0 = time.monotonic()
        subprocess.run([str(exe), "--version"], check=True, capture_output=True)
        best = min(best, time.monotonic() - t0)
    return best


def build(out: Path | None = None, cache: Path | None = None, force: bool = False) -> Path:
    """The frozen engine's folder (built, or reused from the cache); returns its executable."""
    cache = cache or default_cache()
    key = source_hash()
    target = cache / f"light-engine-{key}" / NAME
    exe = target / (NAME + (".exe" if os.name == "nt" else ""))
    if force:
        shutil.rmtree(target.parent, ignore_errors=True)
    if not exe.exists():
        py = build_venv(cache)
        work = cache / f"work-{key}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        (work / "entry.py").write_text(ENTRY)
        sep = os.pathsep
        cmd = [
            str(py), "-m", "PyInstaller", "--noconfirm", "--clean", "--onedir",
            "--name", NAME, "--distpath", str(work / "dist"), "--workpath", str(work / "build"),
            "--specpath", str(work), "--paths", str(REPO / "core"),
            "--paths", str(REPO / "plugin"),
            "--collect-submodules", "bokehkit",
            "--add-data", f"{REPO / 'core/bokehkit/data'}{sep}bokehkit/data",
            "--collect-submodules", "bokehkit_plugin",
            "--hidden-import", "PyQt6.QtWidgets", "--hidden-import", "PyQt6.QtGui",
            "--add-data", f"{REPO / 'gimp'}{sep}bokehkit_sources/gimp",
            "--add-data", f"{REPO / 'krita'}{sep}bokehkit_sources/krita",
            "--add-data", f"{REPO / 'plugin'}{sep}bokehkit_sources/plugin",
        ]  # fmt: skip
        for f in sorted((REPO / "core/bokehkit/store").glob("*.json")):
            cmd += ["--add-data", f"{f}{sep}bokehkit/store"]
        for m in EXCLUDES:
            cmd += ["--exclude-module", m]
        t0 = time.monotonic()
        run([*cmd, str(work / "entry.py")], cwd=work)
        print(f"PyInstaller: {time.monotonic() - t0:.0f} s", flush=True)
        built = work / "dist" / NAME
        for p in built.rglob("__pycache__"):  # the plug-ins' files, as in the repository
            shutil.rmtree(p, ignore_errors=True)
        check_no_torch(built)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, target)  # atomically into the cache: never half a bundle there
        shutil.rmtree(work, ignore_errors=True)
    check_no_torch(target)
    if out is not None:
        dest = Path(out) / NAME
        shutil.rmtree(dest, ignore_errors=True)
        shutil.copytree(target, dest, symlinks=True)
        exe = dest / exe.name
    return exe


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, help="copy the folder here (default: stay in the cache)")
    ap.add_argument("--cache", type=Path, help=f"build cache (default {default_cache()})")
    ap.add_argument("--force", action="store_true", help="rebuild even if cached")
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    exe = build(args.out, args.cache, args.force)
    built_in = time.monotonic() - t0
    folder = exe.parent
    t1 = time.monotonic()
    subprocess.run([str(exe), "--version"], check=True, capture_output=True)
    cold = time.monotonic() - t1
    print(f"light engine: {exe}")
    print(f"  size: {bundle_size(folder) / 1e6:.0f} MB in {sum(1 for _ in folder.rglob('*'))} "
          f"files (no torch: checked)")  # fmt: skip
    print(f"  start-up (`--version`): first {cold:.2f} s, then {startup_seconds(exe):.2f} s")
    print(f"  build (or cache) time: {built_in:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())

#!/usr/bin/env python3
"""Set up the bokehkit engine in a virtual environment of its own, from the repository's
pinned requirement files, for one backend, then put the plug-ins into GIMP and Krita with
that engine (`bokehkit install-plugins`). Standard library only.

    python3 installer/setup_engine.py                    # CPU (the default)
    python3 installer/setup_engine.py --backend cuda     # NVIDIA: torch's CUDA build
    python3 installer/setup_engine.py --backend mps      # Apple silicon
    python3 installer/setup_engine.py --backend light    # no torch at all (classical + ONNX)

Backends and what they install (requirements/):

    light  core.txt + gui.txt                       no torch
    cpu    light + torch-cpu.txt, torch "+cpu"       from PyTorch's CPU index: no CUDA, ever
    cuda   cuda.txt (torch "+cu128")                 several GB of nvidia-* wheels
    mps    mps.txt (macOS arm64 only)

Nobody gets a CUDA build by accident: only `--backend cuda` names one, the CPU backend pins
the "+cpu" local version (which exists only on the CPU index), and after installing, the
venv's torch is asked what it is (`torch.version.cuda` must be None for cpu, set for cuda).
"""

from __future__ import annotations

import argparse
import os
import re
import shlex
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
REQ = REPO / "requirements"
sys.path[:0] = [str(REPO / "core"), str(REPO / "plugin")]  # stdlib-only parts, by path

from bokehkit_plugin.install import Host  # noqa: E402

TORCH = "2.13.0"
CPU_INDEX = "https://download.pytorch.org/whl/cpu"
BACKENDS = ("cpu", "cuda", "mps", "light")
CHECKS = {
    "light": "import importlib.util as u; assert u.find_spec('torch') is None, 'torch is here'",
    "cpu": "import torch; assert torch.version.cuda is None, torch.__version__; "
    "print('torch', torch.__version__, 'CPU')",
    "cuda": "import torch; assert torch.version.cuda, torch.__version__; "
    "print('torch', torch.__version__, 'CUDA', torch.version.cuda, "
    "'GPU available' if torch.cuda.is_available() else 'no GPU visible now')",
    "mps": "import torch; print('torch', torch.__version__, 'MPS available:', "
    "torch.backends.mps.is_available())",
}


def default_venv() -> Path:
    return Host().data_dir() / "engine-venv"


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def cuda_requirements(variant: str) -> Path:
    """requirements/cuda.txt for another CUDA build (cu126, cu130...): both the index and
    the local version are rewritten, into a temporary file."""
    text = (REQ / "cuda.txt").read_text()
    if variant == "cu128":
        return REQ / "cuda.txt"
    if not re.fullmatch(r"cu\d{3}", variant):
        raise SystemExit(f"--cuda wants e.g. cu126 or cu130, got {variant!r}")
    text = text.replace("whl/cu128", f"whl/{variant}").replace("+cu128", f"+{variant}")
    text = text.replace("-r core.txt", f"-r {REQ / 'core.txt'}")
    text = text.replace("-r gui.txt", f"-r {REQ / 'gui.txt'}")
    f = tempfile.NamedTemporaryFile("w", suffix=f"-{variant}.txt", delete=False)
    f.write(text)
    f.close()
    return Path(f.name)


def plan(backend: str, venv: Path, python: str, cuda: str, editable: bool) -> list[list[str]]:
    """The commands, in order."""
    if backend == "mps" and sys.platform != "darwin":
        raise SystemExit("--backend mps is for macOS on Apple silicon; use cpu or cuda here")
    if backend == "cuda" and sys.platform == "darwin":
        raise SystemExit("there is no CUDA on macOS: use --backend mps (Apple silicon) or cpu")
    py = str(venv_python(venv))
    pip = [py, "-m", "pip", "install", "--disable-pip-version-check"]
    cmds = [[python, "-m", "venv", str(venv)]]
    light = ["-r", str(REQ / "core.txt"), "-r", str(REQ / "gui.txt")]
    if backend == "light":
        cmds.append([*pip, *light])
    elif backend == "cpu":
        cpu_torch = f"torch=={TORCH}" if sys.platform == "darwin" else f"torch=={TORCH}+cpu"
        cmds.append([*pip, "--extra-index-url", CPU_INDEX, cpu_torch])  # before anything asks
        cmds.append([*pip, *light, "-r", str(REQ / "torch-cpu.txt")])
    elif backend == "cuda":
        cmds.append([*pip, "-r", str(cuda_requirements(cuda))])
    else:
        cmds.append([*pip, "-r", str(REQ / "mps.txt")])
    cmds.append([*pip, "--no-deps", *(["-e"] if editable else []), str(REPO)])
    cmds.append([py, "-c", CHECKS[backend]])
    return cmds


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backend", choices=BACKENDS, default="cpu", help="default: cpu")
    ap.add_argument("--venv", type=Path, default=None, help=f"default: {default_venv()}")
    ap.add_argument("--python", default=sys.executable, help="the Python to make it with")
    ap.add_argument("--cuda", default="cu128", help="the CUDA build for --backend cuda")
    ap.add_argument("--editable", action="store_true", help="pip install -e the checkout")
    ap.add_argument("--no-plugins", action="store_true", help="don't run install-plugins")
    ap.add_argument("--dry-run", action="store_true", help="print the commands only")
    args = ap.parse_args(argv)
    venv = (args.venv or default_venv()).absolute()
    cmds = plan(args.backend, venv, args.python, args.cuda, args.editable)
    if not args.no_plugins:
        cmds.append([str(venv_python(venv)), "-m", "bokehkit", "install-plugins"])
    for cmd in cmds:
        print("+", shlex.join(cmd), flush=True)
        if not args.dry_run:
            env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
            if subprocess.run(cmd, env=env).returncode != 0:
                print(f"setup_engine: failed: {shlex.join(cmd)}", file=sys.stderr)
                return 1
    if not args.dry_run:
        print(f"The engine ({args.backend}) is in {venv}; `{venv_python(venv)} -m bokehkit "
              "demo` renders the sample.")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())

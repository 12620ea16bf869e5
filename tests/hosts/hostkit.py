"""Helpers for the host tests (tests/test_hosts_*.py): the Debian roots with GIMP 3 and
Krita (hostroot.sh, one per suite), the host engine inside them (run-with-engine.sh), the
CLI reference render and image comparison. See tests/hosts/README.md."""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
HOSTROOT = HERE / "hostroot.sh"
RUN_WITH_ENGINE = HERE / "run-with-engine.sh"
VENV = Path(os.environ.get("BOKEHKIT_VENV", REPO / ".venv"))
SAMPLE = REPO / "core" / "bokehkit" / "data" / "sample" / "sample.jpg"
PLUGIN_PKG = REPO / "plugin" / "bokehkit_plugin"
SKIP = 77


@dataclass(frozen=True)
class Host:
    """One editor version the plug-ins are tested in, and the Debian suite that has it."""

    program: str  # "gimp" or "krita"
    version: str  # major.minor, as the package's version starts
    suite: str  # hostroot.sh --suite

    @property
    def id(self) -> str:  # in the test ids: test_gimp_...[gimp3.2-layermask]
        return f"{self.program}{self.version}"

    @property
    def qt(self) -> str:  # Krita's Qt binding
        return "PyQt6" if self.version.startswith("6") else "PyQt5"


GIMPS = (Host("gimp", "3.0", "trixie"), Host("gimp", "3.2", "sid"))
KRITAS = (
    Host("krita", "5.2", "trixie"),
    Host("krita", "5.3", "sid"),
    Host("krita", "6.0", "experimental"),
)
#: The host the tests that need just one use (the newest stable pair).
DEFAULT_SUITE = "trixie"


@functools.cache
def _root_versions(suite: str) -> dict[str, str]:
    p = subprocess.run([str(HOSTROOT), "--suite", suite, "versions"], capture_output=True,
                       text=True)  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    return dict(line.split(" ", 1) for line in p.stdout.splitlines() if " " in line)


def require_hostroot(host: Host | None = None) -> None:
    """Skip (with hostroot.sh's own reason) where the root cannot be had; never pass. With
    `host`: its suite's root, which must hold that version (the test id says it)."""
    if os.geteuid() != 0:
        pytest.skip("hostroot: unavailable: not root (needs chroot and mount)")
    suite = host.suite if host is not None else DEFAULT_SUITE
    p = subprocess.run([str(HOSTROOT), "--suite", suite, "setup"], capture_output=True, text=True)
    if p.returncode == SKIP:
        pytest.skip(p.stdout.strip() or "hostroot: unavailable")
    assert p.returncode == 0, f"hostroot.sh --suite {suite} setup failed:\n{p.stderr[-3000:]}"
    if not (VENV / "bin" / "python").exists():
        pytest.skip(f"no engine venv at {VENV} (run scripts/setup.sh)")
    if host is not None:
        found = _root_versions(suite).get(host.program, "").split(":")[-1]
        assert found.startswith(host.version + "."), (
            f"the {suite} root has {host.program} {found or 'nothing'}, not {host.version}"
        )


def run_in_root(
    command: str, job: Path, timeout: float = 300, engine: bool = True, host: Host | None = None
):
    """bash -c COMMAND inside the root (the host's suite, else trixie), JOB mounted at /job;
    with `engine`, the host's engine venv is usable there and BOKEHKIT_ENGINE set. Skips on
    exit code 77."""
    script = RUN_WITH_ENGINE if engine else HOSTROOT
    args = [str(script)] if engine else [str(script), "run"]
    suite = host.suite if host is not None else DEFAULT_SUITE
    env = dict(os.environ, JOB_DIR=str(job), HOSTROOT_SUITE=suite)
    p = subprocess.run(
        [*args, "bash", "-c", command],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    if p.returncode == SKIP and "hostroot: unavailable" in p.stdout:
        pytest.skip(p.stdout.strip())
    return p


def make_job(tmp: Path) -> Path:
    """A job folder with in.png (the bundled sample as an 8-bit RGB PNG) and a HOME."""
    tmp.mkdir(parents=True, exist_ok=True)
    Image.open(SAMPLE).convert("RGB").save(tmp / "in.png")
    (tmp / "home").mkdir(exist_ok=True)
    return tmp


def copy_plugin_package(dest: Path) -> None:
    """Vendor plugin/bokehkit_plugin into a plug-in folder, as the installer does."""
    shutil.copytree(
        PLUGIN_PKG, dest / "bokehkit_plugin", ignore=shutil.ignore_patterns("__pycache__")
    )


def cli_flags(params: dict) -> list[str]:
    """`bokehkit render` options for the plug-ins' params (schema names)."""
    flags = [
        "--aperture", str(params["aperture"]),
        "--blades", str(params["blades"]),
        "--blade-rotation", str(params["blade_rotation"]),
        "--highlights", str(params["highlights"]),
        "--grain", str(params["grain"]),
        "--sr", str(params["sr_factor"]),
        "--engine", params["engine"],
    ]  # fmt: skip
    if params["focal_length"]:
        flags += ["--focal-length", str(params["focal_length"])]
    if params.get("focus_source") == "range":
        flags += ["--focus-range", f"{params['focus_near']},{params['focus_far']}"]
    if params.get("output") == "depth":
        flags += ["--depth-view"]
    return flags


def cli_render(src: Path, out: Path, params: dict, mask: Path | None, *extra: str) -> None:
    """The reference: the engine's own CLI on the host, same input, mask and params (and
    `extra` flags: --depth FILE, --blur-mask FILE, --focus-point X,Y...)."""
    cmd = [str(VENV / "bin" / "python"), "-m", "bokehkit", "render", str(src), "-o", str(out)]
    cmd += cli_flags(params) + ["--quiet", *extra]
    if mask is not None:
        cmd += ["--focus-mask", str(mask)]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    p = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 0, f"bokehkit render failed: {p.stderr[-2000:]}"


def raw_mask_to_png(raw: Path, size: tuple[int, int], png: Path) -> None:
    w, h = size
    data = np.frombuffer(raw.read_bytes(), np.uint8)
    assert data.size == w * h, f"{raw}: {data.size} bytes for {w}×{h}"
    Image.fromarray(data.reshape(h, w), "L").save(png)


def rgb8(path: Path) -> np.ndarray:
    im = Image.open(path)
    assert im.mode in ("RGB", "RGBA"), f"{path}: mode {im.mode}"
    a = np.asarray(im)
    if a.shape[2] == 4:
        assert a[..., 3].min() == 255, f"{path}: result is not opaque"
    return a[..., :3].astype(np.int16)


def max_diff(a: Path, b: Path) -> int:
    x, y = rgb8(a), rgb8(b)
    assert x.shape == y.shape, f"sizes differ: {x.shape} vs {y.shape}"
    return int(np.abs(x - y).max())


def log(msg: str) -> None:
    print(msg, file=sys.stderr)


# ------------------------------------------------------------------ screenshots
SCREENSHOTS = REPO / "docs" / "img"
XVFB = 'xvfb-run -a -s "-screen 0 1600x1000x24"'


def check_screenshot(path: Path, min_size=(900, 600)) -> np.ndarray:
    """A real screen: big enough, not blank, many colours (widgets and a photo drawn)."""
    assert path.exists(), f"no screenshot {path}"
    a = np.asarray(Image.open(path).convert("RGB"))
    h, w = a.shape[:2]
    assert w >= min_size[0] and h >= min_size[1], f"{path.name}: only {w}×{h}"
    assert float(a.std()) > 20, f"{path.name} is (nearly) blank"
    colours = len(np.unique(a.reshape(-1, 3)[::7], axis=0))
    assert colours > 2000, f"{path.name}: only {colours} colours, nothing drawn?"
    return a


def keep_screenshot(path: Path, name: str) -> None:
    """BOKEHKIT_UPDATE_SCREENSHOTS=1 copies a checked screenshot into docs/img/."""
    if os.environ.get("BOKEHKIT_UPDATE_SCREENSHOTS") == "1":
        shutil.copyfile(path, SCREENSHOTS / name)
        log(f"updated {SCREENSHOTS / name}")

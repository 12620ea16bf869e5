"""Scale-out figures (issue 13): photos per minute of `bokehkit batch` with 1 and 2 local
workers and on a local Ray cluster, and what the remote path (TLS on loopback, files through
the connection) costs against a local render of the same 12 MP photo.

    .venv/bin/python benchmarks/scale_out.py [--photos 8] [--batch-mp 2] [--remote-mp 12]

Photos are made here (a synthetic scene with a depth sidecar, JPEG), and rendered without
models (--depth-model none --no-auto-subject), so the figures depend on the machine only.
Each figure is the wall time of the whole command, start-up included, as a user sees it.
"""

from __future__ import annotations

import argparse
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

ENGINE = [sys.executable, "-m", "bokehkit"]
OPTIONS = ["--depth-model", "none", "--no-auto-subject", "-f", "1.8", "-q"]
TOKEN = "benchmark-token-123"


def make_photo(path: Path, megapixels: float, seed: int) -> None:
    """A scene with a near subject, mid shapes and far lights, and its depth sidecar."""
    w = int(round((megapixels * 1e6 * 4 / 3) ** 0.5))
    h = int(round(w * 3 / 4))
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w].astype(np.float32)
    depth = 0.2 + 0.6 * (y / h)  # far at the top, near at the bottom (disparity: bright near)
    rgb = np.stack([0.3 + 0.4 * x / w, 0.4 + 0.2 * depth, 0.6 - 0.3 * y / h], -1)
    for _ in range(12):
        cx, cy, r = rng.random() * w, rng.random() * h, (0.03 + 0.1 * rng.random()) * h
        disc = (x - cx) ** 2 + (y - cy) ** 2 < r * r
        rgb[disc] = rng.random(3)
        depth[disc] = rng.random()
    rgb += rng.normal(0, 0.02, rgb.shape)
    Image.fromarray((np.clip(rgb, 0, 1) * 255).astype(np.uint8)).save(path, quality=92)
    Image.fromarray((depth * 255).astype(np.uint8)).save(path.with_name(f"{path.stem}.depth.png"))


def timed(cmd: list, env: dict) -> float:
    started = time.perf_counter()
    subprocess.run([*map(str, cmd)], env=env, check=True, capture_output=True)
    return time.perf_counter() - started


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--photos", type=int, default=8, help="photos in the batch (default 8)")
    ap.add_argument("--batch-mp", type=float, default=2.0, help="their size in MP (default 2)")
    ap.add_argument("--remote-mp", type=float, default=12.0, help="remote vs local (12 MP)")
    ap.add_argument("--no-ray", action="store_true", help="skip the Ray figure")
    a = ap.parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="bokehkit-scale-"))
    repo = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(repo / "core"), "BOKEHKIT_MODELS": str(root / "m")}
    env["BOKEHKIT_TLS_DIR"] = str(root / "tls")
    cpu = platform.processor() or platform.machine()
    when = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
    print(f"# {platform.node()}: {os.cpu_count()} cores, {cpu}, Python "
          f"{platform.python_version()}, {when}")  # fmt: skip
    try:
        photos = root / "photos"
        photos.mkdir()
        for i in range(a.photos):
            make_photo(photos / f"photo{i:02d}.jpg", a.batch_mp, i)
        print(f"\n## batch: {a.photos} photos of {a.batch_mp:g} MP\n")
        print("| workers | seconds | photos per minute |\n|---|---|---|")
        runs = [("1 local", ["--jobs", "1"]), ("2 local", ["--jobs", "2"])]
        if not a.no_ray:
            ray_tmp = tempfile.mkdtemp(prefix="bkray", dir="/tmp")
            env_ray = {**env, "RAY_TMPDIR": ray_tmp, "RAY_ADDRESS": ""}
            runs.append(("Ray, 2 workers (local cluster, started for the run)",
                         ["--ray", "auto", "--jobs", "2"]))  # fmt: skip
        for label, extra in runs:
            out = root / f"out-{len(extra)}-{extra[-1]}-{extra[0]}"
            run_env = env_ray if "--ray" in extra else env
            seconds = timed([*ENGINE, "batch", photos, "-o", out, *OPTIONS, *extra], run_env)
            print(f"| {label} | {seconds:.1f} | {a.photos / seconds * 60:.1f} |")
        if not a.no_ray:
            shutil.rmtree(ray_tmp, ignore_errors=True)

        big = root / "big"
        big.mkdir()
        make_photo(big / "photo.jpg", a.remote_mp, 99)
        depth = big / "photo.depth.png"
        (root / "token").write_text(TOKEN)
        server = subprocess.Popen(
            [*ENGINE, "serve", "--tcp", "127.0.0.1:0", "--tls", "--token-file", root / "token"],
            env={**env, "TMPDIR": str(root)}, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        try:
            lines = [server.stderr.readline() for _ in range(3)]
            fingerprint = lines[0].split()[-1]
            address = "127.0.0.1:" + lines[2].rsplit(":", 1)[1].strip()
            remote = ["--remote", address, "--token-file", root / "token",
                      "--fingerprint", fingerprint]  # fmt: skip
            small = root / "warm.jpg"
            make_photo(small, 0.05, 1)  # the engine's first render imports what it needs
            timed([*ENGINE, "render", small, "-o", root / "warm-out.jpg", *OPTIONS, *remote], env)
            render = [*ENGINE, "render", big / "photo.jpg", "--depth", depth, *OPTIONS]
            local_s = timed([*render, "-o", root / "local.jpg"], env)
            remote_s = timed([*render, "-o", root / "remote.jpg", *remote], env)
            same = (root / "local.jpg").read_bytes() == (root / "remote.jpg").read_bytes()
        finally:
            server.kill()
            server.wait()
        size = (big / "photo.jpg").stat().st_size / 2**20
        print(f"\n## remote path: one {a.remote_mp:g} MP JPEG ({size:.1f} MB), TLS on loopback\n")
        print("| path | seconds |\n|---|---|")
        print(f"| local render | {local_s:.1f} |")
        print(f"| remote render (upload, render, download) | {remote_s:.1f} |")
        overhead = remote_s - local_s
        print(f"\noverhead of the remote path: {overhead:+.1f} s ({overhead / local_s:+.0%});"
              f" same file: {'yes' if same else 'NO'}")  # fmt: skip
    finally:
        shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""MagicBokeh peak memory for a 4096² output on the CPU path: the whole render pipeline
(`render_file`: read, depth, focus, SR ×4 from a 1024² photo, the default mode's tiled
VAE encode, latent tiles, tiled decode, colour fix, write), at the REAL Stable Diffusion
2.1-base size with random weights.

Memory does not depend on how many tiles run, only on their size and on the whole-image
buffers, and compute does not depend on the values; so each stage runs the real network
ONCE per tile shape and repeats that output for the other tiles of the same shape (the
run takes a minute, not an hour). Everything else (every buffer of the pipeline and the
driver, at 4096²) is real. Peak = the process's high-water mark of resident memory
(VmHWM, restarted once the models are built), models included.

    python benchmarks/magicbokeh_memory.py [--size 1024] [--sr 4] [--precision bf16|fp32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from magicbokeh_speed import build_network
from PIL import Image

import bokehkit.magicbokeh.network as network_mod
import bokehkit.magicbokeh.stages as stages_mod
import bokehkit.render.magicbokeh as renderer_mod
from bokehkit.pipeline import RenderSettings, render_file

REPO = Path(__file__).resolve().parents[1]


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(field)


class OncePerShape:
    """Stages that run the real network once per (stage, input shape) and repeat it."""

    numpy_stages = True

    def __init__(self, stages):
        self.stages, self.cache, self.real_runs = stages, {}, 0

    def _run(self, name, fn, *args):
        key = (name, args[0].shape)
        if key not in self.cache:
            self.real_runs += 1
            self.cache[key] = fn(*args)
        return self.cache[key].copy()

    def encode(self, x):
        return self._run("encode", self.stages.encode, x)

    def denoise(self, z, d, f):
        return self._run("denoise", self.stages.denoise, z, d, f)

    def decode(self, x):
        return self._run("decode", self.stages.decode, x)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", type=int, default=1024, help="input side in pixels")
    ap.add_argument("--sr", type=int, default=4, choices=(1, 2, 4))
    ap.add_argument("--precision", default="bf16", choices=("fp32", "bf16"))
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    dtype = torch.bfloat16 if args.precision == "bf16" else torch.float32

    t0 = time.perf_counter()
    net = build_network().to(dtype).to(memory_format=torch.channels_last)
    after_models = _status_kib("VmRSS") / 2**20
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # restart the high-water mark: the fp32 build is not the render's
    print(f"real-size random network ({args.precision}) built in "
          f"{time.perf_counter() - t0:.0f} s; RSS with the models {after_models:.2f} GiB",
          flush=True)  # fmt: skip

    wrapped = {}
    torch_stages = stages_mod.TorchStages

    def stages_for(network):
        wrapped["s"] = OncePerShape(torch_stages(network))
        return wrapped["s"]

    # The pipeline's own renderer, with the in-memory network instead of a bundle.
    renderer_mod.model_status = lambda *a, **k: (True, "")
    network_mod.load_network = lambda *a, **k: net
    stages_mod.TorchStages = stages_for

    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        s = args.size
        yy, xx = np.mgrid[0:s, 0:s] / s
        img = np.stack([xx, yy, 1 - xx], -1) * 200 + rng.random((s, s, 3)) * 55
        Image.fromarray(img.astype(np.uint8)).save(Path(tmp) / "in.png")
        disparity = (1 - yy).astype(np.float32)  # near at the bottom
        np.save(Path(tmp) / "d.npy", disparity)
        settings = RenderSettings(
            engine="magicbokeh", depth_path=str(Path(tmp) / "d.npy"), sr_factor=args.sr,
            focus_point=(s / 2, s * 0.8), auto_subject=False,
            engine_options={"device": "cpu", "precision": args.precision},
        )  # fmt: skip
        t0 = time.perf_counter()
        render_file(Path(tmp) / "in.png", Path(tmp) / "out.png", settings)
        out = Image.open(Path(tmp) / "out.png")
        print(f"rendered {s}² ×{args.sr} → {out.size[0]}×{out.size[1]} in "
              f"{time.perf_counter() - t0:.0f} s ({wrapped['s'].real_runs} real stage runs, "
              f"{len(wrapped['s'].cache)} tile shapes)")  # fmt: skip
    peak = _status_kib("VmHWM") / 2**20
    print(f"peak resident memory (VmHWM, models included): {peak:.2f} GiB "
          f"(above the models: {peak - after_models:.2f} GiB)")  # fmt: skip
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

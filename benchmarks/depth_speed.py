"""Speed of Depth-Anything-V2 small/base/large on this CPU, torch and ONNX Runtime.

The networks are built at their real size with random weights (the compute does not depend
on the values; no checkpoint is needed) and run the way `estimate_depth` runs them: the photo
reduced to a short side of 518 px (sides multiples of 14), the network, its output
normalised and enlarged to the photo. The network's cost is nearly fixed per photo (its
input size depends only on the aspect ratio), so seconds per megapixel fall as photos grow;
both are printed: per photo, per photo megapixel, and per network-input megapixel.

    python benchmarks/depth_speed.py [--models small base large] [--megapixels 12]
                                     [--backends torch onnx] [--repeat 1] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "core"))

from bokehkit.depth_models import runtime, specs  # noqa: E402
from bokehkit.depth_models.checkpoint import build  # noqa: E402
from bokehkit.maps import resize_map  # noqa: E402


def _photo(megapixels: float) -> np.ndarray:
    """A 3:2 linear-light photo of random values (content does not change the cost)."""
    w = int(round((megapixels * 1e6 * 1.5) ** 0.5))
    h = int(round(w / 1.5))
    return np.random.default_rng(0).random((h, w, 3), dtype=np.float32)


def _timed(fn, repeat: int) -> tuple[float, object]:
    out, best = None, float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t)
    return best, out


def bench(model_id: str, photo: np.ndarray, backends: list[str], repeat: int) -> list[dict]:
    net = specs.net(model_id)
    model = build(net).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    h, w = photo.shape[:2]
    t_pre, x = _timed(lambda: runtime.prepare_input(photo), 1)
    net_mp = x.shape[2] * x.shape[3] / 1e6
    rows = []
    for backend in backends:
        extra = {}
        if backend == "torch":

            def run(x=x):
                return runtime.run_torch(model, x)

        else:
            tmp = Path(tempfile.mkdtemp(prefix="depth-bench-"))
            onnx_file = tmp / f"{model_id}.onnx"
            t0 = time.perf_counter()
            runtime.export_onnx(model, onnx_file)
            extra["export_s"] = round(time.perf_counter() - t0, 1)
            extra["onnx_mb"] = round(onnx_file.stat().st_size / 1e6, 1)
            t0 = time.perf_counter()
            runtime.onnx_session(onnx_file)
            extra["session_s"] = round(time.perf_counter() - t0, 1)

            def run(x=x, f=onnx_file):
                return runtime.run_onnx(f, x)

        first, out = _timed(run, 1)  # includes one-off allocations
        warm, out = _timed(run, repeat) if repeat > 0 else (first, out)
        t_post, _ = _timed(lambda out=out: resize_map(runtime.normalise_disparity(out[0]), w, h), 1)
        total = t_pre + warm + t_post
        rows.append(
            {
                "model": model_id,
                "backend": backend,
                "photo": f"{w}x{h}",
                "network_input": f"{x.shape[3]}x{x.shape[2]}",
                "params_M": round(sum(p.numel() for p in model.parameters()) / 1e6, 1),
                "first_s": round(first, 2),
                "network_s": round(warm, 2),
                "pre_post_s": round(t_pre + t_post, 2),
                "photo_s": round(total, 2),
                "s_per_photo_MP": round(total / (w * h / 1e6), 3),
                "s_per_network_MP": round(warm / net_mp, 2),
                **extra,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
        if backend == "onnx":
            runtime._sessions.clear()
            onnx_file.unlink(missing_ok=True)
            onnx_file.parent.rmdir()
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", nargs="+", default=["small", "base", "large"])
    ap.add_argument("--megapixels", type=float, default=12.0)
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    ap.add_argument("--repeat", type=int, default=1, help="warm runs after the first (best)")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    import onnxruntime
    import torch

    photo = _photo(args.megapixels)
    print(
        f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"torch {torch.__version__} ({torch.get_num_threads()} threads), "
        f"onnxruntime {onnxruntime.__version__}; random weights, real sizes",
        flush=True,
    )
    rows = []
    for m in args.models:
        model_id = m if m in specs.NETS else f"depth-anything-v2-{m}"
        rows += bench(model_id, photo, args.backends, args.repeat)
    print()
    print(f"{'model':26} {'backend':8} {'input':9} {'s/photo':>8} {'s/photo MP':>10} "
          f"{'s/net MP':>9}")  # fmt: skip
    for r in rows:
        print(
            f"{r['model']:26} {r['backend']:8} {r['network_input']:9} {r['photo_s']:8.2f} "
            f"{r['s_per_photo_MP']:10.3f} {r['s_per_network_MP']:9.2f}"
        )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

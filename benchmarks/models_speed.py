"""Speed of the models on this CPU, in seconds per megapixel of the photo.

ISNet (automatic subject): the network always sees 1024×1024, so its cost is nearly fixed
per photo; what grows with the photo is resizing it down and the matte back up. Reported
per photo size: the first call (includes loading the model), the median of warm calls, and
seconds per megapixel of the photo (warm median / MP). The model comes from the model store
(`bokehkit models install isnet`, or --store); nothing is downloaded here.

    python benchmarks/models_speed.py [--store DIR] [--sizes 0.26 12 24] [--repeat 3]
                                      [--overlay docs/img/isnet-astronaut.png] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "core"))

from bokehkit import subject  # noqa: E402
from bokehkit.colour import srgb_to_linear  # noqa: E402
from bokehkit.models import ModelStore  # noqa: E402


def _photo(megapixels: float) -> np.ndarray:
    """scikit-image's astronaut at the wanted size (3:2 above 1 MP), in linear light."""
    import skimage.data

    src = Image.fromarray(skimage.data.astronaut())
    if megapixels <= 0.3:
        im = src
    else:
        w = int(round((megapixels * 1e6 * 1.5) ** 0.5))
        im = src.resize((w, int(round(w / 1.5))), Image.BICUBIC)
    return srgb_to_linear(np.asarray(im, np.float32) / 255.0)


def bench_isnet(path: Path, sizes: list[float], repeat: int) -> list[dict]:
    rows = []
    for mp in sizes:
        linear = _photo(mp)
        h, w = linear.shape[:2]
        times = []
        for i in range(repeat + 1):
            subject._last = None  # the preview cache would make repeats free
            if i == 0 and mp == sizes[0]:
                subject._sessions.clear()  # first call: load the model too
            t = time.perf_counter()
            subject.subject_mask_linear(linear, path)
            times.append(time.perf_counter() - t)
        warm = statistics.median(times[1:])
        row = {
            "model": "isnet",
            "width": w,
            "height": h,
            "megapixels": round(w * h / 1e6, 3),
            "first_s": round(times[0], 3),
            "warm_median_s": round(warm, 3),
            "s_per_mp": round(warm / (w * h / 1e6), 3),
        }
        rows.append(row)
        print(
            f"isnet {w}×{h} ({row['megapixels']:.2f} MP): first {row['first_s']:.2f} s, "
            f"warm {warm:.2f} s → {row['s_per_mp']:.3f} s/MP",
            flush=True,
        )
    return rows


def save_overlay(path: Path, out: Path) -> None:
    """The astronaut with what ISNet leaves out tinted red, and the matte beside it."""
    import skimage.data

    rgb = skimage.data.astronaut()
    m = subject.subject_mask(rgb, path)[..., None]
    f = rgb / 255.0
    tint = np.array([0.9, 0.1, 0.1])
    dim = 0.45 * f + 0.4 * tint
    overlay = f * m + dim * (1 - m)
    matte = np.repeat(m, 3, axis=-1)
    panel = np.concatenate([overlay, np.ones((512, 8, 3)), matte], axis=1)
    img = Image.fromarray((np.clip(panel, 0, 1) * 255 + 0.5).astype(np.uint8))
    img = img.resize((img.width // 2, img.height // 2), Image.LANCZOS)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)
    print(f"wrote {out}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--store", help="model store (default: $BOKEHKIT_MODELS or the user's)")
    ap.add_argument("--sizes", type=float, nargs="+", default=[0.26, 12.0, 24.0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--overlay", type=Path, help="also write the astronaut overlay here")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    path = ModelStore(args.store).require("isnet")  # says how to install it if missing
    import onnxruntime

    info = {
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
        "python": platform.python_version(),
        "onnxruntime": onnxruntime.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    print(f"{info['machine']}; onnxruntime {info['onnxruntime']}", flush=True)
    rows = bench_isnet(path, args.sizes, args.repeat)
    if args.overlay:
        save_overlay(path, args.overlay)
    if args.json:
        args.json.write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

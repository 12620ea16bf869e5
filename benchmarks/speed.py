"""Speed and memory of the classical renderer, beside two references in the same run.

* ours: `ClassicalRenderer` on a 12 MP test scene (a depth ramp behind a sharp subject, with
  bright dots), at a largest blur radius of 16, 32 and 64 px;
* gather: a direct per-pixel gather (every pixel sums the neighbours whose disc covers it),
  the textbook reference; its cost per pixel does not depend on the image size, so it runs
  on a 256×256 crop and its megapixels per second are scaled from that;
* GEGL: GIMP 3's own `gegl:lens-blur` with the same radius map, in the Debian 13 root of
  tests/hosts/hostroot.sh (skipped with a note where that root cannot be had);
* peak memory of `bokehkit render` on a 24 MP JPEG with a 16-bit depth map, whole process.

    python benchmarks/speed.py [--radii 16 32 64] [--no-gegl] [--no-memory] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from gegl_reference import (
    HostRootUnavailable,
    gegl_lens_blur_seconds,
    make_test_scene,
)

from bokehkit.progress import Progress
from bokehkit.render.base import RenderJob
from bokehkit.render.classical import ClassicalRenderer

REPO = Path(__file__).resolve().parents[1]

WIDTH, HEIGHT = 4000, 3000
GATHER_CROP = 256


def time_ours(image: np.ndarray, radius: np.ndarray, repeat: int) -> float:
    job = RenderJob(image, -radius)  # the scene is all behind the focal plane
    best = float("inf")
    for _ in range(repeat):
        t = time.perf_counter()
        ClassicalRenderer().render(job, Progress())
        best = min(best, time.perf_counter() - t)
    return best


def gather_reference(image: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Per-pixel gather: q takes p's light when p's disc (radius r_p) covers q, weighted
    1/(π r_p²) with an anti-aliased rim, and the sum is normalised."""
    h, w = radius.shape
    r_max = int(np.ceil(radius.max()))
    pad = r_max + 1
    img_p = np.pad(image, ((pad, pad), (pad, pad), (0, 0)), mode="edge")
    rad_p = np.pad(radius, pad, mode="edge")
    area = np.pi * np.maximum(rad_p, 0.5) ** 2
    acc = np.zeros_like(image)
    wsum = np.zeros(radius.shape, np.float32)
    for dy in range(-r_max, r_max + 1):
        for dx in range(-r_max, r_max + 1):
            d = np.hypot(dx, dy)
            if d > r_max + 0.5:
                continue
            sl = (slice(pad + dy, pad + dy + h), slice(pad + dx, pad + dx + w))
            wgt = np.clip(rad_p[sl] - d + 0.5, 0.0, 1.0) / area[sl]
            acc += img_p[sl] * wgt[..., None]
            wsum += wgt
    return acc / np.maximum(wsum, 1e-8)[..., None]


def time_gather(image: np.ndarray, radius: np.ndarray) -> float:
    """Seconds per megapixel of the gather, measured on a crop of the background ramp."""
    y0, x0 = int(HEIGHT * 0.15), int(WIDTH * 0.6)
    crop = (slice(y0, y0 + GATHER_CROP), slice(x0, x0 + GATHER_CROP))
    t = time.perf_counter()
    gather_reference(image[crop], radius[crop])
    return (time.perf_counter() - t) / (GATHER_CROP * GATHER_CROP / 1e6)


def peak_memory_24mp() -> dict:
    """Run `bokehkit render` on a 24 MP photo in a child process; report its peak RSS."""
    from PIL import Image

    w, h = 6000, 4000
    image, radius = make_test_scene(w, h, max_radius=64.0, seed=1)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        srgb = np.clip(image, 0, 1) ** (1 / 2.2)
        Image.fromarray((srgb * 255).astype(np.uint8)).save(tmp / "photo.jpg", quality=92)
        del image, srgb
        disparity = 1.0 - radius / radius.max()  # near = bright; the subject is nearest
        Image.fromarray((disparity * 65535).astype(np.uint16)).save(tmp / "depth.png")
        args = [
            "render",
            str(tmp / "photo.jpg"),
            "--depth",
            str(tmp / "depth.png"),
            "--focus-disparity",
            "1.0",
            "--aperture",
            "1.4",
            "-o",
            str(tmp / "out.jpg"),
            "-q",
        ]
        # The child reports its own peak RSS, so nothing else run here can be counted.
        probe = (
            "import resource, sys; from bokehkit.commands import main; "
            "rc = main(sys.argv[1:]); "
            "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
            "sys.exit(rc)"
        )
        t = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-c", probe, *args],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        seconds = time.perf_counter() - t
        peak_kib = int(done.stderr.strip().splitlines()[-1])
    return {"megapixels": w * h / 1e6, "peak_rss_gib": peak_kib / 2**20, "seconds": seconds}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--radii", type=float, nargs="+", default=[16.0, 32.0, 64.0])
    ap.add_argument("--repeat", type=int, default=2, help="best of N for ours and GEGL")
    ap.add_argument("--no-gegl", action="store_true")
    ap.add_argument("--no-gather", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)

    mp = WIDTH * HEIGHT / 1e6
    print(
        f"# classical renderer speed, {WIDTH}×{HEIGHT} ({mp:.0f} MP), "
        f"{os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
        f"{time.strftime('%Y-%m-%d')}"
    )
    rows = []
    for r in args.radii:
        image, radius = make_test_scene(WIDTH, HEIGHT, max_radius=r)
        row = {"max_radius_px": r, "ours_s": time_ours(image, radius, args.repeat)}
        if not args.no_gather:
            row["gather_s_per_mp"] = time_gather(image, radius)
        if not args.no_gegl:
            try:
                res = gegl_lens_blur_seconds(image, radius, repeat=args.repeat)
                row["gegl_s"] = res["seconds"]
            except HostRootUnavailable as exc:
                print(f"note: GEGL skipped: {exc}")
        rows.append(row)
        line = f"R={r:4.0f} px  ours {row['ours_s']:6.2f} s = {mp / row['ours_s']:5.2f} MP/s"
        if "gather_s_per_mp" in row:
            line += f" | gather {1 / row['gather_s_per_mp']:7.4f} MP/s"
            line += f" (ours ×{row['gather_s_per_mp'] * mp / row['ours_s']:.0f})"
        if "gegl_s" in row:
            line += f" | gegl:lens-blur {row['gegl_s']:6.2f} s = {mp / row['gegl_s']:5.2f} MP/s"
            line += f" (ours ×{row['gegl_s'] / row['ours_s']:.2f} faster)"
        print(line, flush=True)
    result = {"width": WIDTH, "height": HEIGHT, "rows": rows}
    if not args.no_memory:
        mem = peak_memory_24mp()
        result["memory_24mp"] = mem
        print(
            f"24 MP render (bokehkit render, JPEG + 16-bit depth): peak RSS "
            f"{mem['peak_rss_gib']:.2f} GiB, {mem['seconds']:.1f} s"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

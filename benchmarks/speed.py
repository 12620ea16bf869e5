"""Speed and memory of the classical renderer, beside two references in the same run.

* ours: `ClassicalRenderer` on a 12 MP test scene (a depth ramp behind a sharp subject, with
  bright dots), at a largest blur radius of 16, 32 and 64 px;
* gather: a direct per-pixel gather (every pixel sums the neighbours whose disc covers it),
  the textbook reference; its cost per pixel does not depend on the image size, so it runs
  on a 256×256 crop and its megapixels per second are scaled from that;
* GEGL: GIMP 3's own `gegl:lens-blur` with the same radius map, in the Debian 13 root of
  tests/hosts/hostroot.sh (skipped with a note where that root cannot be had);
* cost against size: ours at 3, 12, 24 and 48 MP (one radius), seconds per megapixel;
* peak memory of `bokehkit render` on a 24 MP and a 48 MP JPEG with a 16-bit depth map,
  whole process;
* the preview as the plug-ins get it: a 24 MP layer, the real engine through the plug-ins'
  `EngineClient`, one slider move after another (the engine keeps the layer between
  previews), and a burst of moves (the newest wins, the others are dropped).

    python benchmarks/speed.py [--radii 16 32 64 128] [--sizes 3 12 24 48] [--no-gegl]
                               [--no-memory] [--no-preview] [--json FILE]
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

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(1, str(REPO / "plugin"))

from benchmarks.gegl_reference import (  # noqa: E402
    HostRootUnavailable,
    gegl_lens_blur_seconds,
    make_test_scene,
)
from bokehkit.progress import Progress  # noqa: E402
from bokehkit.renderers.base import RenderJob  # noqa: E402
from bokehkit.renderers.classical import ClassicalRenderer  # noqa: E402

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


def time_sizes(megapixels: list[float], max_radius: float, repeat: int) -> list[dict]:
    """Ours at several image sizes (4:3), one largest radius: is the cost linear?"""
    rows = []
    for mp in megapixels:
        w = int(round((mp * 1e6 * 4 / 3) ** 0.5))
        h = int(round(w * 3 / 4))
        image, radius = make_test_scene(w, h, max_radius=max_radius)
        seconds = time_ours(image, radius, repeat)
        del image, radius
        rows.append({"megapixels": w * h / 1e6, "max_radius_px": max_radius, "ours_s": seconds})
    return rows


def peak_memory(w: int = 6000, h: int = 4000) -> dict:
    """Run `bokehkit render` on a w×h photo in a child process; report its peak RSS."""
    from PIL import Image

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
            "import resource, sys; from bokehkit.cli import main; rc = main(sys.argv[1:]); "
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


def preview_latency(moves: int = 12, burst: int = 6) -> dict:
    """Slider moves on a 24 MP layer, through the engine protocol as the plug-ins use it:
    the first preview (the layer is sent), then `moves` apertures one after the other
    (milliseconds each), then `burst` moves 40 ms apart while previews are in flight
    (milliseconds from the last move to its preview; how many previews were dropped)."""
    import threading

    from bokehkit_plugin.client import Cancelled, EngineClient
    from bokehkit_plugin.rawbuffer import RawImage

    w, h = 6000, 4000
    image, _ = make_test_scene(w, h, max_radius=16.0, seed=2)
    codes = (np.clip(image, 0, 1) ** (1 / 2.2) * 255).astype(np.uint8)
    del image
    rgba = np.dstack([codes, np.full((h, w), 255, np.uint8)])
    layer = RawImage(w, h, rgba.tobytes(), "RGBA", "RGBA", "uint8", "srgb")
    del codes, rgba
    params = {"focus_source": "point", "focus_x": 0.3, "focus_y": 0.55, "aperture": 2.0}
    env = {"PYTHONPATH": str(REPO / "core")}
    with (
        tempfile.TemporaryDirectory() as jobs,
        EngineClient([sys.executable, "-m", "bokehkit"], env, jobs) as client,
    ):
        client.ping()

        def preview(aperture: float):
            return client.render(layer, dict(params, aperture=aperture), preview=True)

        t = time.perf_counter()
        preview(2.0)
        first_ms = (time.perf_counter() - t) * 1e3
        stops = [1.4, 1.6, 1.8, 2.0, 2.2, 2.5, 2.8, 3.2, 3.5, 4.0, 4.5, 5.0]
        each = []
        for i in range(moves):
            t = time.perf_counter()
            preview(stops[i % len(stops)])
            each.append((time.perf_counter() - t) * 1e3)
        outcome: list = [None] * burst
        threads = []
        for i in range(burst):

            def run(i=i):
                try:
                    preview(stops[i])
                    outcome[i] = time.perf_counter()
                except Cancelled:
                    outcome[i] = "dropped"

            threads.append(threading.Thread(target=run))
            last_move = time.perf_counter()
            threads[-1].start()
            time.sleep(0.04)
        for thread in threads:
            thread.join()
    shown = outcome[-1]
    return {
        "layer": f"{w}×{h}",
        "first_ms": first_ms,
        "median_ms": float(np.median(each)),
        "worst_ms": float(np.max(each)),
        "burst_last_ms": (shown - last_move) * 1e3 if isinstance(shown, float) else None,
        "burst_dropped": sum(o == "dropped" for o in outcome),
        "burst": burst,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--radii", type=float, nargs="+", default=[16.0, 32.0, 64.0, 128.0])
    ap.add_argument("--sizes", type=float, nargs="*", default=[3.0, 12.0, 24.0, 48.0],
                    help="megapixels of the size rows (at --size-radius)")  # fmt: skip
    ap.add_argument("--size-radius", type=float, default=32.0)
    ap.add_argument("--repeat", type=int, default=2, help="best of N for ours and GEGL")
    ap.add_argument("--no-gegl", action="store_true")
    ap.add_argument("--no-gather", action="store_true")
    ap.add_argument("--no-memory", action="store_true")
    ap.add_argument("--no-preview", action="store_true")
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
    if args.sizes:
        result["sizes"] = time_sizes(args.sizes, args.size_radius, args.repeat)
        for row in result["sizes"]:
            print(
                f"{row['megapixels']:5.1f} MP, R={row['max_radius_px']:.0f} px: ours "
                f"{row['ours_s']:6.2f} s = {row['ours_s'] / row['megapixels']:.3f} s/MP",
                flush=True,
            )
    if not args.no_memory:
        for name, (w, h) in (("24mp", (6000, 4000)), ("48mp", (8000, 6000))):
            mem = peak_memory(w, h)
            result[f"memory_{name}"] = mem
            print(
                f"{mem['megapixels']:.0f} MP render (bokehkit render, JPEG + 16-bit depth): "
                f"peak RSS {mem['peak_rss_gib']:.2f} GiB, {mem['seconds']:.1f} s",
                flush=True,
            )
    if not args.no_preview:
        pv = preview_latency()
        result["preview"] = pv
        burst = "not shown" if pv["burst_last_ms"] is None else f"{pv['burst_last_ms']:.0f} ms"
        print(
            f"preview of a {pv['layer']} layer (engine protocol): first {pv['first_ms']:.0f} ms; "
            f"slider moves: median {pv['median_ms']:.0f} ms, worst {pv['worst_ms']:.0f} ms; "
            f"burst of {pv['burst']} moves 40 ms apart: last shown after {burst}, "
            f"{pv['burst_dropped']} dropped"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

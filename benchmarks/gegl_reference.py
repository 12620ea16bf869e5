"""GIMP's own ``gegl:lens-blur`` as a speed (and look) reference, run from the host.

GEGL 0.4.62 runs in the Debian 13 root built by ``tests/hosts/hostroot.sh``; this module
writes the arrays into a job folder, runs ``benchmarks/gegl_lens_blur.py`` in the root
and reads the JSON and the result back.  Needs root (chroot); raises
:class:`HostRootUnavailable` where the root can't be had.

    from gegl_reference import gegl_lens_blur_seconds, make_test_scene
    image, radius = make_test_scene(4000, 3000, max_radius=64)
    res = gegl_lens_blur_seconds(image, radius)      # {"seconds": 7.1, "output": ..., ...}

CLI (12 MP, R = 16, 32, 64; builds the root first if needed, ~2-4 min):

    python benchmarks/gegl_reference.py [--radii 16 32 64] [--size 4000x3000]
        [--threads 0 1] [--repeat 1] [--crop-dir DIR] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
HOSTROOT_SH = REPO / "tests" / "hosts" / "hostroot.sh"
INNER_SCRIPT = Path(__file__).resolve().with_name("gegl_lens_blur.py")
SKIP_CODE = 77  # hostroot.sh: "hostroot: unavailable: <reason>"


class HostRootUnavailable(RuntimeError):
    """The Debian 13 root with GIMP/GEGL cannot be built or used on this machine."""


def hostroot_ready(setup: bool = True) -> None:
    """Make sure the root is there (building it if ``setup``), else raise HostRootUnavailable."""
    st = subprocess.run([str(HOSTROOT_SH), "status"], capture_output=True, text=True, check=False)
    if st.returncode == 0:
        return
    if not setup:
        raise HostRootUnavailable(st.stdout.strip() or st.stderr.strip())
    su = subprocess.run([str(HOSTROOT_SH), "setup"], capture_output=True, text=True, check=False)
    if su.returncode == SKIP_CODE:
        raise HostRootUnavailable(su.stdout.strip())
    if su.returncode != 0:
        raise RuntimeError(f"hostroot.sh setup failed ({su.returncode}):\n{su.stderr[-3000:]}")


def gegl_lens_blur_seconds(
    image_linear: np.ndarray,
    radius_px: np.ndarray,
    *,
    threads: int = 0,
    repeat: int = 1,
    highlight_factor: float = 0.0,
    highlight_threshold_low: float = 0.0,
    highlight_threshold_high: float = 1.0,
    want_output: bool = True,
    setup: bool = True,
    timeout: float = 3600.0,
) -> dict:
    """Time GEGL's ``gegl:lens-blur`` on ``image_linear`` (H×W×3 linear RGB) with a
    per-pixel radius map ``radius_px`` (H×W, pixels).

    Returns the JSON of the inner script ("seconds" = render time only, best of
    ``repeat``; "threads" = GEGL's thread count, ``threads=0`` keeps GEGL's default) plus
    "output" (float32 H×W×3, or None when ``want_output`` is false).
    Raises HostRootUnavailable when the root can't be had (not root, no network...).
    """
    image = np.ascontiguousarray(image_linear, dtype=np.float32)
    radius = np.ascontiguousarray(radius_px, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image_linear must be H×W×3, got {image.shape}")
    if radius.shape != image.shape[:2]:
        raise ValueError(f"radius_px must be {image.shape[:2]}, got {radius.shape}")
    if not (np.isfinite(radius).all() and radius.min() >= 0):
        raise ValueError("radius_px must be finite and >= 0")

    hostroot_ready(setup)
    job = Path(tempfile.mkdtemp(prefix="bokehkit-gegl-"))
    try:
        np.save(job / "image.npy", image)
        np.save(job / "radius.npy", radius)
        shutil.copy(INNER_SCRIPT, job / INNER_SCRIPT.name)  # independent of BOKEHKIT_SRC
        cmd = [
            str(HOSTROOT_SH),
            "run",
            "/usr/bin/python3",
            f"/job/{INNER_SCRIPT.name}",
            "--image",
            "/job/image.npy",
            "--radius",
            "/job/radius.npy",
            "--threads",
            str(threads),
            "--repeat",
            str(repeat),
            "--highlight-factor",
            str(highlight_factor),
            "--highlight-threshold-low",
            str(highlight_threshold_low),
            "--highlight-threshold-high",
            str(highlight_threshold_high),
        ]
        if want_output:
            cmd += ["--out", "/job/out.npy"]
        env = dict(os.environ, JOB_DIR=str(job), HOSTROOT_USER="root")
        p = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        if p.returncode == SKIP_CODE:
            raise HostRootUnavailable(p.stdout.strip())
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("{")]
        if p.returncode != 0 or not lines:
            raise RuntimeError(
                f"gegl:lens-blur run failed ({p.returncode}):\n"
                f"{p.stdout[-2000:]}\n{p.stderr[-3000:]}"
            )
        result = json.loads(lines[-1])
        result["output"] = np.load(job / "out.npy") if want_output else None
        return result
    finally:
        shutil.rmtree(job, ignore_errors=True)


def make_test_scene(
    width: int = 4000, height: int = 3000, max_radius: float = 64.0, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """A deterministic test scene: (linear RGB H×W×3, radius H×W px, max = max_radius).

    Image: coloured random texture (coarse blotches + fine grain) with small bright dots
    (linear value 4-16, so highlights show as bokeh discs): a row of 5 in the background
    above the subject (inside :data:`CROP`) and 40 at random places.  Radius: a depth-like
    ramp (far = top = max_radius, near = bottom = 0.35·max) with a sharp disc-shaped
    in-focus subject (radius 0) left of centre.
    """
    rng = np.random.default_rng(seed)
    h, w = height, width
    # coarse colour blotches: a small random grid, bilinearly upsampled
    gh, gw = max(2, h // 96), max(2, w // 96)
    grid = rng.uniform(0.02, 0.5, (gh, gw, 3)).astype(np.float32)
    yi = np.linspace(0, gh - 1, h, dtype=np.float32)
    xi = np.linspace(0, gw - 1, w, dtype=np.float32)
    y0 = np.minimum(yi.astype(np.int32), gh - 2)
    x0 = np.minimum(xi.astype(np.int32), gw - 2)
    fy = (yi - y0)[:, None, None]
    fx = (xi - x0)[None, :, None]
    top = grid[y0][:, x0] * (1 - fx) + grid[y0][:, x0 + 1] * fx
    bot = grid[y0 + 1][:, x0] * (1 - fx) + grid[y0 + 1][:, x0 + 1] * fx
    image = top * (1 - fy) + bot * fy
    del top, bot
    image *= rng.uniform(0.6, 1.4, (h, w, 1)).astype(np.float32)  # fine grain
    # bright dots (future bokeh balls)
    yy, xx = np.ogrid[:h, :w]
    dots = [(int(h * 0.2), int(w * (0.28 + 0.05 * i))) for i in range(5)]
    dots += [(int(rng.integers(0, h)), int(rng.integers(0, w))) for _ in range(40)]
    for cy, cx in dots:
        r = rng.uniform(1.5, 4.0)
        y1, y2, x1, x2 = max(0, cy - 5), min(h, cy + 6), max(0, cx - 5), min(w, cx + 6)
        disc = (yy[y1:y2] - cy) ** 2 + (xx[:, x1:x2] - cx) ** 2 <= r * r
        image[y1:y2, x1:x2][disc] = rng.uniform(4.0, 16.0) * rng.uniform(0.7, 1.0, 3)
    # radius: far-to-near ramp plus an in-focus disc subject
    ramp = np.linspace(1.0, 0.35, h, dtype=np.float32)[:, None]
    radius = np.broadcast_to(ramp * np.float32(max_radius), (h, w)).copy()
    sy, sx, sr = h * 0.55, w * 0.4, min(h, w) * 0.22
    radius[(yy - sy) ** 2 + (xx - sx) ** 2 <= sr * sr] = 0.0
    return image.astype(np.float32, copy=False), radius


# (rows, cols) as fractions of the image: background dots, ramp and the subject's top edge
CROP = (slice(0.15, 0.38), slice(0.25, 0.5))


def crop(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    return a[
        int(CROP[0].start * h) : int(CROP[0].stop * h),
        int(CROP[1].start * w) : int(CROP[1].stop * w),
    ]


def linear_to_srgb8(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    s = np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1 / 2.4) - 0.055)
    return (s * 255 + 0.5).astype(np.uint8)


def write_png(path: Path, rgb8: np.ndarray) -> None:
    """Minimal 8-bit RGB PNG writer (stdlib only)."""
    h, w, _ = rgb8.shape
    raw = b"".join(b"\x00" + rgb8[y].tobytes() for y in range(h))

    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    Path(path).write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(raw, 6))
        + chunk(b"IEND", b"")
    )


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="Time GIMP's gegl:lens-blur in the host root.")
    ap.add_argument("--size", default="4000x3000", help="WxH (default 12 MP)")
    ap.add_argument("--radii", type=float, nargs="+", default=[16, 32, 64])
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=[0],
        help="GEGL thread counts to try (0 = GEGL's default)",
    )
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--crop-dir", type=Path, help="save input/output crops (PNG) here")
    ap.add_argument("--json", type=Path, help="write all results here")
    args = ap.parse_args(argv)
    w, h = (int(v) for v in args.size.lower().split("x"))

    rows = []
    try:
        for R in args.radii:
            image, radius = make_test_scene(w, h, R)
            for t in args.threads:
                res = gegl_lens_blur_seconds(
                    image,
                    radius,
                    threads=t,
                    repeat=args.repeat,
                    want_output=args.crop_dir is not None,
                )
                out = res.pop("output")
                rows.append(res)
                print(
                    f"gegl:lens-blur {w}x{h} R={R:g}: {res['seconds']:.2f} s "
                    f"(threads={res['threads']}, all={[round(s, 2) for s in res['seconds_all']]})",
                    flush=True,
                )
                if out is not None:
                    args.crop_dir.mkdir(parents=True, exist_ok=True)
                    write_png(args.crop_dir / f"gegl_R{R:g}_in.png", linear_to_srgb8(crop(image)))
                    write_png(args.crop_dir / f"gegl_R{R:g}_out.png", linear_to_srgb8(crop(out)))
    except HostRootUnavailable as e:
        print(f"skipped: {e}", file=sys.stderr)
        return SKIP_CODE
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

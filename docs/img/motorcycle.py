"""Regenerate docs/img/motorcycle-before-after.jpg: the Middlebury 2014 Motorcycle scene
(left view, as scikit-image ships it) rendered with its ground-truth disparity as depth.

    .venv/bin/python docs/img/motorcycle.py [--aperture 1.4] [--keep DIR]

scikit-image (requirements/dev.txt) ships the data; nothing is downloaded and the dataset
files are not copied into the repository, only the rendered comparison.

Ground truth → metric depth with the calibration scikit-image documents for these
quarter-size images (focal length 994.978 px, baseline 193.001 mm, doffs 31.086 px):
z = f·B / (d + doffs), 2.1 m (front wheel) to 5.0 m (back wall). About 7 % of the pixels
have no ground truth (NaN): occlusions beside depth edges, where the scene is seen by one
camera only, and thin or shiny parts. Each is filled along its row with the farther of
its nearest valid neighbours left and right (occluded pixels belong to the background
by construction; a hole inside one surface gets that surface's value), then smoothed by
a 3×3 median among the filled pixels only.

Lens: the view is 741 px wide at f = 995 px, a 40.8° horizontal field of view, which is a
48 mm lens on a 36 mm-wide sensor (full frame).
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from bokehkit.pipeline import RenderSettings, render_file

ROOT = Path(__file__).resolve().parents[2]

FOCAL_PX, BASELINE_M, DOFFS_PX = 994.978, 0.193001, 31.086
SENSOR_MM = 36.0
FOCUS_POINT = (420, 200)  # the fuel tank


def fill_disparity(disp: np.ndarray) -> np.ndarray:
    """NaN/inf holes filled per row with the farther (smaller) of the nearest valid values
    to the left and right; then a 3×3 median over the filled pixels only."""
    from scipy import ndimage

    valid = np.isfinite(disp) & (disp > 0)
    h, w = disp.shape
    cols = np.arange(w)
    out = disp.copy()
    for y in range(h):
        ok = valid[y]
        if ok.all():
            continue
        if not ok.any():
            out[y] = np.nan
            continue
        idx_left = np.maximum.accumulate(np.where(ok, cols, -1))
        idx_right = np.minimum.accumulate(np.where(ok, cols, w)[::-1])[::-1]
        row = disp[y]
        left = np.where(idx_left >= 0, row[np.clip(idx_left, 0, w - 1)], np.inf)
        right = np.where(idx_right < w, row[np.clip(idx_right, 0, w - 1)], np.inf)
        out[y] = np.where(ok, row, np.minimum(left, right))
    rows_missing = ~np.isfinite(out)
    if rows_missing.any():  # whole rows without ground truth: nearest valid in 2-D
        _, (iy, ix) = ndimage.distance_transform_edt(rows_missing, return_indices=True)
        out = out[iy, ix]
    med = ndimage.median_filter(out, size=3)
    return np.where(valid, out, med).astype(np.float32)


def label(img: Image.Image, text: str) -> Image.Image:
    draw = ImageDraw.Draw(img)
    box = draw.textbbox((0, 0), text)
    draw.rectangle((6, 6, box[2] + 14, box[3] + 12), fill=(0, 0, 0))
    draw.text((10, 8), text, fill=(255, 255, 255))
    return img


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--aperture", type=float, default=1.4)
    ap.add_argument("--keep", help="also keep the input, depth and render in this folder")
    args = ap.parse_args()

    import skimage.data

    left, _right, disp = skimage.data.stereo_motorcycle()
    holes = int(np.count_nonzero(~np.isfinite(disp)))
    z = FOCAL_PX * BASELINE_M / (fill_disparity(disp) + DOFFS_PX)
    focal_mm = SENSOR_MM * FOCAL_PX / left.shape[1]

    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.keep) if args.keep else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        src, depth, out = work / "motorcycle-left.png", work / "depth-m.npy", work / "render.png"
        Image.fromarray(left).save(src)
        np.save(depth, z.astype(np.float32))
        settings = RenderSettings(
            depth_path=str(depth),
            depth_units="m",
            depth_kind="depth",
            focus_point=FOCUS_POINT,
            f_number=args.aperture,
            focal_length_mm=focal_mm,
            sensor_width_mm=SENSOR_MM,
            auto_subject=False,
        )
        report = render_file(src, out, settings)
        print("\n".join(report.lines()))
        print(f"ground truth holes filled: {holes} px ({holes / disp.size:.1%})")
        before = label(Image.fromarray(left), "photo (Middlebury 2014 Motorcycle)")
        after = label(
            Image.open(out).convert("RGB"),
            f"bokehkit: {focal_mm:.0f} mm f/{args.aperture:g}, full frame, focus on the tank",
        )
    w, h = before.size
    pair = Image.new("RGB", (2 * w + 8, h), (255, 255, 255))
    pair.paste(before, (0, 0))
    pair.paste(after, (w + 8, 0))
    dest = ROOT / "docs" / "img" / "motorcycle-before-after.jpg"
    pair.save(dest, quality=88, optimize=True, progressive=True)
    print(f"{dest.relative_to(ROOT)}: {dest.stat().st_size // 1024} KB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

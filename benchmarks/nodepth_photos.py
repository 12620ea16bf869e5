"""Real photos with no depth map and no mask: is the whole background blurred, right up to
the subject, while the subject stays sharp?

Each photo is rendered as a user gets it with no depth model installed: ``bokehkit render
PHOTO -o OUT`` with every default (ISNet finds the subject; it must be installed:
``bokehkit models install isnet``). Detail is the energy of the Laplacian of the luminance
(sRGB), kept as a share of the photo's, in three regions of ISNet's matte:

* subject: matte ≥ 0.9, 3 px inside its edge;
* background: matte ≤ 0.05;
* beside: background within 2 % of the image diagonal of the subject (where a blur graded by
  the distance from the subject left the "portrait-mode halo").

    python benchmarks/nodepth_photos.py [--photo FILE ...] [--out DIR] [--figure FILE]

Photos default to the ones scikit-image ships (astronaut, chelsea, coffee, rocket, the
Middlebury motorcycle); ``--photo`` adds others. ``--figure`` writes before/after pairs.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from bokehkit import subject
from bokehkit.imageio import load_image
from bokehkit.pipeline import RenderSettings, render_file


def default_photos() -> list[Path]:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    names = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png")
    return [data / n for n in names if (data / n).exists()]


def luminance(path: Path) -> np.ndarray:
    rgb = np.asarray(Image.open(path).convert("RGB"), np.float64) / 255.0
    return rgb @ np.array([0.2126, 0.7152, 0.0722])


def detail(lum: np.ndarray, region: np.ndarray) -> float:
    return float(np.mean(ndimage.laplace(lum)[region] ** 2)) if region.any() else float("nan")


def regions(matte: np.ndarray) -> dict[str, np.ndarray]:
    h, w = matte.shape
    beside_px = max(2, int(0.02 * np.hypot(h, w)))
    subject_mask = ndimage.binary_erosion(matte >= 0.9, iterations=3)
    background = matte <= 0.05
    near = ndimage.binary_dilation(matte > 0.5, iterations=beside_px)
    return {"subject": subject_mask, "background": background, "beside": background & near}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--photo", action="append", type=Path, default=[])
    ap.add_argument("--out", type=Path, default=Path("/tmp/bokehkit-nodepth"))
    ap.add_argument("--figure", type=Path, help="before/after pairs, stacked (JPEG)")
    a = ap.parse_args(argv)
    model = subject.model_path()
    if model is None:
        sys.exit("nodepth_photos: ISNet is not installed (bokehkit models install isnet)")
    a.out.mkdir(parents=True, exist_ok=True)
    photos = default_photos() + a.photo
    print("| photo | size | depth | subject kept | background kept | beside the subject kept |")
    print("|---|---|---|---|---|---|")
    pairs = []
    for photo in photos:
        out = a.out / (photo.stem + ".png")
        report = render_file(photo, out, RenderSettings())
        image = load_image(photo)
        matte = subject.subject_mask_linear(image.linear_rgb, model)
        before, after = luminance(photo), luminance(out)
        kept = {name: detail(after, m) / detail(before, m) for name, m in regions(matte).items()}
        w, h = image.size
        print(f"| {photo.name} | {w}×{h} | {report.depth_source.split(':')[0]} | "
              f"{100 * kept['subject']:.0f} % | {100 * kept['background']:.0f} % | "
              f"{100 * kept['beside']:.0f} % |")
        pairs.append((photo, out))
    if a.figure:
        rows = []
        for photo, out in pairs:
            p, o = Image.open(photo).convert("RGB"), Image.open(out).convert("RGB")
            scale = 480 / p.height
            size = (round(p.width * scale), 480)
            row = Image.new("RGB", (2 * size[0] + 8, 480), "white")
            row.paste(p.resize(size, Image.LANCZOS), (0, 0))
            row.paste(o.resize(size, Image.LANCZOS), (size[0] + 8, 0))
            rows.append(row)
        width = max(r.width for r in rows)
        sheet = Image.new("RGB", (width, sum(r.height + 8 for r in rows) - 8), "white")
        y = 0
        for r in rows:
            sheet.paste(r, (0, y))
            y += r.height + 8
        a.figure.parent.mkdir(parents=True, exist_ok=True)
        sheet.save(a.figure, quality=88)
        print(f"figure → {a.figure}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

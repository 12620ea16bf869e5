"""How well highlight recovery tells lights from bright surfaces, and how much light it gives
back, against Cycles renders whose unclipped linear light is known (``aif_linear.npy``).

For every small clipped spot that ``bokehkit.render.highlights.clipped_spots`` finds in ``aif.png``,
the *true gain* is the light its core really held over what clipping left (sums of linear
luminance over the spot). A spot is a light when its true gain exceeds 2.5. Per set:

* how many lights and non-lights there are, how many of each get a boost (gain > 1.5), judged
  with the scene's exact depth map as the renderer judges them and by the pixels alone, and
  the light in lights that is missed;
* the energy error: |log(gain given) − log(true gain)| per spot, weighted by the true light
  (what a wrong gain costs in the render), for the given gain and for none;
* ``--fit LABEL``: the energy model ``m = a·area^b`` fitted by least squares in log space on
  the lights of that set (for tuning; never on a held-out set).

    python benchmarks/highlights_calibration.py --data tune=/work/scenes/tune \\
        --data held=/work/scenes/held [--fit tune] [--photo-jpeg 92]

``--photo-jpeg Q`` judges the spots of the AIF stored as a JPEG of quality Q with 4:2:0
chroma (as cameras and phones store photos) instead of the PNG.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage

from bokehkit.render import highlights

LIGHT_TRUE_GAIN = 2.5


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def load_photo(path: Path, jpeg_quality: int | None) -> Image.Image:
    """The photo as stored (PNG), or as a JPEG of `jpeg_quality` with 4:2:0 chroma."""
    image = Image.open(path).convert("RGB")
    if jpeg_quality is None:
        return image
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=jpeg_quality, subsampling="4:2:0")
    return Image.open(buffer).convert("RGB")


def scene_spots(scene: Path, jpeg_quality: int | None = None) -> list[dict]:
    """Every clipped spot of the scene's AIF with its features, true gain and given gain."""
    enc = np.asarray(load_photo(scene / "aif.png", jpeg_quality), np.float32) / 255.0
    true = np.load(scene / "aif_linear.npy").astype(np.float32)[..., :3]
    spots = highlights.clipped_spots(enc)
    if spots is None:
        return []
    index = np.arange(1, spots.count + 1)
    clip_lum = srgb_to_linear(enc).mean(axis=-1)
    true_lum = true.mean(axis=-1)
    core_true = ndimage.sum(true_lum, spots.labels, index)
    core_clip = ndimage.sum(clip_lum, spots.labels, index)
    # As the renderer judges them: with the scene's depth map (a spot flat on a surface is
    # printed there); and by the pixels alone.
    disparity = 1.0 / np.clip(np.load(scene / "depth.npy").astype(np.float32), 1e-3, None)
    likely = highlights.light_likelihood(spots, disparity)
    likely_pixels = highlights.light_likelihood(spots)
    energy = highlights.light_energy(spots.area)
    rows = []
    for k in range(spots.count):
        rows.append(dict(
            scene=scene.name, area=float(spots.area[k]), white=float(spots.white_share[k]),
            shoulder=float(spots.shoulder[k]), surround=float(spots.surround[k]),
            elongation=float(spots.elongation[k]), likelihood=float(likely[k]),
            likelihood_pixels=float(likely_pixels[k]),
            energy=float(energy[k]), core_clip=float(core_clip[k]),
            true_gain=float(core_true[k] / max(core_clip[k], 1e-9)),
        ))  # fmt: skip
    return rows


def given_gain(rows: list[dict], cap: float, likelihood: str = "likelihood") -> np.ndarray:
    e = np.minimum([r["energy"] for r in rows], cap)
    return 1.0 + (e - 1.0) * np.array([r[likelihood] for r in rows])


def report(label: str, rows: list[dict], cap: float) -> None:
    if not rows:
        print(f"{label}: no clipped spots")
        return
    true = np.array([r["true_gain"] for r in rows])
    clip = np.array([r["core_clip"] for r in rows])
    light = true > LIGHT_TRUE_GAIN
    gain = given_gain(rows, cap)
    boosted = gain > 1.5
    weight = true * clip  # the light each spot really holds
    err = np.abs(np.log(gain) - np.log(true))
    err_none = np.abs(np.log(true))
    missed = weight[light & ~boosted].sum() / max(weight[light].sum(), 1e-9)
    by_pixels = given_gain(rows, cap, "likelihood_pixels") > 1.5
    print(
        f"{label}: {len({r['scene'] for r in rows})} scenes, {len(rows)} spots: "
        f"{light.sum()} lights ({(light & boosted).sum()} boosted; by the pixels alone "
        f"{(light & by_pixels).sum()}), {(~light).sum()} not ({(~light & boosted).sum()} "
        f"boosted; by the pixels alone {(~light & by_pixels).sum()}); light missed "
        f"{100 * missed:.1f} %"
    )
    print(
        f"  energy error (mean |log gain given − log true|, weighted by the true light): "
        f"{np.average(err, weights=weight):.3f} (no recovery: "
        f"{np.average(err_none, weights=weight):.3f}); on lights "
        f"{np.average(err[light], weights=weight[light]) if light.any() else float('nan'):.3f},"
        f" on the rest {np.average(err[~light], weights=weight[~light]):.3f}"
    )


def fit(rows: list[dict]) -> None:
    lights = [r for r in rows if r["true_gain"] > LIGHT_TRUE_GAIN]
    x = np.log([r["area"] for r in lights])
    y = np.log([r["true_gain"] for r in lights])
    b, a = np.polyfit(x, y, 1)
    resid = y - (a + b * x)
    print(
        f"fit on {len(lights)} lights: m = {np.exp(a):.3f}·area^{b:.3f} "
        f"(log residual sd {resid.std():.3f})"
    )
    for name in ("white", "shoulder", "surround", "elongation", "area"):
        li = np.array([r[name] for r in lights])
        no = np.array([r[name] for r in rows if r["true_gain"] <= LIGHT_TRUE_GAIN])
        print(
            f"  {name:10s} lights p5/p50/p95 {np.percentile(li, [5, 50, 95]).round(3)}  "
            f"others {np.percentile(no, [5, 50, 95]).round(3)}"
        )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--data", action="append", required=True, metavar="LABEL=DIR")
    ap.add_argument("--fit", metavar="LABEL", help="fit the energy model on this set")
    ap.add_argument("--cap", type=float, default=highlights.DEFAULT_GAIN)
    ap.add_argument("--json", type=Path, help="write every spot's row here")
    ap.add_argument("--photo-jpeg", type=int, metavar="Q", help="judge the AIF as a JPEG")
    a = ap.parse_args(argv)
    sets = {}
    for text in a.data:
        label, _, d = text.partition("=")
        scenes = sorted(
            p
            for p in Path(d).iterdir()
            if (p / "meta.json").exists() and (p / "aif_linear.npy").exists()
        )
        sets[label] = [row for s in scenes for row in scene_spots(s, a.photo_jpeg)]
    for label, rows in sets.items():
        report(label, rows, a.cap)
    if a.fit:
        fit(sets[a.fit])
    if a.json:
        a.json.write_text(json.dumps(sets, indent=0))
    return 0


if __name__ == "__main__":
    sys.exit(main())

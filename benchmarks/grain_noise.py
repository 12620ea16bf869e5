"""Whose noise is in the truth's blur? Per Cycles render: the noise of its flat blurred
regions (as `fidelity.py --grain-check` measures it), the noise the renderer estimates from
the photo and puts back as grain, and the photo's own noise measured from its float
render by the smallest eigenvalue of the covariance of weakly textured patches (the
patch-PCA estimator of Liu, Tanaka and Okutomi, 2013), which texture does not inflate.

    .venv/bin/python benchmarks/grain_noise.py /work/scenes/tune [more scene folders]

All in sRGB code values (0–255). Where the truth's noise is several times the photo's, it is
the path tracer's own noise from sampling the lens, which no camera adds to a photo.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fidelity as F  # noqa: E402

from bokehkit.render.grain import estimate_noise  # noqa: E402

PATCH = 7


def patch_pca_noise(channel: np.ndarray, patches: int = 40000, rounds: int = 3) -> float:
    """σ of white noise in one channel: the smallest eigenvalue of the covariance of patches
    whose gradient energy noise alone could give (re-selected `rounds` times)."""
    h, w = channel.shape
    rng = np.random.default_rng(0)
    ys, xs = rng.integers(0, h - PATCH, patches), rng.integers(0, w - PATCH, patches)
    offsets = np.arange(PATCH)
    idx = (ys[:, None, None] + offsets[None, :, None]) * w + xs[:, None, None] + offsets
    p = channel.ravel()[idx.reshape(patches, -1)].astype(np.float64)
    g = p.reshape(-1, PATCH, PATCH)
    texture = np.square(np.diff(g, axis=1)).sum((1, 2)) + np.square(np.diff(g, axis=2)).sum((1, 2))
    chosen = np.ones(patches, bool)
    variance = 0.0
    terms = 2 * PATCH * (PATCH - 1)  # differences of two noisy pixels: variance 2σ² each
    for _ in range(rounds):
        x = p[chosen] - p[chosen].mean(axis=0)
        variance = max(float(np.linalg.eigvalsh(x.T @ x / len(x))[0]), 0.0)
        chosen = texture < variance * 2 * (terms + 3.0 * np.sqrt(2 * terms))
        if chosen.sum() < 200:
            chosen = texture <= np.percentile(texture, 5)
    return float(np.sqrt(variance))


def main(folders: list[str]) -> int:
    ev = F.load_evaluate(F.DEFAULT_EVALUATE)
    print("| scene | render | truth's blur | grain we add | photo's own (patch PCA) |")
    print("|---|---|---|---|---|")
    for folder in folders:
        scenes, _ = F.complete_scenes(Path(folder))
        for sd in scenes:
            meta = json.loads((sd / "meta.json").read_text())
            depth = np.load(sd / "depth.npy").astype(np.float64)
            aif = F.load_png01(sd / "aif.png")
            ours = float(estimate_noise(aif.astype(np.float32), 1 / 255).mean() * 255)
            aif_float = np.load(sd / "aif_linear.npy").astype(np.float64)[..., :3]
            aif255 = F.linear_to_srgb(np.clip(aif_float, 0, None)) * 255
            own = float(np.mean([patch_pca_noise(aif255[..., c]) for c in range(3)]))
            for r in meta["renders"]:
                gt = F.load_png01(sd / r["file"])
                coc = ev.coc_map(depth, r["K_px_m"], r["focus_distance_m"])
                region = F.flat_blurred_region(
                    gt, coc, ev.region_masks(depth, coc, ev.srgb2lin(aif))
                )
                truth = np.load(sd / r["file"].replace(".png", "_linear.npy")).astype(np.float64)
                noise = F.haar_noise(
                    F.linear_to_srgb(np.clip(truth[..., :3], 0, None)) * 255, region
                )
                if not np.isnan(noise):
                    print(f"| {sd.name} | {r['file']} | {noise:.2f} | {ours:.2f} | {own:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

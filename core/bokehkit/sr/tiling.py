"""Run an image network tile by tile, with overlaps blended so that no seam shows.

Each window of at most `tile` input pixels overlaps its neighbours by 2·pad + blend pixels.
Of a window's output, the `pad` pixels along an inner edge are dropped (there the network
saw the window's edge instead of the image), and the next `blend` pixels fade in linearly;
every output pixel is the weighted mean of the windows that cover it, the weights normalised
per axis (the windows form a grid, so the 2-D weights are products). Where the network's
receptive field is within `pad`, the tiled result equals the untiled one; beyond it (a deep
network such as RRDBNet) the fades hide the small differences.

Only numpy here: the network is any function from an H×W×3 window to its enlargement.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable

import numpy as np

from ..progress import Progress

TileFn = Callable[[np.ndarray], np.ndarray]


def window_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Starts of windows of size `tile` covering [0, length), neighbours overlapping by at
    least `overlap`, spread evenly."""
    if length <= tile:
        return [0]
    if tile <= overlap:
        raise ValueError(f"a tile of {tile} px cannot overlap its neighbours by {overlap} px")
    n = math.ceil((length - overlap) / (tile - overlap))
    while True:
        starts = [round(k * (length - tile) / (n - 1)) for k in range(n)]
        if all(b - a <= tile - overlap for a, b in itertools.pairwise(starts)):
            return starts
        n += 1


def axis_weights(
    starts: list[int], tile: int, length: int, pad: int, blend: int, scale: int
) -> list[np.ndarray]:
    """Per window, its normalised 1-D weights at the output scale (length·scale)."""
    raw = []
    for s in starts:
        size = min(tile, length - s) * scale
        w = np.ones(size, np.float64)
        ramp = (np.arange(blend * scale) + 0.5) / (blend * scale)
        inner_lo, inner_hi = s > 0, s + min(tile, length - s) < length
        if inner_lo:
            w[: pad * scale] = 0.0
            w[pad * scale : (pad + blend) * scale] = ramp
        if inner_hi:
            w[size - pad * scale :] = 0.0
            w[size - (pad + blend) * scale : size - pad * scale] = np.minimum(
                w[size - (pad + blend) * scale : size - pad * scale], ramp[::-1]
            )
        raw.append(w)
    total = np.zeros(length * scale, np.float64)
    for s, w in zip(starts, raw, strict=True):
        total[s * scale : s * scale + w.size] += w
    if total.min() <= 0:  # pragma: no cover - window_starts guarantees coverage
        raise AssertionError("tiling left output pixels without a window")
    return [
        (w / total[s * scale : s * scale + w.size]).astype(np.float32)
        for s, w in zip(starts, raw, strict=True)
    ]


def run_tiled(
    image: np.ndarray,
    fn: TileFn,
    scale: int,
    tile: int = 256,
    pad: int = 10,
    blend: int = 12,
    progress: Progress | None = None,
    label: str = "tile",
    skip: Callable[[slice, slice], TileFn | None] | None = None,
) -> np.ndarray:
    """`fn` over overlapping windows of `image` (H×W×C float32), blended, at ×`scale`.

    `skip(rows, cols)` may return another function for a window (a cheaper one where the
    network is not needed); `progress` is told after each window and may cancel between
    windows (progress.Cancelled)."""
    h, w = image.shape[:2]
    overlap = 2 * pad + blend
    ys, xs = window_starts(h, tile, overlap), window_starts(w, tile, overlap)
    wy = axis_weights(ys, tile, h, pad, blend, scale)
    wx = axis_weights(xs, tile, w, pad, blend, scale)
    out: np.ndarray | None = None
    n, k = len(ys) * len(xs), 0
    if progress is not None:
        progress.update(0.0, f"{label}: 0 of {n} tiles")
    for y0, wyy in zip(ys, wy, strict=True):
        for x0, wxx in zip(xs, wx, strict=True):
            rows, cols = slice(y0, min(y0 + tile, h)), slice(x0, min(x0 + tile, w))
            f = (skip(rows, cols) if skip is not None else None) or fn
            res = np.asarray(f(image[rows, cols]), np.float32)
            want = ((rows.stop - rows.start) * scale, (cols.stop - cols.start) * scale)
            if res.shape[:2] != want:
                raise ValueError(f"a window gave {res.shape[:2]}, not {want}")
            if out is None:
                out = np.zeros((h * scale, w * scale, *res.shape[2:]), np.float32)
            weight = wyy[:, None] * wxx[None, :]
            if res.ndim == 3:
                weight = weight[..., None]
            out[y0 * scale : y0 * scale + want[0], x0 * scale : x0 * scale + want[1]] += (
                res * weight
            )
            k += 1
            if progress is not None:
                progress.update(k / n, f"{label}: {k} of {n} tiles")
    assert out is not None
    return out

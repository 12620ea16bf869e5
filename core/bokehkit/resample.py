"""Small resampling helpers on float32 arrays (H×W or H×W×C) used by the renderers."""

from __future__ import annotations

import numpy as np


def box_down(a: np.ndarray, factor: int) -> np.ndarray:
    """Average `factor`×`factor` blocks; edges are padded by replication to a whole block."""
    if factor == 1:
        return a
    h, w = a.shape[:2]
    ph, pw = -h % factor, -w % factor
    if ph or pw:
        pad = [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2)
        a = np.pad(a, pad, mode="edge")
    h2, w2 = a.shape[0] // factor, a.shape[1] // factor
    out = a.reshape(h2, factor, w2, factor, *a.shape[2:]).mean(axis=(1, 3), dtype=np.float32)
    return out


def _linear_taps(n_out: int, n_in: int, factor: float, offset: float = 0.0):
    """Indices and weights to sample a grid of `n_in` cells of size `factor` at `n_out` pixel
    centres. `offset` is where output pixel 0 starts, in input cells."""
    pos = (np.arange(n_out, dtype=np.float64) + 0.5) / factor - 0.5 + offset
    pos = np.clip(pos, 0.0, n_in - 1.0)
    i0 = np.minimum(np.floor(pos).astype(np.intp), max(n_in - 2, 0))
    t = (pos - i0).astype(np.float32)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, t


def bilinear_up(a: np.ndarray, factor: int, out_h: int, out_w: int) -> np.ndarray:
    """Upsample a `box_down` result back to (out_h, out_w), aligned on pixel centres."""
    if factor == 1:
        return a[:out_h, :out_w]
    y0, y1, ty = _linear_taps(out_h, a.shape[0], factor)
    x0, x1, tx = _linear_taps(out_w, a.shape[1], factor)
    extra = (None,) * (a.ndim - 2)
    ty = ty[(slice(None), None) + extra]
    tx = tx[(slice(None),) + extra]
    rows = a[y0] * (1 - ty) + a[y1] * ty
    return rows[:, x0] * (1 - tx) + rows[:, x1] * tx


def pull_push_fill(premult: np.ndarray, weight: np.ndarray, min_size: int = 2) -> np.ndarray:
    """Extrapolate colour into pixels of low `weight` (Gortler et al.'s pull-push).

    `premult` is colour × weight (H×W×C), `weight` in [0, 1]. Returns straight colour defined
    everywhere: where weight is 1 the colour itself, elsewhere a smooth fill from the nearest
    known pixels, coarser the further they are. Used to guess the background hidden behind
    a foreground object, which shows through that object's defocused edge.
    """
    w = np.clip(weight, 0.0, 1.0).astype(np.float32)
    levels = [(premult.astype(np.float32), w)]
    # Pull: average down, keeping for each level colour×weight and the weight.
    while min(levels[-1][1].shape) > min_size:
        p, w = levels[-1]
        levels.append((box_down(p, 2), box_down(w, 2)))
    p, w = levels[-1]
    colour = p / np.maximum(w, 1e-8)[..., None]
    if not np.all(w > 0):
        known = w > 0
        fallback = colour[known].mean(axis=0) if known.any() else np.zeros(p.shape[-1], np.float32)
        colour[~known] = fallback
    # Push: each finer level keeps what it knows and takes the rest from the coarser guess.
    for p, w in reversed(levels[:-1]):
        coarse = bilinear_up(colour, 2, w.shape[0], w.shape[1])
        w_sat = np.minimum(w * 4.0, 1.0)[..., None]  # a quarter-covered block is trusted
        colour = (p / np.maximum(w, 1e-8)[..., None]) * w_sat + coarse * (1 - w_sat)
        colour = np.where(w[..., None] > 0, colour, coarse)
    return colour.astype(np.float32)

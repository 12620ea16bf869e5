"""Small resampling helpers on float32 arrays (H×W or H×W×C) used by the renderers."""

from __future__ import annotations

import numpy as np


def box_down(a: np.ndarray, factor: int) -> np.ndarray:
    """Average `factor`×`factor` blocks (`factor` a power of two); edges are padded by
    replication to a whole block."""
    while factor > 1:
        a = _halve(a)
        factor //= 2
    return a


def _halve(a: np.ndarray) -> np.ndarray:
    h, w = a.shape[:2]
    if h % 2 or w % 2:
        pad = [(0, h % 2), (0, w % 2)] + [(0, 0)] * (a.ndim - 2)
        a = np.pad(a, pad, mode="edge")
    # Strided adds: several times faster than a mean over reshaped axes.
    out = a[0::2, 0::2] + a[1::2, 0::2]
    out += a[0::2, 1::2]
    out += a[1::2, 1::2]
    out *= np.float32(0.25)
    return out


def bilinear_up(a: np.ndarray, factor: int, out_h: int, out_w: int) -> np.ndarray:
    """Upsample a `box_down` result back to (out_h, out_w), aligned on pixel centres.

    Repeated ×2 linear interpolation (each output pixel ¾ of its cell, ¼ of the neighbour):
    separable strided arithmetic, much faster than gathering with index arrays.
    """
    while factor > 1:
        a = _double(a)
        factor //= 2
    return a[:out_h, :out_w]


def _double(a: np.ndarray) -> np.ndarray:
    return _double_rows(_double_cols(a))  # columns (strided, slower) on the smaller array


def _double_rows(a: np.ndarray) -> np.ndarray:
    n = a.shape[0]
    out = np.empty((2 * n,) + a.shape[1:], a.dtype)
    out[0], out[-1] = a[0], a[-1]  # edges replicated
    quarter_step = a[1:] - a[:-1]
    quarter_step *= np.float32(0.25)
    np.subtract(a[1:], quarter_step, out=out[2::2])
    np.add(a[:-1], quarter_step, out=out[1:-1:2])
    return out


def _double_cols(a: np.ndarray) -> np.ndarray:
    n = a.shape[1]
    out = np.empty((a.shape[0], 2 * n) + a.shape[2:], a.dtype)
    out[:, 0], out[:, -1] = a[:, 0], a[:, -1]
    quarter_step = a[:, 1:] - a[:, :-1]
    quarter_step *= np.float32(0.25)
    np.subtract(a[:, 1:], quarter_step, out=out[:, 2::2])
    np.add(a[:, :-1], quarter_step, out=out[:, 1:-1:2])
    return out


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


def pull_push_max(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Fill unknown pixels of a 2-D map with the largest known value nearby (a max pyramid,
    coarser the further the nearest known pixel is)."""
    levels = [np.where(known, values, -np.inf).astype(np.float32)]
    while min(levels[-1].shape) > 2:
        a = levels[-1]
        h, w = a.shape
        if h % 2 or w % 2:
            a = np.pad(a, ((0, h % 2), (0, w % 2)), mode="edge")
        levels.append(
            np.maximum.reduce([a[0::2, 0::2], a[1::2, 0::2], a[0::2, 1::2], a[1::2, 1::2]])
        )
    filled = levels[-1]
    for finer in reversed(levels[:-1]):
        coarse = np.repeat(np.repeat(filled, 2, axis=0), 2, axis=1)[
            : finer.shape[0], : finer.shape[1]
        ]
        filled = np.where(np.isfinite(finer), finer, coarse)
    return filled


# Planes first (C×H×W): the renderer's layers and composite keep each channel contiguous,
# which makes their per-pixel arithmetic several times faster than on interleaved channels.


def box_down_planes(a: np.ndarray, factor: int) -> np.ndarray:
    """`box_down` over the last two axes (…×H×W)."""
    while factor > 1:
        h, w = a.shape[-2:]
        if h % 2 or w % 2:
            a = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(0, h % 2), (0, w % 2)], mode="edge")
        out = a[..., 0::2, 0::2] + a[..., 1::2, 0::2]
        out += a[..., 0::2, 1::2]
        out += a[..., 1::2, 1::2]
        out *= np.float32(0.25)
        a, factor = out, factor // 2
    return a


def bilinear_up_planes(a: np.ndarray, factor: int, out_h: int, out_w: int) -> np.ndarray:
    """`bilinear_up` over the last two axes (…×H×W)."""
    while factor > 1:
        a = _double_plane_rows(_double_plane_cols(a))
        factor //= 2
    return a[..., :out_h, :out_w]


def _double_plane_rows(a: np.ndarray) -> np.ndarray:
    n = a.shape[-2]
    out = np.empty(a.shape[:-2] + (2 * n, a.shape[-1]), a.dtype)
    out[..., 0, :], out[..., -1, :] = a[..., 0, :], a[..., -1, :]  # edges replicated
    quarter_step = a[..., 1:, :] - a[..., :-1, :]
    quarter_step *= np.float32(0.25)
    np.subtract(a[..., 1:, :], quarter_step, out=out[..., 2::2, :])
    np.add(a[..., :-1, :], quarter_step, out=out[..., 1:-1:2, :])
    return out


def _double_plane_cols(a: np.ndarray) -> np.ndarray:
    n = a.shape[-1]
    out = np.empty(a.shape[:-1] + (2 * n,), a.dtype)
    out[..., 0], out[..., -1] = a[..., 0], a[..., -1]
    quarter_step = a[..., 1:] - a[..., :-1]
    quarter_step *= np.float32(0.25)
    np.subtract(a[..., 1:], quarter_step, out=out[..., 2::2])
    np.add(a[..., :-1], quarter_step, out=out[..., 1:-1:2])
    return out

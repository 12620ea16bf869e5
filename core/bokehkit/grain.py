"""Grain matching: blurred areas get back the photo's noise, so they don't look pasted in.

Blurring a disc of radius r averages about π·r² pixels and so removes the noise. We measure
the photo's noise per channel (robust median of the finest wavelet detail, Donoho's
estimator) and add fresh noise of the strength the blur took away, in the photo's own code
values (where camera noise is roughly even), never in the sharp areas.
"""

from __future__ import annotations

import numpy as np

from .colour import linear_to_srgb, srgb_to_linear

_MAD_TO_SIGMA = 1.0 / 0.6745
ROWS_PER_CHUNK = 512
NOISE_BLOCK = 8
QUIET_PERCENTILE = 10


def estimate_noise(encoded01: np.ndarray) -> np.ndarray:
    """Noise σ per channel in code values scaled to [0, 1] (H×W×C input).

    Texture also shows up as fine detail, so σ is measured block by block and the quietest
    blocks are taken: in those, what remains is the noise.
    """
    h, w = encoded01.shape[:2]
    step = max(1, int(np.sqrt(h * w / 4e6)))  # sample big images on a sparser grid
    a = encoded01[::step, ::step]
    a = a[: a.shape[0] - a.shape[0] % 2, : a.shape[1] - a.shape[1] % 2].astype(np.float32)
    # Haar diagonal detail: (a − b − c + d) / 2 has the noise σ and little of the image.
    hh = np.abs(a[0::2, 0::2] - a[0::2, 1::2] - a[1::2, 0::2] + a[1::2, 1::2]) / 2.0
    b = NOISE_BLOCK
    bh, bw = hh.shape[0] // b, hh.shape[1] // b
    if hh.shape[0] == 0 or hh.shape[1] == 0:  # under 2×2 pixels: nothing to measure
        return np.zeros(encoded01.shape[2], np.float32)
    if bh * bw < 4:
        return (np.median(hh, axis=(0, 1)) * _MAD_TO_SIGMA).astype(np.float32)
    blocks = hh[: bh * b, : bw * b].reshape(bh, b, bw, b, -1)
    # Root-mean-square per block (a median of 8-bit steps is too coarse), then the quiet end.
    block_sigma = np.sqrt(np.mean(np.square(blocks), axis=(1, 3)))
    sigma = np.percentile(block_sigma.reshape(-1, block_sigma.shape[-1]), QUIET_PERCENTILE, axis=0)
    return sigma.astype(np.float32)


def add_grain(
    linear_rgb: np.ndarray,
    coc_px: np.ndarray,
    sigma: np.ndarray,
    amount: float = 1.0,
    seed: int = 0,
) -> np.ndarray:
    """Add noise of σ·√(1 − 1/(π·r²+1)) (what a blur of radius r removed), in place."""
    if amount <= 0 or not np.any(sigma > 0):
        return linear_rgb
    rng = np.random.default_rng(seed)
    sigma = np.asarray(sigma, np.float32) * amount
    for y in range(0, linear_rgb.shape[0], ROWS_PER_CHUNK):
        rows = slice(y, y + ROWS_PER_CHUNK)
        r2 = np.square(coc_px[rows], dtype=np.float32)
        lost = np.sqrt(1.0 - 1.0 / (np.pi * r2 + 1.0))
        if not lost.any():
            continue
        chunk = linear_rgb[rows]
        noise = rng.standard_normal(chunk.shape, dtype=np.float32) * sigma * lost[..., None]
        # Noise lives in code values; sRGB stands in for the photo's own curve here.
        chunk[...] = np.where(
            lost[..., None] > 0,
            srgb_to_linear(np.clip(linear_to_srgb(np.maximum(chunk, 0.0)) + noise, 0.0, None)),
            chunk,
        )
    return linear_rgb

"""Grain matching: blurred areas get back the photo's noise, so they don't look pasted in.

Blurring a disc of radius r averages about π·r² pixels and so removes the noise. We measure
the photo's noise per channel and add fresh noise of the strength the blur took away, in the
photo's own code values (where camera noise is roughly even), never in the sharp areas.

The noise is measured in the quietest places of the photo: the finest detail (2×2 Haar
diagonal) is measured block by block, and texture only ever adds to it, so the quietest
blocks hold the noise alone. A low percentile over the blocks (not the 10th: in a photo that
is textured everywhere, as rendered scenes are, even the 10th holds texture and the grain
came out 2 to 10 times too strong) is corrected for the spread of a block's estimate around
the truth (χ² of its samples), blocks that touch black or white are left out (clipping hides
the noise there), and the rounding of the code values is taken off (8-bit rounding alone
reads as 0.29 code values of noise).
"""

from __future__ import annotations

import numpy as np

from ..io.colour import linear_to_srgb, srgb_to_linear

ROWS_PER_CHUNK = 512
NOISE_BLOCK = 8
#: The percentile of block noise taken, and the ratio of that percentile to σ for pure
#: noise: sqrt(χ²₆₄⁻¹(0.01) / 64), 64 Haar coefficients a block.
QUIET_PERCENTILE = 1.0
_QUIET_PERCENTILE_OF_SIGMA = 0.7970
#: Blocks whose mean lies within this of black or white are clipped: their noise is gone.
CLIPPED_MARGIN = 2.0 / 255.0


def estimate_noise(encoded01: np.ndarray, step: float = 0.0) -> np.ndarray:
    """Noise σ per channel in code values scaled to [0, 1] (H×W×C input), without the
    rounding to code values `step` apart (1/255 for 8-bit, 0 for float)."""
    h, w = encoded01.shape[:2]
    stride = max(1, int(np.sqrt(h * w / 4e6)))  # sample big images on a sparser grid
    a = encoded01[::stride, ::stride]
    a = a[: a.shape[0] - a.shape[0] % 2, : a.shape[1] - a.shape[1] % 2].astype(np.float32)
    # Haar diagonal detail: (a − b − c + d) / 2 has the noise σ and little of the image.
    hh = (a[0::2, 0::2] - a[0::2, 1::2] - a[1::2, 0::2] + a[1::2, 1::2]) / 2.0
    mean = (a[0::2, 0::2] + a[0::2, 1::2] + a[1::2, 0::2] + a[1::2, 1::2]) / 4.0
    b = NOISE_BLOCK
    bh, bw = hh.shape[0] // b, hh.shape[1] // b
    if hh.shape[0] == 0 or hh.shape[1] == 0:  # under 2×2 pixels: nothing to measure
        return np.zeros(encoded01.shape[2], np.float32)
    if bh * bw < 4:
        sigma = np.sqrt(np.mean(np.square(hh), axis=(0, 1)))
    else:
        blocks = hh[: bh * b, : bw * b].reshape(bh, b, bw, b, -1)
        block_sigma = np.sqrt(np.mean(np.square(blocks), axis=(1, 3))).reshape(bh * bw, -1)
        block_mean = mean[: bh * b, : bw * b].reshape(bh, b, bw, b, -1).mean(axis=(1, 3))
        block_mean = block_mean.reshape(bh * bw, -1)
        sigma = np.empty(block_sigma.shape[1], np.float32)
        for c in range(block_sigma.shape[1]):
            unclipped = (block_mean[:, c] > CLIPPED_MARGIN) & (
                block_mean[:, c] < 1 - CLIPPED_MARGIN
            )
            values = block_sigma[unclipped, c] if unclipped.sum() >= 4 else block_sigma[:, c]
            sigma[c] = np.percentile(values, QUIET_PERCENTILE) / _QUIET_PERCENTILE_OF_SIGMA
    rounding = step * step / 12.0  # variance of rounding to the nearest code value
    return np.sqrt(np.maximum(np.square(sigma) - rounding, 0.0)).astype(np.float32)


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

"""Classical super-resolution ×2/×4: the baseline that learned SR plugs in beside.

Lanczos-3 (sharp, but rings at edges), then each output pixel is clamped to the range of the
source pixels around it, which removes the ringing halos while keeping the edge steep
(edge-aware), and the in-focus region gets a gentle unsharp mask so that it stays crisp
after enlargement; blurred regions need no detail.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy import ndimage

SHARPEN_AMOUNT = 0.6


def resize_plane(plane: np.ndarray, width: int, height: int, resample=Image.Resampling.LANCZOS):
    im = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    return np.asarray(im.resize((width, height), resample), dtype=np.float32)


def upscale_linear(
    linear_rgb: np.ndarray, factor: int, sharpness: np.ndarray | None = None, progress=None
) -> np.ndarray:
    """Enlarge H×W×C float32 by `factor`. `sharpness` (H×W in [0, 1], at the source size)
    says where the image is meant to be crisp; without it, everywhere."""
    if factor == 1:
        return linear_rgb
    h, w, c = linear_rgb.shape
    out = np.empty((h * factor, w * factor, c), np.float32)
    if sharpness is not None:
        sharp_up = resize_plane(sharpness, w * factor, h * factor, Image.Resampling.BILINEAR)
    for ch in range(c):
        src = linear_rgb[..., ch]
        up = resize_plane(src, w * factor, h * factor)
        # The 3×3 range of the source around each output pixel bounds it: no overshoot.
        lo = np.repeat(np.repeat(ndimage.minimum_filter(src, 3), factor, 0), factor, 1)
        hi = np.repeat(np.repeat(ndimage.maximum_filter(src, 3), factor, 0), factor, 1)
        soft = ndimage.gaussian_filter(up, 0.5 * factor)
        detail = (up - soft) * SHARPEN_AMOUNT
        if sharpness is not None:
            detail *= sharp_up
        np.clip(up + detail, lo, hi, out=out[..., ch])
    return out

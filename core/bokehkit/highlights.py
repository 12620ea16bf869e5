"""Highlight recovery: give clipped small lights back the energy the 8-bit photo cut off.

A street lamp may be 20× brighter than white, but the photo stores it as white. Blurred as it
is, it turns into a dim grey disc; a lens would spread all of its light into a bright disc.
We cannot know the true brightness, so small, isolated clipped spots (lights, not a white
wall or sky) are scaled by a gain, only where they will be blurred.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

DEFAULT_GAIN = 4.0
#: Code value (of full scale) from which a channel counts as clipped.
CLIP_LEVEL = 250.0 / 255.0
#: Clipped spots narrower than this are lights; wider ones are white surfaces.
LIGHT_MAX_DIAMETER_PX = 7


def light_weight(encoded01: np.ndarray) -> np.ndarray:
    """0…1 per pixel: how surely this pixel is a clipped small light. `encoded01` are the
    photo's code values scaled to [0, 1], H×W×C."""
    peak = encoded01.min(axis=-1)  # white: every channel clipped (a light, not a colour)
    clipped = peak >= CLIP_LEVEL
    if not clipped.any():
        return np.zeros(peak.shape, np.float32)
    # Clipped areas that a disc of LIGHT_MAX_DIAMETER_PX fits in are walls and skies.
    r = LIGHT_MAX_DIAMETER_PX // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = xx * xx + yy * yy <= (r + 0.5) ** 2
    large = ndimage.binary_dilation(ndimage.binary_opening(clipped, disc), iterations=2)
    return (clipped & ~large).astype(np.float32)


def recover_highlights(
    linear_rgb: np.ndarray,
    encoded01: np.ndarray,
    coc_px: np.ndarray,
    gain: float = DEFAULT_GAIN,
) -> np.ndarray:
    """Scale small clipped lights by up to `gain` where they are out of focus (|CoC| ≥ 1 px).
    Returns a new array; in-focus pixels are untouched."""
    if gain <= 1.0:
        return linear_rgb
    weight = light_weight(encoded01)
    weight *= np.clip(np.abs(coc_px) - 0.5, 0.0, 1.0)
    if not weight.any():
        return linear_rgb
    out = linear_rgb.copy()
    out *= (1.0 + (gain - 1.0) * weight)[..., None]
    return out

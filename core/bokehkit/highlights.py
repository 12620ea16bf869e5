"""Highlight recovery: give clipped small lights back the energy the 8-bit photo cut off.

A street lamp may be 20× brighter than white, but the photo stores it as white. Blurred as it
is, it turns into a dim grey disc; a lens would spread all of its light into a bright disc.
We cannot know the true brightness, so small, isolated clipped spots (lights, not a white
wall or sky) are scaled by a gain, only where they will be blurred.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

DEFAULT_GAIN = 6.0
#: Code value (of full scale) from which a channel counts as clipped.
CLIP_LEVEL = 250.0 / 255.0
#: Clipped spots narrower than this are lights; wider ones are white surfaces.
LIGHT_MAX_DIAMETER_PX = 9
#: Spots up to this many pixels get no boost (glints); from LIGHT_AREA_PX on, the full gain.
SPECK_AREA_PX = 2.0
LIGHT_AREA_PX = 8.0
#: A light stands out from the ring around it by more than this (mean code value); a clipped
#: speck of a saturated or bright texture does not.
MIN_CONTRAST = 0.25
COLOURED_MIN_CONTRAST = 0.35
RING_INNER_PX, RING_OUTER_PX = 2, 4
#: How much longer than a disc of its area a light may be (a little: lights are rarely round
#: in an 8-bit photo's clipped core).
MAX_ELONGATION = 1.6


def light_gain(encoded01: np.ndarray, gain: float) -> np.ndarray:
    """Per-pixel gain for clipped small lights, 1 elsewhere. `encoded01` are the photo's code
    values scaled to [0, 1], H×W×C.

    Measured on Cycles renders (true linear light beside the clipped 8-bit image), over 700
    clipped spots: spots much brighter than a ring around them held 5–15× the light that
    clipping left, while glints on bright or saturated texture held 1.2–1.6×, and spots of
    1–2 pixels are mostly glints. So the gain grows with the spot's area and its contrast
    with its surround, up to `gain`.
    """
    clipped = encoded01.max(axis=-1) >= CLIP_LEVEL  # coloured lights clip some channels
    if not clipped.any() or gain <= 1.0:
        return np.ones(clipped.shape, np.float32)
    # Clipped areas that a disc of LIGHT_MAX_DIAMETER_PX fits in are walls and skies.
    r = LIGHT_MAX_DIAMETER_PX // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = xx * xx + yy * yy <= (r + 0.5) ** 2
    large = ndimage.binary_dilation(ndimage.binary_opening(clipped, disc), iterations=2)
    spots, count = ndimage.label(clipped & ~large)
    if count == 0:
        return np.ones(clipped.shape, np.float32)
    index = np.arange(1, count + 1)
    area = np.bincount(spots.ravel(), minlength=count + 1)[1:].astype(np.float32)
    # The ring 2–4 px around each spot.
    outer = ndimage.grey_dilation(spots, size=2 * RING_OUTER_PX + 1)
    inner = ndimage.grey_dilation(spots, size=2 * RING_INNER_PX + 1)
    ring = np.where(inner == 0, outer, 0)
    luma = encoded01.mean(axis=-1)
    with np.errstate(invalid="ignore"):  # a spot whose ring is all other spots: no ring
        ring_level = np.asarray(ndimage.mean(luma, labels=ring, index=index), np.float32)
    core_level = np.asarray(ndimage.mean(luma, labels=spots, index=index), np.float32)
    contrast = core_level - np.nan_to_num(ring_level, nan=1.0)
    by_area = np.clip((area - SPECK_AREA_PX) / (LIGHT_AREA_PX - SPECK_AREA_PX), 0.0, 1.0)
    # A light is compact: its longest extent is about the diameter of a disc of its area.
    # Stripes, edges of paper and lines of paint are long and thin.
    boxes = ndimage.find_objects(spots)
    extent = np.array([max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes])
    compact_size = 2.0 * np.sqrt(area / np.pi)
    by_area *= np.clip((MAX_ELONGATION * compact_size + 1.0 - extent) / 2.0, 0.0, 1.0)
    by_ring = np.clip((contrast - MIN_CONTRAST) / 0.15, 0.0, 1.0)
    # A coloured spot (some channels not clipped) must stand out more to count as a light.
    white = encoded01.min(axis=-1) >= CLIP_LEVEL
    white_share = np.asarray(ndimage.mean(white, labels=spots, index=index), np.float32)
    coloured = white_share < 0.5
    by_ring[coloured] = np.clip((contrast[coloured] - COLOURED_MIN_CONTRAST) / 0.15, 0.0, 1.0)
    per_spot = np.concatenate([[1.0], 1.0 + (gain - 1.0) * by_area * by_ring])
    return per_spot[spots].astype(np.float32)


def recover_highlights(
    linear_rgb: np.ndarray,
    encoded01: np.ndarray,
    coc_px: np.ndarray,
    gain: float = DEFAULT_GAIN,
) -> np.ndarray:
    """Scale small clipped lights by up to `gain` where they are out of focus (|CoC| ≥ 1.5 px).
    Returns a new array; in-focus pixels are untouched."""
    if gain <= 1.0:
        return linear_rgb
    boost = light_gain(encoded01, gain) - 1.0
    boost *= np.clip(np.abs(coc_px) - 0.5, 0.0, 1.0)
    if not boost.any():
        return linear_rgb
    out = linear_rgb.copy()
    out *= (1.0 + boost)[..., None]
    return out

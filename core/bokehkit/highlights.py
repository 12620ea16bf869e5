"""Highlight recovery: give clipped small lights back the energy the 8-bit photo cut off.

A street lamp may be 20× brighter than white, but the photo stores it as white. Blurred as it
is, it turns into a dim grey disc; a lens spreads all of its light into a bright disc. Most
clipped spots are not lights, though: a glint, a white badge, a bright patch of texture hold
barely more light than white. A spot is taken for a light by what clipping does to a light
and not to a surface:

* the light is far brighter than white in every channel, so its core clips in all of them
  (a saturated or merely bright surface clips one or two);
* it is compact (a stripe of paint, the edge of a sheet of paper are long and thin);
* its clipped core ends in a steep shoulder: one pixel outside it the photo is already far
  below white, where a bright surface stays bright;
* it is small, and stands out from what is around it (a wall or a sky does not).

How much light the core really had cannot be read from the clipped pixels; it grows with
the clipped area (the brighter a light, the farther out its image still clips). The energy
model `m = ENERGY_SCALE · area^ENERGY_EXPONENT` and the thresholds were fitted on the
clipped spots of Cycles renders whose unclipped linear light is known (tuning scenes only;
`benchmarks/highlights_calibration.py` refits them and scores held-out scenes). The boost
never exceeds the user's `gain` (the cap; 1 turns recovery off) and is applied only where the
light will be blurred.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

#: The largest factor a clipped light is brightened by (the user's cap; 1 = off).
DEFAULT_GAIN = 40.0
#: Code value (of full scale) from which a channel counts as clipped.
CLIP_LEVEL = 250.0 / 255.0
#: Clipped areas wider than this fraction of the image's long side (at least
#: `MIN_LARGE_DIAMETER_PX`) are surfaces (walls, skies, paper), not lights.
LARGE_DIAMETER_FRACTION = 0.015
MIN_LARGE_DIAMETER_PX = 9
#: Energy of a light's clipped core, as a multiple of what clipping left, from its area in
#: pixels (fitted on Cycles renders; see the module doc).
ENERGY_SCALE = 1.32
ENERGY_EXPONENT = 0.78
#: Spots of at most this many pixels are mostly glints: no boost; full from LIGHT_AREA_PX.
SPECK_AREA_PX = 2.0
LIGHT_AREA_PX = 6.0
#: Share of the core clipped in every channel: a light from here, not below NOT_WHITE.
WHITE_SHARE, NOT_WHITE = 0.6, 0.35
#: Mean code value one pixel outside the core: a light's shoulder has dropped to at most
#: STEEP_SHOULDER; a bright surface's is still above SOFT_SHOULDER.
STEEP_SHOULDER, SOFT_SHOULDER = 0.66, 0.76
#: Longest extent over the diameter of a disc of the same area: a light up to COMPACT,
#: a stripe from ELONGATED.
COMPACT, ELONGATED = 1.3, 1.6
#: The spot stands out from a ring 2–4 px around it by at least this much (code values).
MIN_CONTRAST, FULL_CONTRAST = 0.2, 0.35
RING_INNER_PX, RING_OUTER_PX = 2, 4


@dataclass
class ClippedSpots:
    """The photo's small clipped spots: a label image and per-spot measurements."""

    labels: np.ndarray  # H×W int32, 0 = no spot, k = spot k (1-based)
    area: np.ndarray  # pixels
    white_share: np.ndarray  # share of the spot clipped in every channel
    shoulder: np.ndarray  # mean code value in the ring 1 px outside the spot
    surround: np.ndarray  # mean code value in the ring 2–4 px outside
    elongation: np.ndarray  # longest extent / diameter of a disc of the same area

    @property
    def count(self) -> int:
        return int(self.area.size)


def clipped_spots(encoded01: np.ndarray) -> ClippedSpots | None:
    """Find and measure the small clipped spots of a photo (code values in [0, 1], H×W×C);
    None when nothing small is clipped."""
    clipped = encoded01.max(axis=-1) >= CLIP_LEVEL  # coloured lights clip some channels
    if not clipped.any():
        return None
    h, w = clipped.shape
    r = max(MIN_LARGE_DIAMETER_PX, int(LARGE_DIAMETER_FRACTION * max(h, w))) // 2
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    disc = xx * xx + yy * yy <= (r + 0.5) ** 2
    # Clipped areas a disc of that size fits in are surfaces, and so is what touches them.
    large = ndimage.binary_dilation(ndimage.binary_opening(clipped, disc), iterations=2)
    labels, count = ndimage.label(clipped & ~large)
    if count == 0:
        return None
    index = np.arange(1, count + 1)
    area = np.bincount(labels.ravel(), minlength=count + 1)[1:].astype(np.float32)
    luma = encoded01.mean(axis=-1)
    white = encoded01.min(axis=-1) >= CLIP_LEVEL
    white_share = np.asarray(ndimage.mean(white, labels=labels, index=index), np.float32)

    def ring_mean(inner_px: int, outer_px: int) -> np.ndarray:
        outer = ndimage.grey_dilation(labels, size=2 * outer_px + 1)
        inner = ndimage.grey_dilation(labels, size=2 * inner_px + 1) if inner_px else labels
        ring = np.where(inner == 0, outer, 0)
        with np.errstate(invalid="ignore"):  # a spot whose ring is all other spots
            level = np.asarray(ndimage.mean(luma, labels=ring, index=index), np.float32)
        return np.nan_to_num(level, nan=1.0)

    boxes = ndimage.find_objects(labels)
    extent = np.array([max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes])
    return ClippedSpots(
        labels=labels.astype(np.int32),
        area=area,
        white_share=white_share,
        shoulder=ring_mean(0, 1),
        surround=ring_mean(RING_INNER_PX, RING_OUTER_PX),
        elongation=(extent / (2.0 * np.sqrt(area / np.pi))).astype(np.float32),
    )


def _ramp(x: np.ndarray, zero_at: float, one_at: float) -> np.ndarray:
    """0 at `zero_at`, 1 at `one_at`, linear between (either order)."""
    return np.clip((x - zero_at) / (one_at - zero_at), 0.0, 1.0).astype(np.float32)


def light_likelihood(spots: ClippedSpots) -> np.ndarray:
    """Per spot, how much it looks like a light (0–1): clipped in every channel, compact,
    with a steep shoulder, big enough not to be a glint, standing out from around it."""
    return (
        _ramp(spots.white_share, NOT_WHITE, WHITE_SHARE)
        * _ramp(spots.elongation, ELONGATED, COMPACT)
        * _ramp(spots.shoulder, SOFT_SHOULDER, STEEP_SHOULDER)
        * _ramp(spots.area, SPECK_AREA_PX, LIGHT_AREA_PX)
        * _ramp(1.0 - spots.surround, MIN_CONTRAST, FULL_CONTRAST)
    )


def light_energy(area: np.ndarray) -> np.ndarray:
    """Expected light in a light's clipped core, as a multiple of what clipping left."""
    return ENERGY_SCALE * np.power(np.maximum(area, 1.0), ENERGY_EXPONENT)


def light_gain(encoded01: np.ndarray, gain: float) -> np.ndarray:
    """Per-pixel gain for clipped small lights, 1 elsewhere, at most `gain`. `encoded01` are
    the photo's code values scaled to [0, 1], H×W×C."""
    shape = encoded01.shape[:2]
    if gain <= 1.0:
        return np.ones(shape, np.float32)
    spots = clipped_spots(encoded01)
    if spots is None:
        return np.ones(shape, np.float32)
    energy = np.minimum(light_energy(spots.area), gain)
    per_spot = 1.0 + (energy - 1.0) * light_likelihood(spots)
    return np.concatenate([[1.0], per_spot]).astype(np.float32)[spots.labels]


def recover_highlights(
    linear_rgb: np.ndarray,
    encoded01: np.ndarray,
    coc_px: np.ndarray,
    gain: float = DEFAULT_GAIN,
) -> np.ndarray:
    """Scale small clipped lights by their estimated energy (at most `gain`) where they are
    out of focus (|CoC| ≥ 1.5 px). Returns a new array; in-focus pixels are untouched."""
    if gain <= 1.0:
        return linear_rgb
    boost = light_gain(encoded01, gain) - 1.0
    boost *= np.clip(np.abs(coc_px) - 0.5, 0.0, 1.0)
    if not boost.any():
        return linear_rgb
    out = linear_rgb.copy()
    out *= (1.0 + boost)[..., None]
    return out

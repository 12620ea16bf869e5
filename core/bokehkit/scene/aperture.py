"""The aperture's shape: the kernel a point light is spread into (its bokeh disc).

Circle or a regular polygon of 5–9 blades, rotated, and optionally clipped into a cat's eye
toward the image corners, where the lens barrel cuts the aperture seen from off axis (optical
vignetting). Kernels are anti-aliased by supersampling and sum to one, so light is preserved.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from ..errors import BokehkitError

_SUPERSAMPLE = 8


@dataclass(frozen=True)
class Aperture:
    blades: int = 0  # 0 = circular
    rotation_deg: float = 0.0
    #: Strength of the cat's-eye clipping at the image corners, 0 (off) to 1 (strong).
    cat_eye: float = 0.0

    def __post_init__(self) -> None:
        if self.blades != 0 and not 3 <= self.blades <= 12:
            raise BokehkitError(f"blades must be 0 (circle) or 3 to 12, not {self.blades}")
        if not 0.0 <= self.cat_eye <= 1.0:
            raise BokehkitError(f"cat's eye must be between 0 and 1, not {self.cat_eye}")

    def kernel(self, radius_px: float, offset_xy: tuple[float, float] = (0.0, 0.0)) -> np.ndarray:
        """Normalised kernel for a disc of `radius_px`; `offset_xy` is the position in the image
        relative to the centre, in units of the half-diagonal (0 at the centre, 1 at a corner)."""
        ox, oy = offset_xy
        # Quantise the position so tiles that sit close together share one cached kernel.
        q = 0.05
        return _kernel(
            round(radius_px * 64) / 64,
            self.blades,
            self.rotation_deg % 360.0,
            round(self.cat_eye * ox / q) * q,
            round(self.cat_eye * oy / q) * q,
        )


def _inside_polygon(x: np.ndarray, y: np.ndarray, blades: int, rotation_rad: float) -> np.ndarray:
    """Points inside a regular polygon of circumradius 1 (vertices at `rotation_rad` + k·2π/n)."""
    apothem = math.cos(math.pi / blades)
    inside = np.ones(x.shape, dtype=bool)
    for k in range(blades):
        # Edge normal points halfway between two vertices.
        a = rotation_rad + (k + 0.5) * 2 * math.pi / blades
        inside &= x * math.cos(a) + y * math.sin(a) <= apothem
    return inside


@lru_cache(maxsize=512)
def _kernel(radius_px: float, blades: int, rotation_deg: float, cx: float, cy: float) -> np.ndarray:
    if radius_px <= 0.25:
        return np.ones((1, 1), dtype=np.float32)
    half = int(math.ceil(radius_px + 0.5))
    n = 2 * half + 1
    # A large disc's edge is a small share of it: fewer samples keep it smooth (and an
    # 8×8-sampled 200 px kernel took half a second).
    sub = _SUPERSAMPLE if radius_px <= 24 else 2
    # Sample positions at sub-pixel centres, in units of the radius.
    s = (np.arange(n * sub) + 0.5) / sub - half - 0.5
    x, y = np.meshgrid(s / radius_px, s / radius_px)
    if blades:
        inside = _inside_polygon(x, y, blades, math.radians(rotation_deg) - math.pi / 2)
    else:
        inside = x * x + y * y <= 1.0
    if cx or cy:
        # Cat's eye: the aperture seen off axis is cut by the barrel's exit, modelled as a
        # second disc of the same size shifted toward the image centre.
        shift = 0.9  # at full strength in the corner the eye is 0.2 radii wide
        inside &= (x + shift * cx) ** 2 + (y + shift * cy) ** 2 <= 1.0
    cover = inside.reshape(n, sub, n, sub).mean(axis=(1, 3), dtype=np.float64)
    cover /= cover.sum()
    out = cover.astype(np.float32)
    out.setflags(write=False)
    return out

"""A photographer's corrections to the blur, as Lightroom's Lens Blur offers them: a focus
*range* (a depth band that stays sharp, not one plane) and a painted *Blur* mask (white =
more blur) that pushes pixels away from the focal plane.

Both work on inverse depth (disparity), where blur is linear: r_px = K · |d − d_f| becomes
K · (distance of d from the band) for a range, and painted pixels move toward the far (or
near) end of the photo's own depth so that white paint gives them the most blur the photo
has on that side.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BokehkitError


@dataclass(frozen=True)
class FocusRange:
    """The depth band that stays sharp: near and far ends, in metres (`metres`) or as
    positions along the photo's depth, 0 = the nearest point, 1 = the farthest."""

    near: float
    far: float
    metres: bool = False

    def describe(self) -> str:
        if self.metres:
            return f"focus range {self.near:g}–{self.far:g} m"
        return f"focus range {self.near:g}–{self.far:g} of the depth (0 = nearest)"


def parse_focus_range(text: str) -> FocusRange:
    """ "NEAR,FAR": fractions 0–1 of the depth (0 = nearest), or metres with an m ("1.5m,3m")."""
    parts = [p.strip().lower() for p in str(text).split(",")]
    if len(parts) != 2 or not all(parts):
        raise BokehkitError(f"focus range wants NEAR,FAR (e.g. 0.2,0.4 or 1.5m,3m), not {text!r}")
    metres = [p.endswith("m") for p in parts]
    if metres[0] != metres[1]:
        raise BokehkitError(f"focus range {text!r}: give both ends in metres (m) or neither")
    try:
        near, far = (float(p.rstrip("m")) for p in parts)
    except ValueError:
        raise BokehkitError(f"focus range wants two numbers NEAR,FAR, not {text!r}") from None
    return check_focus_range(FocusRange(near, far, metres[0]))


def check_focus_range(rng: FocusRange) -> FocusRange:
    if not (np.isfinite(rng.near) and np.isfinite(rng.far)) or rng.near > rng.far:
        raise BokehkitError(
            f"focus range: near ({rng.near:g}) must not lie beyond far ({rng.far:g})"
        )
    if rng.metres and rng.near <= 0:
        raise BokehkitError(f"focus range: {rng.near:g} m is not a distance in front of the lens")
    if not rng.metres and not (0.0 <= rng.near and rng.far <= 1.0):
        raise BokehkitError(
            f"focus range {rng.near:g},{rng.far:g}: fractions of the depth run from 0 (nearest) "
            "to 1 (farthest); for metres write 1.5m,3m"
        )
    return rng


def depth_extent(inverse_depth: np.ndarray) -> tuple[float, float]:
    """(farthest, nearest) inverse depth of the photo."""
    return float(inverse_depth.min(initial=np.inf)), float(inverse_depth.max(initial=-np.inf))


def band_disparity(inverse_depth: np.ndarray, metric: bool, rng: FocusRange) -> tuple[float, float]:
    """The band as (far, near) inverse depth in the map's own units."""
    if rng.metres:
        if not metric:
            raise BokehkitError(
                "a focus range in metres needs metric depth (--depth-units m, or a phone's "
                "depth); give it as fractions 0–1 of the depth instead, e.g. 0.2,0.4"
            )
        return 1.0 / rng.far, 1.0 / rng.near
    d_far, d_near = depth_extent(inverse_depth)
    span = d_near - d_far
    # positions run from the nearest point (0) to the farthest (1)
    return d_near - rng.far * span, d_near - rng.near * span


def signed_distance_from_band(inverse_depth: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    """d minus the nearest edge of the band (0 inside it); positive in front, as the signed
    circle of confusion is."""
    d_far, d_near = band
    return inverse_depth - np.clip(inverse_depth, np.float32(d_far), np.float32(d_near))


def push_away(inverse_depth: np.ndarray, band: tuple[float, float], blur: np.ndarray) -> np.ndarray:
    """Move painted pixels (blur mask in [0, 1]) away from the focal band, toward the far end
    of the photo's depth (the near end for pixels in front of the band), in proportion to the
    paint: white reaches that end, grey part of the way. Unpainted pixels keep their depth."""
    d_far, d_near = band
    lo, hi = depth_extent(inverse_depth)
    behind = inverse_depth <= d_near
    # A pixel on the focal plane goes to whichever side has room (a background focus has none
    # behind it).
    if d_far - lo < 0.25 * (hi - d_near):
        behind = inverse_depth < d_far
    target = np.where(behind, np.float32(lo), np.float32(hi))
    blur = np.clip(np.asarray(blur, np.float32), 0.0, 1.0)
    return (inverse_depth + blur * (target - inverse_depth)).astype(np.float32)

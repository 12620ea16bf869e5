"""Depth edges moved to where the photo has them.

Real depth maps disagree with the photo at every depth edge: a network's map is soft and
low-resolution, a phone's is smaller than the photo and shifted, a painted layer follows the
brush, and even an exact map samples thin structures at pixel centres that the anti-aliased
photo barely shows. Rendered as they are, the in-between depths float between the surfaces
(a rim of background that stays sharp around a sharp subject, a half-blurred subject edge)
and thin rods the photo does not show draw lines across the blur.

Near every depth jump, each pixel is given back to one of the two surfaces by its colour:
the surface's colour is the mean colour of the pixels around that clearly belong to it (blur
radius within a quarter of the jump from that surface's), and a pixel that lies between the
two takes the mean blur radius of the surface whose colour it is closer to, along the line
between the two colours.
Where the two surfaces look alike, the colour cannot tell and the pixel keeps its radius.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

#: How far (px) around a pixel the two surfaces are looked for.
WINDOW_RADIUS_PX = 4
#: Two blur radii differ by a jump from this many px, or this share of the larger.
JUMP_PX = 2.0
JUMP_FRACTION = 0.25
#: The two surfaces' colours must differ by this much (linear RGB distance) to decide.
MIN_COLOUR_SEPARATION = 0.02
#: A pixel moves only when its colour is clearly nearer one side (projection beyond 0.5 by).
DECISION_MARGIN = 0.15


def depth_jump(coc_px):
    """The least difference in blur radius (px) between two surfaces at `coc_px` that counts
    as a depth jump."""
    return np.maximum(JUMP_PX, JUMP_FRACTION * np.abs(coc_px))


def snap_depth_edges(
    linear_rgb: np.ndarray, coc_px: np.ndarray, radius_px: int = WINDOW_RADIUS_PX
) -> np.ndarray:
    """Signed blur radii with the pixels near depth jumps given to the surface whose colour
    they have. Returns a new array (the input where nothing moved)."""
    r = int(radius_px)
    size = 2 * r + 1
    near = ndimage.maximum_filter(coc_px, size=size, mode="nearest")
    far = ndimage.minimum_filter(coc_px, size=size, mode="nearest")
    spread = near - far
    jump = depth_jump(np.maximum(np.abs(near), np.abs(far)))
    ys, xs = np.nonzero(spread > jump)
    if ys.size == 0:
        return coc_px
    h, w = coc_px.shape
    n = ys.size
    c0 = coc_px[ys, xs]
    lo, hi = far[ys, xs], near[ys, xs]
    near_cut = lo + 0.75 * (hi - lo)  # clearly the near surface at or above
    far_cut = lo + 0.25 * (hi - lo)  # clearly the far surface at or below
    sums = {k: np.zeros((n, 3), np.float64) for k in ("near", "far")}
    coc_sums = {k: np.zeros(n, np.float64) for k in ("near", "far")}
    counts = {k: np.zeros(n, np.float64) for k in ("near", "far")}
    for dy in range(-r, r + 1):
        qy = np.clip(ys + dy, 0, h - 1)
        for dx in range(-r, r + 1):
            qx = np.clip(xs + dx, 0, w - 1)
            cq = coc_px[qy, qx]
            colour = linear_rgb[qy, qx]
            for key, member in (("near", cq >= near_cut), ("far", cq <= far_cut)):
                sums[key] += colour * member[:, None]
                coc_sums[key] += cq * member
                counts[key] += member
    both = (counts["near"] > 0) & (counts["far"] > 0)
    f = sums["near"] / np.maximum(counts["near"], 1)[:, None]
    b = sums["far"] / np.maximum(counts["far"], 1)[:, None]
    diff = f - b
    sep2 = np.einsum("ij,ij->i", diff, diff)
    pixel = linear_rgb[ys, xs].astype(np.float64)
    alpha = np.einsum("ij,ij->i", pixel - b, diff) / np.maximum(sep2, 1e-12)
    decided = both & (sep2 > MIN_COLOUR_SEPARATION**2)
    to_near = decided & (alpha > 0.5 + DECISION_MARGIN)
    to_far = decided & (alpha < 0.5 - DECISION_MARGIN)
    # A pixel that moves takes its surface's mean radius; one already on it keeps its own.
    near_coc = coc_sums["near"] / np.maximum(counts["near"], 1)
    far_coc = coc_sums["far"] / np.maximum(counts["far"], 1)
    # Who may move: pixels between the two surfaces (a soft or enlarged map), and pixels
    # right at a jump (a map off by a pixel) whose colour is decidedly the other side's.
    # Further from a jump, a pixel on one surface that merely looks like the other stays.
    between = (c0 > far_cut) & (c0 < near_cut)
    at_jump = (
        ndimage.maximum_filter(coc_px, size=3, mode="nearest")[ys, xs]
        - ndimage.minimum_filter(coc_px, size=3, mode="nearest")[ys, xs]
        > jump[ys, xs]
    )
    decisive = np.abs(alpha - 0.5) > 0.5 - DECISION_MARGIN
    movable = between | (at_jump & decisive)
    to_near &= movable & (c0 < near_cut)
    to_far &= movable & (c0 > far_cut)
    new = c0.copy()
    new[to_near] = near_coc[to_near]
    new[to_far] = far_coc[to_far]
    out = coc_px.copy()
    out[ys, xs] = new
    return out

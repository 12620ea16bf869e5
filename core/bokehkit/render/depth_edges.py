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

Thin near structures (rods, wires, up to `THIN_PX` wide) are settled first, and the other
way round (`drop_unseen_thin`): their own pixels are mostly what lies behind them, so their
colour says nothing of which surface they are, and they keep their depth only where the
photo shows them standing out from the surface around.
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


def _around(ys: np.ndarray, xs: np.ndarray, shape: tuple, lo: int, hi: int):
    """For each offset (dy, dx) in [lo, hi]², the pixels at (ys + dy, xs + dx), clamped to
    the image (as scipy's mode "nearest"): (rows, columns) index arrays."""
    h, w = shape
    for dy in range(lo, hi + 1):
        qy = np.clip(ys + dy, 0, h - 1)
        for dx in range(lo, hi + 1):
            yield qy, np.clip(xs + dx, 0, w - 1)


#: Near structures of the depth map this narrow (px) or less are thin (rods, wires, twigs).
THIN_PX = 2
#: A thin structure's pixel is shown by the photo when its colour (code values) stands out
#: from the surface behind around it by this much, and by SHOWN_OVER_TEXTURE times that
#: surface's own spread of colour.
MIN_SHOWN_CONTRAST = 0.06
SHOWN_OVER_TEXTURE = 1.5
#: Whether the photo shows a thin structure is decided over its pixels within this many px.
SHOWN_ALONG_PX = 4
#: Thin structures that the photo does not show are given to the surface behind them.
DROP_UNSEEN_THIN = True


def drop_unseen_thin(linear_rgb: np.ndarray, coc_px: np.ndarray) -> np.ndarray:
    """Signed blur radii with the thin near structures of the map (up to `THIN_PX` wide) that
    the photo does not show given the radius of the surface behind them.

    A depth map samples a rod at pixel centres; the anti-aliased photo shows a rod thinner
    than a pixel as a faint tint of what is behind it. Such a pixel holds mostly the surface
    behind, so rendered at the rod's depth it draws that surface's texture as a sharp line
    across its blur (pale streaks on a printed star field). Its colour cannot say which
    surface it belongs to (the rod's own mean colour is made of the same mixed pixels), so it
    is compared with the surface around it instead: a rod the photo shows stands out from its
    texture; one it does not show is not drawn."""
    h, w = coc_px.shape
    # What the map is without its thin near ridges: its grey opening by a (THIN_PX + 1)-
    # square, an erosion and a dilation; the dilation only where the erosion has cut a
    # ridge (the opening is never below the erosion), since whole-image passes cost.
    eroded = ndimage.minimum_filter(coc_px, size=THIN_PX + 1, mode="nearest")
    ys, xs = np.nonzero(coc_px - eroded > JUMP_PX)  # a jump is at least JUMP_PX
    if ys.size == 0:
        return coc_px
    lo, hi = -(THIN_PX // 2), THIN_PX - THIN_PX // 2  # the footprint's reach, as scipy's
    opened = np.full(ys.size, -np.inf, np.float32)
    floor = np.full(ys.size, np.inf, np.float32)  # the farthest surface within reach
    for qy, qx in _around(ys, xs, (h, w), lo, hi):
        np.maximum(opened, eroded[qy, qx], out=opened)
        np.minimum(floor, eroded[qy, qx], out=floor)
    # Thin: the ridge stands a jump above what is left without it, and what is left is the
    # surface behind (on a soft map, a blurred rod is a wide ridge whose crest alone is
    # narrow: shaving the crest leaves it halfway up, and the rod is not thin there).
    thin = (coc_px[ys, xs] - opened > depth_jump(opened)) & (
        opened - floor <= 0.5 * depth_jump(floor)
    )
    ys, xs, opened = ys[thin], xs[thin], opened[thin]
    if ys.size == 0:
        return coc_px
    n = ys.size
    behind_level = opened + 0.5 * depth_jump(opened)
    code = lambda q: np.sqrt(np.maximum(q, 0.0))  # noqa: E731  (close to code values)
    total = np.zeros((n, 3))
    total2 = np.zeros((n, 3))
    count = np.zeros(n)
    for qy, qx in _around(ys, xs, (h, w), -THIN_PX, THIN_PX):
        behind = (coc_px[qy, qx] <= behind_level)[:, None]
        colour = code(linear_rgb[qy, qx, :3].astype(np.float64))
        total += colour * behind
        total2 += colour * colour * behind
        count += behind[:, 0]
    has = count >= 3
    mean = total / np.maximum(count, 1)[:, None]
    spread = np.sqrt(np.maximum(total2 / np.maximum(count, 1)[:, None] - mean**2, 0.0).sum(-1))
    contrast = np.linalg.norm(code(linear_rgb[ys, xs, :3].astype(np.float64)) - mean, axis=-1)
    shown = has & (contrast > np.maximum(MIN_SHOWN_CONTRAST, SHOWN_OVER_TEXTURE * spread))
    # Decided along the structure too, by the share of its pixels nearby that the photo
    # shows: where it shows most of them, the rest are the rod crossing a surface of its
    # own colour, and stay with it.
    m = SHOWN_ALONG_PX
    y0, x0 = max(int(ys.min()) - m, 0), max(int(xs.min()) - m, 0)
    y1, x1 = min(int(ys.max()) + m + 1, h), min(int(xs.max()) + m + 1, w)
    judged = np.zeros((y1 - y0, x1 - x0), np.float32)
    seen = np.zeros_like(judged)
    judged[ys - y0, xs - x0] = has
    seen[ys - y0, xs - x0] = shown
    size = 2 * m + 1
    share = ndimage.uniform_filter(seen, size) / np.maximum(
        ndimage.uniform_filter(judged, size), 1e-6
    )
    # A pixel the photo shows is never dropped (behind a blurred rod, an in-focus wall would
    # draw the rod's own colour there, sharp).
    drop = has & ~shown & (share[ys - y0, xs - x0] < 0.5)
    out = coc_px.copy()
    out[ys[drop], xs[drop]] = opened[drop]
    return out


def snap_depth_edges(
    linear_rgb: np.ndarray, coc_px: np.ndarray, radius_px: int = WINDOW_RADIUS_PX
) -> np.ndarray:
    """Signed blur radii with the pixels near depth jumps given to the surface whose colour
    they have. Returns a new array (the input where nothing moved)."""
    if DROP_UNSEEN_THIN:
        coc_px = drop_unseen_thin(linear_rgb, coc_px)
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
    for qy, qx in _around(ys, xs, (h, w), -r, r):
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

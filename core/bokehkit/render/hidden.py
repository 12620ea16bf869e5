"""What the photo hides: a guess of the surface behind every occluding edge.

A thin lens sees around the edge of a nearer object: through the translucent rim of a blurred
foreground, and beside the edge of a sharp one, light comes from the background that the
photo (a pinhole view) shows nowhere. The renderer needs a colour and a blur radius for that
hidden background. It is guessed once for the whole image, before rendering, so it does not
depend on how the image is cut into tiles:

* the image is cut into bands of blur radius, each a depth jump wide;
* for each band, the pixels clearly farther than it (by a jump) are "known", and what lies
  behind the band's pixels is the average of the known pixels around it, over a reach that
  grows with its distance from them: just behind the edge, the background as it was beside
  it; deeper in, a smoother average of the same side. (The nearest known pixel alone drew
  streaks across the rim of a blurred foreground; one average of everything around mixed
  in what lies on the occluder's other side.) Its blur radius is the nearest known one's;
* only band pixels within reach of a real jump get a guess (a receding floor hides nothing),
  and only as far inside the occluder as its own blur plus the background's can show it;
* only behind occluders that are blurred themselves: the rim of a sharp one is too narrow
  to show anything, and beside its edge the background's own blur, renormalised, continues
  what the photo shows better than a guess does (measured on the fidelity benchmark).

Everything is computed at reduced resolution (the guess is smooth) and read back per tile
window with bilinear interpolation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from .resample import box_down

#: A surface hides what is behind it when it is nearer by more than this many px of CoC
#: radius, or this fraction of its own radius, whichever is more (a "jump"). Slabs of one
#: receding surface are at most half a jump apart (see classical.slab_radii).
OCCLUSION_JUMP_PX = 2.0
OCCLUSION_JUMP_FRACTION = 0.25
#: Nearer by less than this share of a jump is the same surface; by a whole jump, occluding.
SAME_SURFACE_SHARE = 0.6
#: Occluders blurred less than this (px of CoC radius) show nothing of what they hide; from
#: twice this, all of it.
MIN_OCCLUDER_BLUR_PX = 1.5
#: The guess is made at a resolution of at most this many pixels (it is smooth).
MAX_GUESS_PIXELS = 400_000


def occlusion_jump(coc: np.ndarray | float) -> np.ndarray | float:
    """How much nearer (px of CoC radius) a surface must be to hide what is behind it."""
    return np.maximum(OCCLUSION_JUMP_PX, OCCLUSION_JUMP_FRACTION * np.abs(coc))


def occluder_weight(front_coc: np.ndarray, back_coc: np.ndarray) -> np.ndarray:
    """How much of the guessed surface at `back_coc` shows behind a pixel at `front_coc`:
    the pixel must hide it (be a jump nearer) and be blurred enough to show it."""
    blurred = np.clip(np.abs(front_coc) / MIN_OCCLUDER_BLUR_PX - 1.0, 0.0, 1.0)
    return occludes(front_coc, back_coc) * blurred


def occludes(nearer_coc, farther_coc) -> np.ndarray:
    """0 where a surface at `nearer_coc` continues one at `farther_coc`, 1 where it hides it
    (a jump nearer), linear between."""
    share = (np.asarray(nearer_coc) - farther_coc) / occlusion_jump(nearer_coc)
    return np.clip((share - SAME_SURFACE_SHARE) / (1.0 - SAME_SURFACE_SHARE), 0.0, 1.0)


@dataclass
class HiddenBackground:
    """The guess at 1/`factor` resolution: straight colour, blur radius and a weight in
    [0, 1] (0 where nothing is hidden or it cannot show)."""

    colour: np.ndarray  # h×w×3
    coc: np.ndarray  # h×w
    weight: np.ndarray  # h×w
    factor: int
    shape: tuple[int, int]  # full-resolution H, W

    def window(self, y0: int, y1: int, x0: int, x1: int):
        """The guess at full resolution on rows y0..y1, columns x0..x1 (which may leave the
        image: mirrored, like the renderer's own windows), cut to where its weight is not
        zero: ((colour, coc, weight), (row, column) of that part in the window), or None."""
        ys = _mirror(np.arange(y0, y1), self.shape[0])
        xs = _mirror(np.arange(x0, x1), self.shape[1])
        f = self.factor
        # Which rows and columns of the window touch a cell of non-zero weight (or its
        # neighbour, which bilinear interpolation reaches).
        rows_lo = np.flatnonzero(ndimage.binary_dilation(self.weight.any(axis=1), iterations=1))
        cols_lo = np.flatnonzero(ndimage.binary_dilation(self.weight.any(axis=0), iterations=1))
        use_y = np.flatnonzero(np.isin(ys // f, rows_lo))
        use_x = np.flatnonzero(np.isin(xs // f, cols_lo))
        if use_y.size == 0 or use_x.size == 0:
            return None
        oy, oy1, ox, ox1 = use_y[0], use_y[-1] + 1, use_x[0], use_x[-1] + 1
        weight = _bilinear(self.weight, ys[oy:oy1], xs[ox:ox1], f)
        if not weight.any():
            return None
        parts = (_bilinear(self.colour, ys[oy:oy1], xs[ox:ox1], f),
                 _bilinear(self.coc, ys[oy:oy1], xs[ox:ox1], f), weight)  # fmt: skip
        return parts, (int(oy), int(ox))


def _mirror(idx: np.ndarray, n: int) -> np.ndarray:
    """Symmetric mirroring of indices into 0..n−1 (as numpy's pad mode 'symmetric')."""
    period = 2 * n
    idx = np.mod(idx, period)
    return np.where(idx >= n, period - 1 - idx, idx)


def _bilinear(a: np.ndarray, ys: np.ndarray, xs: np.ndarray, f: int) -> np.ndarray:
    """a (at 1/f resolution) sampled at full-resolution pixel centres ys × xs."""
    if f == 1:
        return a[np.ix_(ys, xs)]

    def weights(idx, n):
        u = (idx + 0.5) / f - 0.5
        i0 = np.clip(np.floor(u).astype(np.int64), 0, n - 1)
        i1 = np.minimum(i0 + 1, n - 1)
        t = np.clip(u - np.floor(u), 0.0, 1.0).astype(np.float32)
        t = np.where(u < 0, 0.0, t).astype(np.float32)
        return i0, i1, t

    y0, y1, ty = weights(ys, a.shape[0])
    x0, x1, tx = weights(xs, a.shape[1])
    rows = a[y0] * (1 - ty).reshape(-1, *([1] * (a.ndim - 1))) + a[y1] * ty.reshape(
        -1, *([1] * (a.ndim - 1))
    )
    txs = tx.reshape(1, -1, *([1] * (a.ndim - 2)))
    return (rows[:, x0] * (1 - txs) + rows[:, x1] * txs).astype(np.float32)


def guess_factor(h: int, w: int) -> int:
    """The power-of-two reduction that brings the image under MAX_GUESS_PIXELS."""
    f = 1
    while (h / f) * (w / f) > MAX_GUESS_PIXELS:
        f *= 2
    return f


def band_edges(lo: float, hi: float) -> np.ndarray:
    """Band boundaries from `lo` to past `hi` (signed CoC), each band one jump wide."""
    edges = [lo]
    while edges[-1] <= hi:
        c = edges[-1]
        # Behind the focal plane |c| shrinks toward the nearer end: measure the jump there, so
        # no band is wider than a jump.
        size = abs(c) if c >= 0 else abs(c) / (1.0 + OCCLUSION_JUMP_FRACTION)
        edges.append(c + max(OCCLUSION_JUMP_PX, OCCLUSION_JUMP_FRACTION * size))
    return np.asarray(edges, np.float32)


def _block_extremes(coc: np.ndarray, f: int) -> tuple[np.ndarray, np.ndarray]:
    """Per f×f block: the largest (nearest) and smallest (farthest) blur radius."""
    if f == 1:
        return coc, coc
    h, w = coc.shape
    ph, pw = -h % f, -w % f
    a = np.pad(coc, ((0, ph), (0, pw)), mode="edge")
    blocks = a.reshape(a.shape[0] // f, f, a.shape[1] // f, f)
    return blocks.max(axis=(1, 3)), blocks.min(axis=(1, 3))


def _local_average(colour: np.ndarray, known: np.ndarray, distance: np.ndarray) -> np.ndarray:
    """At every pixel, the Gaussian-weighted average of the known pixels around it, with σ
    half its distance to the nearest known pixel (at least one pixel): normalised
    convolution at octave-spaced σ, interpolated in log σ."""
    want = np.log2(np.maximum(distance / 2.0, 1.0))
    levels = int(np.ceil(want.max(initial=0.0))) + 1
    weight = known.astype(np.float32)
    averages = []
    for k in range(levels):
        sigma = float(2**k)
        num = ndimage.gaussian_filter(colour * weight[..., None], (sigma, sigma, 0), mode="nearest")
        den = ndimage.gaussian_filter(weight, sigma, mode="nearest")
        averages.append(num / np.maximum(den, 1e-6)[..., None])
    lower = np.clip(np.floor(want).astype(np.int32), 0, levels - 1)
    upper = np.minimum(lower + 1, levels - 1)
    t = (want - lower)[..., None].astype(np.float32)
    stack = np.stack(averages)
    rows, cols = np.indices(distance.shape)
    return stack[lower, rows, cols] * (1 - t) + stack[upper, rows, cols] * t


def guess_hidden_background(rgb: np.ndarray, coc: np.ndarray) -> HiddenBackground | None:
    """The background hidden behind every occluding edge of `rgb` (linear, H×W×3) with blur
    radii `coc` (signed px, positive = near); None when nothing in the image occludes."""
    h, w = coc.shape
    f = guess_factor(h, w)
    colour_lo = box_down(rgb.astype(np.float32, copy=False), f)
    near_lo, far_lo = _block_extremes(coc, f)
    mean_lo = box_down(coc.astype(np.float32, copy=False), f)
    lh, lw = near_lo.shape
    # A cell is next to a jump when some cell around it is entirely farther by a jump.
    farthest_around = ndimage.minimum_filter(far_lo, size=3, mode="nearest")
    jump_cells = near_lo - occlusion_jump(near_lo) > farthest_around
    if not jump_cells.any():
        return None
    colour = np.zeros((lh, lw, 3), np.float32)
    back_coc = np.zeros((lh, lw), np.float32)
    weight = np.zeros((lh, lw), np.float32)
    edges = band_edges(float(far_lo.min()), float(near_lo.max()))
    band = np.clip(np.searchsorted(edges, near_lo, side="right") - 1, 0, len(edges) - 2)
    for k in np.unique(band[jump_cells]):
        nearer_end = float(edges[k + 1])
        if max(abs(float(edges[k])), abs(nearer_end)) < MIN_OCCLUDER_BLUR_PX:
            continue  # too sharp to show what it hides
        in_band = band == k
        known = near_lo < float(edges[k]) - occlusion_jump(float(edges[k]))
        # The band's own jumps: its cells beside a known cell.
        seeds = in_band & jump_cells & ndimage.binary_dilation(known, np.ones((3, 3), bool))
        if not seeds.any():
            continue
        # Far enough inside the occluder that its own blur and the background's can show it.
        far_reach = float(np.abs(mean_lo[known]).max(initial=0.0))
        reach = (abs(nearer_end) + far_reach + 2.0) / f + 1.0
        ys, xs = np.nonzero(seeds)
        m = int(math.ceil(reach)) + 2
        by0, by1 = max(ys.min() - m, 0), min(ys.max() + m + 1, lh)
        bx0, bx1 = max(xs.min() - m, 0), min(xs.max() + m + 1, lw)
        box = (slice(by0, by1), slice(bx0, bx1))
        dist = ndimage.distance_transform_edt(~seeds[box])
        target = in_band[box] & (dist <= reach)
        if not target.any():
            continue
        to_known, (iy, ix) = ndimage.distance_transform_edt(~known[box], return_indices=True)
        ramp = np.clip(reach - dist, 0.0, 1.0).astype(np.float32)  # soft end of the reach
        colour[box][target] = _local_average(colour_lo[box], known[box], to_known)[target]
        back_coc[box][target] = mean_lo[box][iy, ix][target]
        weight[box][target] = ramp[target]
    if not weight.any():
        return None
    return HiddenBackground(colour, back_coc, weight, f, (h, w))

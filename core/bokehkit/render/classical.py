"""The classical renderer: physically based, occlusion-aware layered defocus on the CPU.

The scene is cut into thin slabs of equal blur radius (in signed circle-of-confusion, which is
linear in disparity, so slabs are slabs of depth). Slabs are blurred by the aperture kernel
and composited from far to near with "over", like light that the nearer surfaces block:

* a sharp surface covers what is behind it completely, so blurred background never leaks
  onto an in-focus edge (no halo);
* a blurred surface spreads its own coverage with its colour, so its edge turns translucent
  and what lies behind shows through it (partial occlusion). What is behind it was hidden in
  the photo: `hidden.py` guesses it once for the whole image, and it is rendered as a second
  layer of pixels behind the occluders;
* a surface does not occlude itself: where a layer continues the surface already in front
  (its blur radius differs by less than a depth jump), it is added to that surface rather
  than laid over it, so the boundary between two slabs of one receding surface never lets
  the background show through as a line.

Each pixel lies between two slabs and is blurred by both kernels with tent weights, so blur
grows smoothly with depth; the pixels between the same two slabs are composited together as
one layer (compositing the two parts over each other would make a surface occlude itself).
A slab of radius r is blurred at 1/s resolution (s a power of two with r/s ≥
`MIN_LOW_RES_RADIUS`): the blurred picture has no detail finer than that, so the cost per
slab stays almost constant however large the blur, and the composite itself is kept at the
resolution of the blurriest layer so far, refined as the layers come closer to focus. The
image is processed in tiles, which bounds memory, gives progress and cancellation points,
runs on all cores, and lets the kernel change across the frame (cat's eye).
"""

from __future__ import annotations

import math
import os
import threading
from collections import OrderedDict
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.fft import irfft2, next_fast_len, rfft2

from ..progress import Progress
from .base import Renderer, RenderJob
from .hidden import guess_hidden_background, occluder_weight, occludes
from .light_sprites import draw_lights
from .resample import bilinear_up_planes, box_down_planes

TILE_PX = 512
#: Slabs grow by 1 px of radius up to here, then by `SLAB_GROWTH` of their radius.
LINEAR_SLABS_UP_TO_PX = 6.0
SLAB_GROWTH = 0.12
#: Blur at reduced resolution while the kernel keeps at least this radius in low-res pixels.
MIN_LOW_RES_RADIUS = 6.0
_EMPTY = 1e-6
#: Rows per band of the slab/tent computation.
TENT_ROWS = 128
#: Render the guessed hidden background behind occluders (False: translucent rims show only
#: what the photo shows, renormalised).
GUESS_HIDDEN = True
#: An in-focus layer hides everything behind it (False: it may join a surface just behind).
IN_FOCUS_OCCLUDES = True
#: Below this radius the kernel is a single pixel.
SHARP_RADIUS_PX = 0.25


def slab_radii(max_radius_px: float) -> np.ndarray:
    """Unsigned slab radii from 0 up to at least `max_radius_px`."""
    # A half-pixel slab first: a CoC under a pixel wide softens a little, not by a whole pixel.
    radii = [0.0, 0.5, 1.0]
    while radii[-1] < max_radius_px:
        r = radii[-1]
        radii.append(r + 1.0 if r < LINEAR_SLABS_UP_TO_PX else r * (1.0 + SLAB_GROWTH))
    return np.asarray(radii, dtype=np.float32)


def signed_slabs(coc: np.ndarray) -> np.ndarray:
    """Signed slab radii, far (most negative) to near, covering the range of `coc`."""
    lo, hi = float(coc.min(initial=0.0)), float(coc.max(initial=0.0))
    back = -slab_radii(-lo)[:0:-1] if lo < 0 else np.zeros(0, np.float32)
    front = slab_radii(hi)
    return np.concatenate([back, front]).astype(np.float32)


def low_res_factor(radius_px: float) -> int:
    """The power-of-two downsampling at which a blur of `radius_px` is computed."""
    if radius_px < 2 * MIN_LOW_RES_RADIUS:
        return 1
    return 2 ** int(math.floor(math.log2(radius_px / MIN_LOW_RES_RADIUS)))


def _planes(a: np.ndarray, pool: ThreadPoolExecutor | None = None) -> np.ndarray:
    """H×W×C → C×H×W, contiguous float32 (a channel a thread on `pool`)."""
    if pool is None:
        return np.ascontiguousarray(np.moveaxis(a, -1, 0), dtype=np.float32)
    planes = np.empty((a.shape[-1], *a.shape[:-1]), np.float32)
    list(pool.map(lambda c: np.copyto(planes[c], a[..., c], casting="unsafe"), range(len(planes))))
    return planes


def _window(a: np.ndarray, y0: int, y1: int, x0: int, x1: int, planes=False) -> np.ndarray:
    """a[y0:y1, x0:x1] (a[:, y0:y1, x0:x1] for `planes`), mirrored where the window leaves
    the image (the photo "continues")."""
    if planes:
        return np.stack([_window(plane, y0, y1, x0, x1) for plane in a])
    h, w = a.shape[:2]
    cy0, cy1, cx0, cx1 = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
    out = a[cy0:cy1, cx0:cx1]
    pads = [(cy0 - y0, y1 - cy1), (cx0 - x0, x1 - cx1)]
    if any(p for pair in pads for p in pair):
        pads += [(0, 0)] * (a.ndim - 2)
        # Repeatedly mirror if the pad exceeds the image (tiny images, huge blurs).
        out = np.pad(out, pads, mode="symmetric")
    return out


class ClassicalRenderer(Renderer):
    """Physically based, occlusion-aware: everything the pipeline offers applies (depth-edge
    snapping, highlight recovery, grain), any blur radius."""

    name = "classical"
    draws_lights = True

    def __init__(self, tile_px: int = TILE_PX, threads: int | None = None) -> None:
        self.tile_px = tile_px
        self.threads = threads or min(os.cpu_count() or 1, 8)

    def render(self, job: RenderJob, progress: Progress) -> np.ndarray:
        pool = ThreadPoolExecutor(self.threads) if self.threads > 1 else None
        try:
            return self._render(job, progress, pool)
        finally:
            if pool is not None:
                pool.shutdown(cancel_futures=True)

    def _render(self, job: RenderJob, progress: Progress, pool) -> np.ndarray:
        rgb = job.linear_rgb
        coc = job.signed_coc_px.astype(np.float32, copy=False)
        h, w = coc.shape
        slabs = signed_slabs(coc)
        out = np.empty_like(rgb, dtype=np.float32)
        tiles = [
            (y, min(y + self.tile_px, h), x, min(x + self.tile_px, w))
            for y in range(0, h, self.tile_px)
            for x in range(0, w, self.tile_px)
        ]
        max_r = float(np.abs(slabs).max(initial=0.0))
        # Once for the whole image: colour planes, each pixel's slab and tent weight, and the
        # hidden background (beside the other two, on the pool).
        progress.update(0.0, "guessing the hidden background")
        hidden = None
        if GUESS_HIDDEN:
            hidden = (
                guess_hidden_background(rgb, coc)
                if pool is None
                else pool.submit(guess_hidden_background, rgb, coc)
            )
        planes = _planes(rgb, pool)
        tent = _tent(coc, slabs, pool)
        if pool is not None and hidden is not None:
            hidden = hidden.result()
        half_diag = 0.5 * math.hypot(w, h)
        done = 0
        progress.update(0.0, "rendering bokeh")

        def run(tile):
            progress.check_cancelled()
            y0, y1, x0, x1 = tile
            centre = ((x0 + x1) / 2 - w / 2) / half_diag, ((y0 + y1) / 2 - h / 2) / half_diag
            out[y0:y1, x0:x1] = _render_tile(
                planes, coc, tent, hidden, slabs, tile, max_r, job.aperture, centre
            )
            return tile

        if pool is not None and len(tiles) > 1:
            futures = [pool.submit(run, t) for t in tiles]
            try:
                for f in futures:
                    f.result()
                    done += 1
                    progress.update(done / len(tiles), f"rendering bokeh, tile {done}/{len(tiles)}")
            except BaseException:
                progress.cancel_event.set()  # stop the other tiles quickly
                for f in futures:
                    f.cancel()
                raise
        else:
            for t in tiles:
                run(t)
                done += 1
                progress.update(done / len(tiles), f"rendering bokeh, tile {done}/{len(tiles)}")
        if job.lights:
            progress.update(1.0, f"drawing {len(job.lights)} recovered lights")
            draw_lights(out, coc, job.lights, job.aperture)
        return out


def _render_tile(planes, coc, tent, hidden, slabs, tile, max_r, aperture, centre_offset):
    """The tile's pixels (H×W×3): `planes` is the photo (3×H×W), `tent` each pixel's slab
    and weight toward the next (`_tent`)."""
    s_max = low_res_factor(max_r)
    # The composite covers one coarsest cell more on every side, so that refining it near
    # the tile's border interpolates with what lies beyond instead of repeating the border
    # (which drew the tile grid into smooth blur).
    margin = s_max
    y0, y1, x0, x1 = tile
    y0, y1, x0, x1 = y0 - margin, y1 + margin, x0 - margin, x1 + margin
    th, tw = y1 - y0, x1 - x0
    halo = int(math.ceil(max_r)) + 4 * s_max + 2
    # Everything within reach of the largest blur, read once.
    wy0, wy1, wx0, wx1 = y0 - halo, y1 + halo, x0 - halo, x1 + halo
    window_of = (wy0, wy1, wx0, wx1)
    rgb_w = _window(planes, *window_of, planes=True)
    coc_w = _window(coc, *window_of)
    tent_w = tuple(_window(a, *window_of) for a in tent)
    front = _Fragments(rgb_w, coc_w, None, slabs, tent=tent_w)
    back = None
    if hidden is not None:
        found = hidden.window(wy0, wy1, wx0, wx1)
        if found is not None:
            (colour, back_coc, weight), (oy, ox) = found
            # Only behind pixels that are clearly nearer than the guessed surface.
            h_, w_ = weight.shape
            weight *= occluder_weight(coc_w[oy : oy + h_, ox : ox + w_], back_coc)
            if weight.any():
                back = _Fragments(_planes(colour), back_coc, weight, slabs, (oy, ox))
    parts = [front] if back is None else [back, front]
    lowest = min(int(p.lower_min) for p in parts)
    highest = max(int(p.lower_max) for p in parts)

    # The composite so far, kept at the resolution of the blurriest group not yet followed by
    # a sharper one: far-away blur is composited at low resolution and refined only as the
    # groups come closer to the focal plane. Planes (channels first, each contiguous): the
    # front surface (premultiplied RGB, coverage, CoC × coverage) and, flattened, everything
    # behind it (RGB, coverage).
    acc, scale = None, 1
    # A group is the pixels between slab i and slab i+1, composited far to near as ONE layer:
    # blurred by slab i's kernel with weight 1−t plus slab i+1's with weight t. (Compositing
    # the two parts over each other would let a surface occlude itself at its edges.)
    for i in range(lowest, highest + 1):
        r_near = abs(float(slabs[i]))
        r_far = abs(float(slabs[min(i + 1, len(slabs) - 1)]))
        s = low_res_factor(min(r_near, r_far))
        pad = -(-(int(math.ceil(max(r_near, r_far))) + 2 * s + 1) // s) * s  # a multiple of s
        limits = (halo - pad, halo + th + pad, halo - pad, halo + tw + pad)
        boxes = [b for b in (p.box(i, *limits) for p in parts) if b is not None]
        if not boxes:
            continue
        ya, yb = min(b[0] for b in boxes), max(b[1] for b in boxes)
        xa, xb = min(b[2] for b in boxes), max(b[3] for b in boxes)
        # Output rectangle, relative to the tile and aligned to s: the group's box grown by
        # the blur, clipped to the tile (rounded up to whole blocks).
        ry0 = max((ya - halo - pad) // s * s, 0)
        ry1 = min(-(-(yb - halo + pad) // s) * s, -(-th // s) * s)
        rx0 = max((xa - halo - pad) // s * s, 0)
        rx1 = min(-(-(xb - halo + pad) // s) * s, -(-tw // s) * s)
        if ry0 >= ry1 or rx0 >= rx1:
            continue
        window = (halo + ry0 - pad, halo + ry1 + pad, halo + rx0 - pad, halo + rx1 + pad)
        layer = np.zeros((8, window[1] - window[0], window[3] - window[2]), np.float32)
        if not any([p.add_layer(i, (ya, yb, xa, xb), window, layer) for p in parts]):
            continue
        low = box_down_planes(layer, s)
        blurred = _blur_pair(low, r_near / s, r_far / s, aperture, centre_offset)
        blurred = blurred[:, pad // s : -(pad // s), pad // s : -(pad // s)]
        # Bring the composite and the layer to one resolution.
        if acc is None:
            scale = s
            acc = np.zeros((9, -(-th // s), -(-tw // s)), np.float32)
        elif s < scale:
            acc, scale = _refine(acc, scale, s, th, tw), s
        if s > scale:
            blurred = bilinear_up_planes(
                blurred, s // scale, (ry1 - ry0) // scale, (rx1 - rx0) // scale
            )
        rect = (
            ry0 // scale,
            ry0 // scale + blurred.shape[1],
            rx0 // scale,
            rx0 // scale + blurred.shape[2],
        )
        # The group lies between its two slabs: it is that far away.
        group_coc = 0.5 * (float(slabs[i]) + float(slabs[min(i + 1, len(slabs) - 1)]))
        at_focus = IN_FOCUS_OCCLUDES and min(r_near, r_far) <= SHARP_RADIUS_PX
        _composite(acc, blurred, rect, group_coc, at_focus)
    inner = (slice(margin, th - margin), slice(margin, tw - margin))
    if acc is None:
        return rgb_w[:, halo : halo + th, halo : halo + tw][(slice(None), *inner)].transpose(
            1, 2, 0
        )
    if scale == 1:
        flat = _flatten(acc[:, :th, :tw][(slice(None), *inner)])
    else:  # flattened before it is refined: 4 planes to bring to full resolution, not 9
        flat = _refine(_flatten(acc), scale, 1, th, tw)[:, :th, :tw][(slice(None), *inner)]
    colour = flat[0:3] / np.maximum(flat[3], _EMPTY)
    return colour.transpose(1, 2, 0)


def _flatten(acc: np.ndarray) -> np.ndarray:
    """The composite's front surface over everything behind it: premultiplied RGB and
    coverage (4 planes)."""
    behind = 1.0 - acc[3]
    flat = np.empty((4, *acc.shape[1:]), np.float32)
    np.multiply(behind, acc[5:8], out=flat[0:3])
    flat[0:3] += acc[0:3]
    np.multiply(behind, acc[8], out=flat[3])
    flat[3] += acc[3]
    return flat


class _Fragments:
    """One layer of pixels in a window (the photo's, or the hidden background behind it):
    straight colour (3×H×W planes), blur radius and coverage weight (None: all 1), split
    between the two slabs around each pixel's radius (`tent`, if already known). `offset`
    places the arrays in the window."""

    def __init__(self, colour, coc, weight, slabs, offset=(0, 0), tent=None) -> None:
        self.colour, self.weight = colour, weight
        self.oy, self.ox = offset
        self.lower, self.t = _tent(coc, slabs) if tent is None else tent
        lower = self.lower
        if weight is not None:  # absent pixels take no part in any group
            lower = np.where(weight > 0, self.lower, np.iinfo(np.int32).max)
        # Rows and columns where each group can appear: a cheap bounding box per group.
        self.row_lo, self.col_lo = lower.min(axis=1), lower.min(axis=0)
        if weight is not None:
            lower = np.where(weight > 0, self.lower, np.iinfo(np.int32).min)
        self.row_hi, self.col_hi = lower.max(axis=1), lower.max(axis=0)
        self.lower_min, self.lower_max = int(self.row_lo.min()), int(self.row_hi.max())

    def box(self, i, ya, yb, xa, xb):
        """Bounding box (window coordinates) of the rows/columns that may hold group i,
        within [ya, yb) × [xa, xb)."""
        ya, xa = max(ya - self.oy, 0), max(xa - self.ox, 0)
        yb, xb = yb - self.oy, xb - self.ox
        rows = np.flatnonzero((self.row_lo[ya:yb] <= i) & (self.row_hi[ya:yb] >= i))
        cols = np.flatnonzero((self.col_lo[xa:xb] <= i) & (self.col_hi[xa:xb] >= i))
        if rows.size == 0 or cols.size == 0:
            return None
        oy, ox = self.oy, self.ox
        return oy + ya + rows[0], oy + ya + rows[-1] + 1, ox + xa + cols[0], ox + xa + cols[-1] + 1

    def add_layer(self, i, box, window, layer) -> bool:
        """Add group i's pixels in the window to `layer`, premultiplied by their weight:
        channels 0–3 weighted 1−t (slab i), 4–7 weighted t (slab i+1). False if none."""
        wy0, wy1, wx0, wx1 = window
        h, w = self.lower.shape
        sy0, sy1 = max(box[0], wy0, self.oy), min(box[1], wy1, self.oy + h)
        sx0, sx1 = max(box[2], wx0, self.ox), min(box[3], wx1, self.ox + w)
        if sy0 >= sy1 or sx0 >= sx1:
            return False
        src = (slice(sy0 - self.oy, sy1 - self.oy), slice(sx0 - self.ox, sx1 - self.ox))
        inside = self.lower[src] == i
        if not inside.any():
            return False
        if self.weight is None:
            w_far = np.where(inside, self.t[src], np.float32(0))
            w_near = inside - w_far
        else:
            weight = np.where(inside, self.weight[src], np.float32(0))
            w_far = weight * self.t[src]
            w_near = weight - w_far
        dst = layer[:, sy0 - wy0 : sy1 - wy0, sx0 - wx0 : sx1 - wx0]
        colour = self.colour[(slice(None), *src)]
        dst[0:3] += colour * w_near
        dst[3] += w_near
        dst[4:7] += colour * w_far
        dst[7] += w_far
        return True


def _refine(acc: np.ndarray, scale: int, to: int, th: int, tw: int) -> np.ndarray:
    """Upsample the composite from 1/scale to 1/to resolution (powers of two)."""
    while scale > to:
        scale //= 2
        acc = bilinear_up_planes(acc, 2, -(-th // scale), -(-tw // scale))
    return acc


def _composite(acc, layer, rect, layer_coc, at_focus=False) -> None:
    """Composite the layer (premultiplied RGBA planes) onto `acc` on `rect`, in place.

    Where the layer is clearly nearer than the front surface of the composite it occludes:
    the front surface joins everything behind it, and the layer becomes the front ("over").
    Where its blur radius continues the front surface's, it is the same surface seen at a
    slightly different depth: it is added to the front (the two parts of a receding surface
    cover a pixel together; laid over each other they would let the background through).
    A layer `at_focus` always occludes: every ray that reaches an in-focus pixel passes
    through its point on the focal plane, so nothing behind an opaque in-focus point shows.
    """
    ry0, ry1, rx0, rx1 = rect
    ry1, rx1 = min(ry1, acc.shape[1]), min(rx1, acc.shape[2])
    layer = layer[:, : ry1 - ry0, : rx1 - rx0]
    # Pixels of one group blurred by two kernels can overlap to a coverage above 1 (a pixel
    # keeps its sharp share and receives its neighbours' blurred share): one surface covers
    # at most fully, so such pixels are normalised, which keeps their colour.
    over = layer[3] > 1.0
    if over.any():
        layer = layer.copy()
        layer[:, over] /= layer[3, over]
    cover = np.clip(layer[3], 0.0, 1.0)
    target = acc[:, ry0:ry1, rx0:rx1]
    front_cover = target[3]
    if at_focus:
        # "over": everything so far goes behind, the layer becomes the front.
        behind = 1.0 - front_cover
        target[5:8] *= behind
        target[5:8] += target[0:3]
        target[8] *= behind
        target[8] += front_cover
        target[0:3] = layer[:3]
        target[3] = cover
        np.multiply(cover, np.float32(layer_coc), out=target[4])
    else:
        front_coc = target[4] / np.maximum(front_cover, _EMPTY)
        o = occludes(np.float32(layer_coc), front_coc).astype(np.float32, copy=False)
        o[front_cover <= 1e-4] = 1.0
        # The occluded share o of the front moves behind, without changing what the
        # composite shows (front + (1 − front coverage)·behind), so a layer that covers
        # nothing here changes nothing: behind ← (o·front + (1 − front coverage)·behind) /
        # (1 − (1 − o)·front coverage), front ← (1 − o)·front.
        keep = 1.0 - o
        denom = 1.0 - keep * front_cover
        moves = denom > 1e-6  # else the front stays whole and covers everything behind
        safe = np.where(moves, denom, np.float32(1.0))
        scale_behind = np.where(moves, (1.0 - front_cover) / safe, np.float32(1.0))
        scale_front = np.where(moves, o / safe, np.float32(0.0))
        target[5:8] *= scale_behind
        target[5:8] += scale_front * target[0:3]
        target[8] *= scale_behind
        target[8] += scale_front * front_cover
        # Front ← (1 − o)·front + layer
        target[0:5] *= keep
        target[0:3] += layer[:3]
        target[3] += cover
        target[4] += cover * np.float32(layer_coc)
    full = target[3] > 1.0
    if full.any():
        target[0:5, full] /= target[3, full]


def _tent(coc: np.ndarray, slabs: np.ndarray, pool: ThreadPoolExecutor | None = None):
    """Index of the slab at or below each pixel, and the tent weight t toward the next one.

    Computed in bands of rows (on `pool`'s threads if given): whole-image temporaries made
    this 2.5 times slower than bands that stay in the cache."""
    lower = np.empty(coc.shape, np.int32)
    t = np.empty(coc.shape, np.float32)

    def band(y: int) -> None:
        rows = slice(y, y + TENT_ROWS)
        lower[rows], t[rows] = _tent_band(coc[rows], slabs)

    starts = range(0, coc.shape[0], TENT_ROWS)
    if pool is None:
        for y in starts:
            band(y)
    else:
        list(pool.map(band, starts))
    return lower, t


def _tent_band(coc: np.ndarray, slabs: np.ndarray):
    lower = np.clip(np.searchsorted(slabs, coc, side="right") - 1, 0, len(slabs) - 1)
    upper = np.minimum(lower + 1, len(slabs) - 1)
    gap = slabs[upper] - slabs[lower]
    t = np.where(gap > 0, (coc - slabs[lower]) / np.where(gap > 0, gap, 1.0), 0.0)
    return lower, np.clip(t, 0.0, 1.0)


def _blur_pair(low, r_near, r_far, aperture, centre_offset) -> np.ndarray:
    """Blur planes 0–3 by a disc of `r_near` and 4–7 by one of `r_far` (radii in pixels of
    `low`), and return their sum (premultiplied RGBA planes)."""
    near, far = low[:4], low[4:]
    # A sharp part is passed through exactly (in-focus pixels stay bit-identical).
    if r_near <= SHARP_RADIUS_PX or r_far <= SHARP_RADIUS_PX:
        sharp, blurry, r = (near, far, r_far) if r_near <= SHARP_RADIUS_PX else (far, near, r_near)
        if r <= SHARP_RADIUS_PX or not blurry.any():
            return sharp + blurry
        return sharp + _convolve(blurry[None], [aperture.kernel(r, centre_offset)])
    pair = low.reshape((2, 4) + low.shape[1:])
    kernels = [aperture.kernel(r_near, centre_offset), aperture.kernel(r_far, centre_offset)]
    return _convolve(pair, kernels)


def _convolve(stack: np.ndarray, kernels: list[np.ndarray]) -> np.ndarray:
    """Σ_k kernels[k] ∗ stack[k] ('same' size), by FFT; `stack` is K×C×H×W.

    The convolution is circular: within a kernel's half-width of the edges the result wraps
    around, which the callers crop (their windows carry that much margin); transforms of
    the bare window are 13–27 % smaller than zero-padded linear ones. Each kernel is
    transformed once for all planes (and kept for the next window of the same size), and
    the sum is taken in the frequency domain, so only one set of planes is transformed back.
    """
    h, w = stack.shape[-2:]
    shape = (next_fast_len(h, real=True), next_fast_len(w, real=True))
    spectrum = rfft2(stack, s=shape, axes=(-2, -1))
    summed = spectrum[0]
    summed *= _kernel_spectra.get(kernels[0], shape)
    for i in range(1, len(kernels)):
        spectrum[i] *= _kernel_spectra.get(kernels[i], shape)
        summed += spectrum[i]
    return irfft2(summed, s=shape, axes=(-2, -1))[:, :h, :w].astype(np.float32)


class _KernelSpectra:
    """The spectra of the aperture's kernels, by kernel and transform size, the most recently
    used kept up to `max_bytes`: the tiles of a render ask for the same few again (47 kernel
    and size pairs for 114 windows of a 12 MP render). Kernels are the aperture's cached,
    read-only arrays; an entry holds its kernel, so the kernel's id stays its own."""

    def __init__(self, max_bytes: int = 48 << 20) -> None:
        self.max_bytes = max_bytes
        self._entries: OrderedDict = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
        key = (id(kernel), shape)
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None:
                self._entries.move_to_end(key)
                return entry[1]
        spectrum = rfft2(_centred_at_origin(kernel, shape))
        with self._lock:
            if key not in self._entries:
                self._entries[key] = (kernel, spectrum)
                self._bytes += spectrum.nbytes
            while self._bytes > self.max_bytes and len(self._entries) > 1:
                _, (_, old) = self._entries.popitem(last=False)
                self._bytes -= old.nbytes
        return spectrum


def _centred_at_origin(kernel: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """`kernel` in a zero array of `shape` with its centre at [0, 0], wrapped around the
    edges, so that circular convolution with it does not shift the image."""
    out = np.zeros(shape, np.float32)
    kh, kw = kernel.shape
    out[:kh, :kw] = kernel
    return np.roll(out, (-(kh // 2), -(kw // 2)), axis=(0, 1))


_kernel_spectra = _KernelSpectra()

"""The classical renderer: physically based, occlusion-aware layered defocus on the CPU.

The scene is cut into thin slabs of equal blur radius (in signed circle-of-confusion, which is
linear in disparity, so slabs are slabs of depth). Slabs are blurred by the aperture kernel
and composited from far to near with "over", like light that the nearer surfaces block:

* a sharp surface covers what is behind it completely, so blurred background never leaks
  onto an in-focus edge (no halo);
* a blurred surface spreads its own coverage with its colour, so its edge turns translucent
  and what lies behind shows through it (partial occlusion). What is behind it was hidden in
  the photo, so it is guessed by a pull-push fill of the slabs already composited.

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
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from scipy.fft import irfft2, next_fast_len, rfft2

from ..progress import Progress
from ..resample import bilinear_up, box_down, pull_push_fill, pull_push_max
from .base import RenderJob

TILE_PX = 512
#: Slabs grow by 1 px of radius up to here, then by `SLAB_GROWTH` of their radius.
LINEAR_SLABS_UP_TO_PX = 6.0
SLAB_GROWTH = 0.12
#: Blur at reduced resolution while the kernel keeps at least this radius in low-res pixels.
MIN_LOW_RES_RADIUS = 6.0
#: Hidden background is guessed at this fraction of full resolution (it is smooth anyway).
FILL_SCALE = 4
#: ... from known pixels up to this far around the place in need.
FILL_CONTEXT_PX = 64
#: A layer hides something when it is nearer than what is around it by more than this many
#: px of CoC radius, or this fraction of its own, whichever is more (fully so at twice that).
OCCLUSION_JUMP_PX = 1.5
OCCLUSION_JUMP_FRACTION = 0.25
_EMPTY = 1e-6
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


def _window(a: np.ndarray, y0: int, y1: int, x0: int, x1: int) -> np.ndarray:
    """a[y0:y1, x0:x1], mirrored where the window leaves the image (the photo "continues")."""
    h, w = a.shape[:2]
    cy0, cy1, cx0, cx1 = max(y0, 0), min(y1, h), max(x0, 0), min(x1, w)
    out = a[cy0:cy1, cx0:cx1]
    pads = [(cy0 - y0, y1 - cy1), (cx0 - x0, x1 - cx1)]
    if any(p for pair in pads for p in pair):
        pads += [(0, 0)] * (a.ndim - 2)
        # Repeatedly mirror if the pad exceeds the image (tiny images, huge blurs).
        out = np.pad(out, pads, mode="symmetric")
    return out


class ClassicalRenderer:
    name = "classical"

    def __init__(self, tile_px: int = TILE_PX, threads: int | None = None) -> None:
        self.tile_px = tile_px
        self.threads = threads or min(os.cpu_count() or 1, 8)

    def render(self, job: RenderJob, progress: Progress) -> np.ndarray:
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
        half_diag = 0.5 * math.hypot(w, h)
        done = 0
        progress.update(0.0, "rendering bokeh")

        def run(tile):
            progress.check_cancelled()
            y0, y1, x0, x1 = tile
            centre = ((x0 + x1) / 2 - w / 2) / half_diag, ((y0 + y1) / 2 - h / 2) / half_diag
            out[y0:y1, x0:x1] = _render_tile(rgb, coc, slabs, tile, max_r, job.aperture, centre)
            return tile

        if self.threads > 1 and len(tiles) > 1:
            with ThreadPoolExecutor(self.threads) as pool:
                futures = [pool.submit(run, t) for t in tiles]
                try:
                    for f in futures:
                        f.result()
                        done += 1
                        progress.update(
                            done / len(tiles), f"rendering bokeh, tile {done}/{len(tiles)}"
                        )
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
        return out


def _render_tile(rgb, coc, slabs, tile, max_r, aperture, centre_offset) -> np.ndarray:
    y0, y1, x0, x1 = tile
    th, tw = y1 - y0, x1 - x0
    s_max = low_res_factor(max_r)
    halo = int(math.ceil(max_r)) + 4 * s_max + 2
    # Everything within reach of the largest blur, read once.
    rgb_w = _window(rgb, y0 - halo, y1 + halo, x0 - halo, x1 + halo)
    coc_w = _window(coc, y0 - halo, y1 + halo, x0 - halo, x1 + halo)
    lower, t = _tent(coc_w, slabs)
    # Rows and columns where each group can appear: a cheap bounding box per group.
    row_lo, row_hi = lower.min(axis=1), lower.max(axis=1)
    col_lo, col_hi = lower.min(axis=0), lower.max(axis=0)

    # The composite so far (premultiplied RGB + coverage), kept at the resolution of the
    # blurriest group not yet followed by a sharper one: far-away blur is composited at low
    # resolution and refined only as the groups come closer to the focal plane.
    acc, scale = None, 1
    # A group is the pixels between slab i and slab i+1, composited far to near as ONE layer:
    # blurred by slab i's kernel with weight 1−t plus slab i+1's with weight t. (Compositing
    # the two parts over each other would let a surface occlude itself at its edges.)
    for i in range(int(lower.min()), int(lower.max()) + 1):
        r_near = abs(float(slabs[i]))
        r_far = abs(float(slabs[min(i + 1, len(slabs) - 1)]))
        s = low_res_factor(min(r_near, r_far))
        pad = -(-(int(math.ceil(max(r_near, r_far))) + 2 * s + 1) // s) * s  # a multiple of s
        box = _group_box(
            row_lo,
            row_hi,
            col_lo,
            col_hi,
            i,
            halo - pad,
            halo + th + pad,
            halo - pad,
            halo + tw + pad,
        )
        if box is None:
            continue
        ya, yb, xa, xb = box
        member = lower[ya:yb, xa:xb] == i
        if not member.any():
            continue
        # Output rectangle, relative to the tile and aligned to s: the group's box grown by
        # the blur, clipped to the tile (rounded up to whole blocks).
        ry0 = max((ya - halo - pad) // s * s, 0)
        ry1 = min(-(-(yb - halo + pad) // s) * s, -(-th // s) * s)
        rx0 = max((xa - halo - pad) // s * s, 0)
        rx1 = min(-(-(xb - halo + pad) // s) * s, -(-tw // s) * s)
        if ry0 >= ry1 or rx0 >= rx1:
            continue
        layer = _group_layer(
            rgb_w,
            member,
            t,
            (ya, yb, xa, xb),
            (halo + ry0 - pad, halo + ry1 + pad, halo + rx0 - pad, halo + rx1 + pad),
        )
        blurred = _blur_pair(box_down(layer, s), r_near / s, r_far / s, aperture, centre_offset)
        blurred = blurred[pad // s : -(pad // s), pad // s : -(pad // s)]
        # Bring the composite and the layer to one resolution.
        if acc is None:
            scale = s
            acc = np.zeros((-(-th // s), -(-tw // s), 6), np.float32)
        elif s < scale:
            acc, scale = _refine(acc, scale, s, th, tw), s
        if s > scale:
            blurred = bilinear_up(blurred, s // scale, (ry1 - ry0) // scale, (rx1 - rx0) // scale)
        rect = (
            ry0 // scale,
            ry0 // scale + blurred.shape[0],
            rx0 // scale,
            rx0 // scale + blurred.shape[1],
        )
        _composite_over(acc, blurred, rect, scale, float(slabs[i]))
    acc = _refine(acc, scale, 1, th, tw)[:th, :tw]
    return acc[..., :3] / np.maximum(acc[..., 3], _EMPTY)[..., None]


def _group_layer(rgb_w, member, t, box, window) -> np.ndarray:
    """The group's pixels in the window, premultiplied: channels 0–3 weighted 1−t (near
    slab), 4–7 weighted t (far slab)."""
    ya, yb, xa, xb = box
    wy0, wy1, wx0, wx1 = window
    layer = np.zeros((wy1 - wy0, wx1 - wx0, 8), np.float32)
    sy0, sy1, sx0, sx1 = max(ya, wy0), min(yb, wy1), max(xa, wx0), min(xb, wx1)
    if sy0 >= sy1 or sx0 >= sx1:
        return layer
    inside = member[sy0 - ya : sy1 - ya, sx0 - xa : sx1 - xa]
    w_far = np.where(inside, t[sy0:sy1, sx0:sx1], np.float32(0))
    w_near = inside - w_far
    dst = layer[sy0 - wy0 : sy1 - wy0, sx0 - wx0 : sx1 - wx0]
    colour = rgb_w[sy0:sy1, sx0:sx1]
    np.multiply(colour, w_near[..., None], out=dst[..., 0:3])
    dst[..., 3] = w_near
    np.multiply(colour, w_far[..., None], out=dst[..., 4:7])
    dst[..., 7] = w_far
    return layer


def _refine(acc: np.ndarray, scale: int, to: int, th: int, tw: int) -> np.ndarray:
    """Upsample the composite from 1/scale to 1/to resolution (powers of two)."""
    while scale > to:
        scale //= 2
        acc = bilinear_up(acc, 2, -(-th // scale), -(-tw // scale))
    return acc


def _composite_over(acc, layer, rect, scale, layer_coc) -> None:
    """acc ← acc·(1 − coverage) + layer on `rect`, after guessing the hidden background under
    the layer's translucent parts. In place. `acc` holds premultiplied RGB and coverage, then
    the signed CoC of what it really shows (not guesses), premultiplied, and that coverage:
    they tell occlusions from continuous surfaces. `layer_coc` is the layer's own."""
    ry0, ry1, rx0, rx1 = rect
    ry1, rx1 = min(ry1, acc.shape[0]), min(rx1, acc.shape[1])
    layer = layer[: ry1 - ry0, : rx1 - rx0]
    # Pixels of one group blurred by two kernels can overlap to a coverage above 1 (a pixel
    # keeps its sharp share and receives its neighbours' blurred share): one surface covers
    # at most fully, so such pixels are normalised, which keeps their colour.
    alpha = layer[..., 3]
    over = alpha > 1.0
    if over.any():
        layer = layer.copy()
        layer[over] /= alpha[over][:, None]
    cover = np.clip(layer[..., 3], 0.0, 1.0)
    _fill_hidden_under(acc, cover, (ry0, ry1, rx0, rx1), scale, layer_coc)
    target = acc[ry0:ry1, rx0:rx1]
    target *= (1.0 - cover)[..., None]
    target[..., :3] += layer[..., :3]
    target[..., 3] += cover
    target[..., 4] += cover * np.float32(layer_coc)
    target[..., 5] += cover


def _tent(coc: np.ndarray, slabs: np.ndarray):
    """Index of the slab at or below each pixel, and the tent weight t toward the next one."""
    lower = np.clip(np.searchsorted(slabs, coc, side="right") - 1, 0, len(slabs) - 1)
    upper = np.minimum(lower + 1, len(slabs) - 1)
    gap = slabs[upper] - slabs[lower]
    t = np.where(gap > 0, (coc - slabs[lower]) / np.where(gap > 0, gap, 1.0), 0.0)
    return lower.astype(np.int32), np.clip(t, 0.0, 1.0).astype(np.float32)


def _group_box(row_lo, row_hi, col_lo, col_hi, i, ya, yb, xa, xb):
    """Bounding box of rows/columns that may hold group i, within [ya, yb) × [xa, xb)."""
    ya, xa = max(ya, 0), max(xa, 0)
    rows = np.flatnonzero((row_lo[ya:yb] <= i) & (row_hi[ya:yb] >= i))
    cols = np.flatnonzero((col_lo[xa:xb] <= i) & (col_hi[xa:xb] >= i))
    if rows.size == 0 or cols.size == 0:
        return None
    return ya + rows[0], ya + rows[-1] + 1, xa + cols[0], xa + cols[-1] + 1


def _blur_pair(low, r_near, r_far, aperture, centre_offset) -> np.ndarray:
    """Blur channels 0–3 by a disc of `r_near` and 4–7 by one of `r_far` (radii in pixels of
    `low`), and return their sum (premultiplied RGBA)."""
    near, far = low[..., :4], low[..., 4:]
    # A sharp part is passed through exactly (in-focus pixels stay bit-identical).
    if r_near <= SHARP_RADIUS_PX or r_far <= SHARP_RADIUS_PX:
        sharp, blurry, r = (near, far, r_far) if r_near <= SHARP_RADIUS_PX else (far, near, r_near)
        if r <= SHARP_RADIUS_PX or not blurry.any():
            return sharp + blurry
        return sharp + _convolve(blurry[..., None, :], [aperture.kernel(r, centre_offset)])
    pair = low.reshape(low.shape[:2] + (2, 4))
    kernels = [aperture.kernel(r_near, centre_offset), aperture.kernel(r_far, centre_offset)]
    return _convolve(pair, kernels)


def _convolve(stack: np.ndarray, kernels: list[np.ndarray]) -> np.ndarray:
    """Σ_k kernels[k] ∗ stack[:, :, k, :] ('same' size), by FFT.

    Each kernel is transformed once for all channels, and the sum is taken in the frequency
    domain, so only one set of channels is transformed back.
    """
    h, w = stack.shape[:2]
    kh = max(k.shape[0] for k in kernels)
    shape = (next_fast_len(h + kh - 1, real=True), next_fast_len(w + kh - 1, real=True))
    spectrum = rfft2(stack, s=shape, axes=(0, 1))
    kernel_stack = np.zeros((kh, kh, len(kernels), 1), np.float32)
    for i, k in enumerate(kernels):
        o = (kh - k.shape[0]) // 2
        kernel_stack[o : o + k.shape[0], o : o + k.shape[1], i, 0] = k
    spectrum *= rfft2(kernel_stack, s=shape, axes=(0, 1))
    summed = spectrum[:, :, 0]
    for i in range(1, len(kernels)):
        summed += spectrum[:, :, i]  # (a sum over a middle axis would be much slower)
    full = irfft2(summed, s=shape, axes=(0, 1))
    c = kh // 2  # 'same': the kernel's centre lands on the source pixel
    return full[c : c + h, c : c + w].astype(np.float32)


def _fill_hidden_under(acc, cover, rect, scale, layer_coc) -> None:
    """Where a translucent part of the next layer lies over a place that nothing composited
    so far covers (the background hidden in the photo), put a guess of that background
    there, extrapolated from what is already known around it. In place; `acc` holds
    premultiplied RGB and coverage at 1/scale resolution."""
    ry0, ry1, rx0, rx1 = rect
    acc_a = acc[..., 3]
    need = (acc_a[ry0:ry1, rx0:rx1] < 1.0 - 1e-3) & (cover > 1e-3) & (cover < 1.0 - 1e-3)
    rows, cols = np.flatnonzero(need.any(axis=1)), np.flatnonzero(need.any(axis=0))
    if rows.size == 0:
        return
    # Guess from the neighbourhood of the place in need only, at reduced resolution.
    context = max(FILL_CONTEXT_PX // scale, 4)
    h, w = acc_a.shape
    fy0, fy1 = max(ry0 + rows[0] - context, 0), min(ry0 + rows[-1] + 1 + context, h)
    fx0, fx1 = max(rx0 + cols[0] - context, 0), min(rx0 + cols[-1] + 1 + context, w)
    known = acc[fy0:fy1, fx0:fx1]
    if known[..., 3].max(initial=0.0) < 1e-3:
        return  # nothing known yet to guess from
    down = max(FILL_SCALE // scale, 1)
    low = box_down(known, down)
    ny0, ny1, nx0, nx1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    gy0, gx0 = ry0 + ny0 - fy0, rx0 + nx0 - fx0
    # Only behind an occlusion: where the layer is clearly nearer than the nearest surface
    # known around it (not the average, which a receding surface's far parts would pull
    # back). Across a continuous surface (a floor, a face) the next slab is barely nearer
    # and nothing is hidden: a guess there would draw its boundary as a line.
    behind = pull_push_max(low[..., 4] / np.maximum(low[..., 5], _EMPTY), low[..., 5] > 1e-2)
    behind = np.repeat(np.repeat(behind, down, axis=0), down, axis=1)
    behind = behind[gy0 : gy0 + ny1 - ny0, gx0 : gx0 + nx1 - nx0]
    threshold = max(OCCLUSION_JUMP_PX, OCCLUSION_JUMP_FRACTION * abs(layer_coc))
    occluding = np.clip((np.float32(layer_coc) - behind) / threshold - 1.0, 0.0, 1.0)
    target = acc[ry0 + ny0 : ry0 + ny1, rx0 + nx0 : rx0 + nx1]
    missing = np.where(need[ny0:ny1, nx0:nx1], (1.0 - target[..., 3]) * occluding, 0.0)
    if not missing.any():
        return  # no occlusion here: the colour guess is not needed
    # The colour guess, only over the bounding box of the need.
    guess = pull_push_fill(low[..., :3], low[..., 3])
    guess = bilinear_up(guess, down, fy1 - fy0, fx1 - fx0)
    guess = guess[gy0 : gy0 + ny1 - ny0, gx0 : gx0 + nx1 - nx0]
    missing = missing.astype(np.float32)
    target[..., :3] += guess * missing[..., None]
    target[..., 3] += missing

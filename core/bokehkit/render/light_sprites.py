"""Recovered lights drawn as sprites, each seen through the aperture past what stands in front.

Highlight recovery (`highlights.py`) gives a clipped light back the energy the photo cut off,
often 10–40× white. Blurred with the layers, that light would also leak through the soft
edge of every blurred surface in front of it: a layer's coverage is the share of the
aperture it blocks on average, right for a wall behind it, wrong for a point. A point light
reaches each pixel of its disc along one ray only, through one point of the aperture, so
whatever stands in front either blocks that ray or not. A real lens shows it: the disc of a
light behind an edge is cut by a sharp chord, and a thin twig in front of it draws a dark
line across it.

So the photo's own (clipped) light stays in the layers, and only the energy given back is
drawn here, after compositing: per light, its excess spread by the aperture kernel of its
own blur radius and multiplied by a visibility ray-marched through the depth map.

The geometry, in signed blur radii s (positive in front of the focal plane, linear in
disparity): a point whose pinhole image is at P and whose blur is s is imaged through the
aperture point u (unit disc) at P + s·u. The light (at L, blur s_L) reaches pixel x through
u = (x − L)/s_L; on the way its ray passes, at blur s, the pinhole position P(s) = x − s·u.
The ray is blocked when the depth map holds, at some P(s), a surface nearer than the ray
(its blur above s) and a real jump nearer than the light (`hidden.occludes`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage
from scipy.fft import irfft2, next_fast_len, rfft2

from ..scene.aperture import Aperture
from .hidden import occludes, occlusion_jump

#: Visibility is marched on a grid of at most about this many points across a disc's radius
#: (and bilinearly enlarged): a cut is sharp to a 24th of the disc.
VISIBILITY_GRID = 24
#: At most this many steps along each ray (steps are 1 px of blur apart up to here).
MAX_RAY_STEPS = 64
#: Lights beyond this many (the weakest) are not drawn as sprites but added to the photo's
#: pixels and blurred with the layers, which bounds the time on a photo of a city at night.
MAX_SPRITES = 400
#: Shadows cut into a light's disc are as soft as the light is wide (`_soften`).
SOFT_SHADOWS = True


@dataclass
class Light:
    """One recovered light: the energy given back (linear RGB, a small patch placed at
    `top`, `left`), where its energy is centred, and its signed blur radius."""

    patch: np.ndarray  # h×w×3 float32
    top: int
    left: int
    centre_yx: tuple[float, float]
    coc: float

    @property
    def energy(self) -> float:
        return float(self.patch.sum())

    @property
    def radius(self) -> float:
        """The light's radius (px), as a disc's with the same spread of its energy."""
        weight = self.patch.sum(axis=-1)
        total = float(weight.sum())
        if total <= 0.0:
            return 0.0
        yy, xx = np.indices(weight.shape, dtype=np.float32)
        cy, cx = self.centre_yx[0] - self.top, self.centre_yx[1] - self.left
        mean_square = float((weight * ((yy - cy) ** 2 + (xx - cx) ** 2)).sum()) / total
        return math.sqrt(2.0 * mean_square)  # a uniform disc of radius ρ: ρ²/2


@dataclass
class Lights:
    """The lights to draw, in pixels of the image they were found in."""

    items: list[Light] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self):
        return iter(self.items)

    def scaled(self, factor: int) -> Lights:
        """The same lights in an image enlarged `factor` times (each pixel repeated, like
        the enlarged photo: a light keeps its brightness and covers factor² more pixels)."""
        if factor == 1:
            return self
        out = []
        for light in self.items:
            patch = np.repeat(np.repeat(light.patch, factor, axis=0), factor, axis=1)
            cy, cx = light.centre_yx
            out.append(
                Light(
                    patch,
                    light.top * factor,
                    light.left * factor,
                    ((cy + 0.5) * factor - 0.5, (cx + 0.5) * factor - 0.5),
                    light.coc * factor,
                )
            )
        return Lights(out)


def visibility(
    coc: np.ndarray,
    centre_yx: tuple[float, float],
    light_coc: float,
    box: tuple[int, int, int, int],
    nearest: float | None = None,
) -> np.ndarray:
    """Share of the light at `centre_yx` (blur `light_coc`) that reaches each pixel of `box`
    (y0, y1, x0, x1, inside the image): 1 unless something nearer stands in its way.
    `nearest`: `coc`'s largest value, when the caller has it (a pass over the whole image
    a light)."""
    y0, y1, x0, x1 = box
    s_light = float(light_coc)
    # The nearest blur the ray could meet on its way (it only gets nearer: s grows).
    s_near = max(float(coc.max()) if nearest is None else nearest, s_light)
    if s_near <= s_light or abs(s_light) < 0.5:
        return np.ones((y1 - y0, x1 - x0), np.float32)
    step = max(1.0, (s_near - s_light) / MAX_RAY_STEPS)
    steps = np.arange(s_light + step, s_near + 0.5 * step, step, dtype=np.float32)
    # A coarse grid over the box for large discs, enlarged at the end.
    spacing = max(1.0, abs(s_light) / VISIBILITY_GRID)
    ny = max(2, int(math.ceil((y1 - 1 - y0) / spacing)) + 1)
    nx = max(2, int(math.ceil((x1 - 1 - x0) / spacing)) + 1)
    ys = np.linspace(y0, y1 - 1, ny, dtype=np.float32)[:, None]
    xs = np.linspace(x0, x1 - 1, nx, dtype=np.float32)[None, :]
    seen = np.zeros((ny, nx), np.float32)
    # Four rays a grid point, ¼ of the spacing off its centre, averaged: one ray a pixel cut
    # the disc along every step of the depth map's staircase at a slanted edge.
    for oy, ox in ((-0.25, -0.25), (-0.25, 0.25), (0.25, -0.25), (0.25, 0.25)):
        ray_ys, ray_xs = ys + oy * spacing, xs + ox * spacing
        seen += 0.25 * ~_blocked(coc, ray_ys, ray_xs, centre_yx, s_light, steps, step)
    if ny == y1 - y0 and nx == x1 - x0:
        return seen
    return _bilinear_to(seen, y1 - y0, x1 - x0)


def _blocked(coc, ys, xs, centre_yx, s_light, steps, step) -> np.ndarray:
    """Whether the ray from the light (at `centre_yx`, blur `s_light`) to each point (ys, xs)
    of the sensor meets a nearer surface on the way, marching through the blurs `steps`."""
    h, w = coc.shape
    cy, cx = centre_yx
    uy, ux = (ys - cy) / s_light, (xs - cx) / s_light
    blocked = np.zeros(np.broadcast_shapes(ys.shape, xs.shape), bool)
    for s in steps:
        py = np.clip(np.rint(ys - s * uy), 0, h - 1).astype(np.intp)
        px = np.clip(np.rint(xs - s * ux), 0, w - 1).astype(np.intp)
        surface = coc[py, px]
        # A depth map shows only front faces: take each as a sheet of some thickness (a
        # solid reaching back to the light turned a twig's thin shadow into half the disc).
        thickness = np.maximum(occlusion_jump(surface), step)
        blocked |= (surface > s) & (surface - s <= thickness) & (occludes(surface, s_light) >= 0.5)
    return blocked


def _soften(seen: np.ndarray, radius: float) -> np.ndarray:
    """`seen` as a light of `radius` px casts it: `visibility` follows the ray from the
    light's centre, but a lamp has a size, and each of its points casts the shadow of what
    stands in front a little aside, so shadow edges blur over about its width (a twig drew
    a hard dark stripe across the disc where the truth shows a soft one)."""
    size = 2 * int(round(radius)) + 1
    if size < 3:
        return seen
    return ndimage.uniform_filter(seen, size, mode="nearest")


def _bilinear_to(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """`a` (its corners on the corners of the target) resampled to h×w."""
    fy = np.linspace(0, a.shape[0] - 1, h, dtype=np.float32)
    fx = np.linspace(0, a.shape[1] - 1, w, dtype=np.float32)
    iy = np.minimum(fy.astype(np.intp), a.shape[0] - 2)
    ix = np.minimum(fx.astype(np.intp), a.shape[1] - 2)
    ty, tx = (fy - iy)[:, None], (fx - ix)[None, :]
    top = a[iy][:, ix] * (1 - tx) + a[iy][:, ix + 1] * tx
    bottom = a[iy + 1][:, ix] * (1 - tx) + a[iy + 1][:, ix + 1] * tx
    return (top * (1 - ty) + bottom * ty).astype(np.float32)


def _full_convolution(patch: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Each channel of `patch` (h×w×C) convolved with `kernel`, the full result, with the
    transform's round-off (about 1e-7 of the peak, everywhere) cut so a sprite ends at its
    disc's edge. (scipy.fft rather than scipy.signal, whose import alone took two seconds.)"""
    ph, pw = patch.shape[:2]
    kh, kw = kernel.shape
    shape = (next_fast_len(ph + kh - 1, True), next_fast_len(pw + kw - 1, True))
    spectrum = rfft2(kernel, shape)
    out = irfft2(rfft2(patch, shape, axes=(0, 1)) * spectrum[..., None], shape, axes=(0, 1))
    out = out[: ph + kh - 1, : pw + kw - 1]
    out[np.abs(out) < 1e-5 * np.abs(out).max(initial=0.0)] = 0.0
    return out.astype(np.float32)


def draw_lights(out: np.ndarray, coc: np.ndarray, lights: Lights, aperture: Aperture) -> None:
    """Add each light's energy to `out` (H×W×3 linear, in place), spread by the aperture at
    the light's blur radius and cut by what stands in front of it (`coc`: the signed blur
    radii of `out`'s pixels)."""
    h, w = coc.shape
    half_diag = 0.5 * math.hypot(w, h)
    nearest = float(coc.max())
    for light in lights:
        cy, cx = light.centre_yx
        kernel = aperture.kernel(
            abs(light.coc), ((cx - w / 2) / half_diag, (cy - h / 2) / half_diag)
        )
        kh, kw = kernel.shape
        ph, pw = light.patch.shape[:2]
        # The sprite: the patch spread by the kernel, its top-left corner in the image.
        top, left = light.top - kh // 2, light.left - kw // 2
        bottom, right = top + ph + kh - 1, left + pw + kw - 1
        box = (max(top, 0), min(bottom, h), max(left, 0), min(right, w))
        if box[0] >= box[1] or box[2] >= box[3]:
            continue
        sprite = _full_convolution(light.patch, kernel)
        sprite = sprite[box[0] - top : box[1] - top, box[2] - left : box[3] - left]
        seen = visibility(coc, light.centre_yx, light.coc, box, nearest)
        if SOFT_SHADOWS:
            seen = _soften(seen, light.radius)
        out[box[0] : box[1], box[2] : box[3]] += np.maximum(sprite, 0.0) * seen[..., None]

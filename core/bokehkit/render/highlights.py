"""Highlight recovery: give clipped small lights back the energy the 8-bit photo cut off.

A street lamp may be 20× brighter than white, but the photo stores it as white. Blurred as it
is, it turns into a dim grey disc; a lens spreads all of its light into a bright disc. Most
clipped spots are not lights, though: a glint, a white badge, a bright patch of texture hold
barely more light than white. A spot is taken for a light by what clipping does to a light
and not to a surface:

* the light is far brighter than white in every channel, so its core clips in all of them
  (a saturated or merely bright surface clips one or two), give or take what a JPEG's
  half-resolution colour mixes into a core of a few pixels;
* it is compact (a stripe of paint, the edge of a sheet of paper are long and thin);
* its clipped core ends in a steep shoulder: one pixel outside it the photo has already
  fallen most of the way from white to what is around it, where a bright surface stays
  bright;
* it is small, and stands out from what is around it (a wall or a sky does not);
* it is an object of its own: where the depth map shows the photo's lamps as bumps in front
  of what is behind them, a spot that lies flat on a surface running on past it is printed or
  painted there (a white glint in a photo on a card, a star of a printed sky), not a lamp.

How much light the core really had cannot be read from the clipped pixels; it grows with
the clipped area (the brighter a light, the farther out its image still clips). The energy
model `m = ENERGY_SCALE · area^ENERGY_EXPONENT` and the thresholds were fitted on the
clipped spots of Cycles renders whose unclipped linear light is known (tuning scenes only;
`benchmarks/highlights_calibration.py` refits them and scores held-out scenes). The boost
never exceeds the user's `gain` (the cap; 1 turns recovery off) and is applied only where the
light will be blurred. A renderer that `draws_lights` gets the energy given back apart from
the photo (`separate_lights`) and draws each light through the aperture, cut by what stands
in front of it (`light_sprites.py`); for others it is added to the pixels
(`recover_highlights`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from ..io.colour import linear_to_srgb, srgb_to_linear
from .depth_edges import depth_jump
from .light_sprites import MAX_SPRITES, Light, Lights

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
#: Share of the core that is white (`_is_white`): a light from here, not below NOT_WHITE.
WHITE_SHARE, NOT_WHITE = 0.6, 0.35
#: The shoulder (the mean code value one pixel outside the core), by its rise over the
#: surround as a share of the way from the surround to white: a light's has fallen back to
#: at most STEEP_SHOULDER of the way, a bright surface's is still above SOFT_SHOULDER.
#: Relative, so that a light in front of a bright wall is judged as one in front of a dark
#: wall; and in code values, not brighter than DIM_SHOULDER (none from BRIGHT_SHOULDER),
#: so that a patch on a wall nearly as bright as itself is not taken for a light.
STEEP_SHOULDER, SOFT_SHOULDER = 0.25, 0.45
DIM_SHOULDER, BRIGHT_SHOULDER = 0.65, 0.80
#: Longest extent over the diameter of a disc of the same area: a light up to COMPACT,
#: a stripe from ELONGATED.
COMPACT, ELONGATED = 1.2, 1.45
#: The spot stands out from a ring 2–4 px around it by at least this much (code values).
MIN_CONTRAST, FULL_CONTRAST = 0.2, 0.35
RING_INNER_PX, RING_OUTER_PX = 2, 4


@dataclass
class ClippedSpots:
    """The photo's small clipped spots: a label image and per-spot measurements."""

    labels: np.ndarray  # H×W int32, 0 = no spot, k = spot k (1-based)
    boxes: list  # spot k's bounding box (row and column slices) at k − 1
    area: np.ndarray  # pixels
    white_share: np.ndarray  # share of the spot clipped in every channel
    shoulder: np.ndarray  # mean code value in the ring 1 px outside the spot
    surround: np.ndarray  # mean code value in the ring 2–4 px outside
    elongation: np.ndarray  # longest extent / diameter of a disc of the same area
    colour: np.ndarray  # count×3: the light's colour (mean 1) seen in its shoulder

    @property
    def count(self) -> int:
        return int(self.area.size)

    @property
    def shoulder_rise(self) -> np.ndarray:
        """How far the shoulder stands above the surround, as a share of the way to white."""
        return (self.shoulder - self.surround) / np.maximum(1.0 - self.surround, 1e-3)


def clipped_spots(encoded01: np.ndarray) -> ClippedSpots | None:
    """Find and measure the small clipped spots of a photo (code values in [0, 1], H×W×C);
    None when nothing small is clipped. Measured over the spots' and their rings' pixels
    only: a photo has few, and whole-image passes cost seconds at 24 MP."""
    # Coloured lights clip some channels only.
    channels = range(encoded01.shape[-1])
    clipped = np.logical_or.reduce([encoded01[..., c] >= CLIP_LEVEL for c in channels])
    if not clipped.any():
        return None
    h, w = clipped.shape
    r = max(MIN_LARGE_DIAMETER_PX, int(LARGE_DIAMETER_FRACTION * max(h, w))) // 2
    labels, count = ndimage.label(clipped & ~_large_areas(clipped, r))
    if count == 0:
        return None
    flat = encoded01.reshape(h * w, -1)
    spot_px = np.flatnonzero(labels)
    spot_label = labels.ravel()[spot_px]
    area = np.bincount(spot_label, minlength=count + 1)[1:].astype(np.float32)
    shoulder, shoulder_linear = _ring_means(flat, _ring(labels, 0, 1), count)
    surround_ring = _ring(labels, RING_INNER_PX, RING_OUTER_PX)
    surround, surround_linear = _ring_means(flat, surround_ring, count)
    # Each spot pixel's surround colour (label 0 is no spot).
    surround_code = np.nan_to_num(linear_to_srgb(surround_linear), nan=1.0)
    surround_code = np.concatenate([np.ones_like(surround_code[:1]), surround_code])
    white = _is_white(flat[spot_px], surround_code[spot_label])
    white_share = np.bincount(spot_label, weights=white, minlength=count + 1)[1:] / area

    boxes = ndimage.find_objects(labels)
    extent = np.array([max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes])
    return ClippedSpots(
        labels=labels.astype(np.int32, copy=False),
        boxes=boxes,
        area=area,
        white_share=white_share.astype(np.float32),
        # A spot whose ring is all other spots counts as standing in white.
        shoulder=np.nan_to_num(shoulder, nan=1.0),
        surround=np.nan_to_num(surround, nan=1.0),
        elongation=(extent / (2.0 * np.sqrt(area / np.pi))).astype(np.float32),
        colour=_light_colour(shoulder_linear, surround_linear),
    )


#: JPEG's luma and chroma (ITU-R BT.601), rows Y, Cb, Cr.
YCBCR = np.array(
    [[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]],
    np.float32,
)
#: A pixel of a light's core: luma from WHITE_LUMA (245 of 255; a clipped saturated yellow
#: has 236), and its colour within CHROMA_TOL (Cb, Cr) of white or of white tinted toward
#: the spot's surround.
WHITE_LUMA, CHROMA_TOL = 0.96, 0.04


def _is_white(pixels: np.ndarray, surround: np.ndarray) -> np.ndarray:
    """Which `pixels` (code values, N×C) are white, each judged with the colour around its
    spot (`surround`, code values, N×C). A light's core clips in every channel, but JPEG
    keeps colour at half resolution: a core of a few pixels takes some of its surround's
    colour (channels drop by 10-60 code values), while its luma stays clipped. Judged
    channel by channel, 54-70 % of the tuning scenes' light was lost stored at quality 92.
    So a pixel is white by its luma, and by a colour that is white or a mix of white and the
    surround's; a clipped yellow stripe on blue is neither."""
    if pixels.shape[-1] < 3:  # greyscale
        return pixels[:, 0] >= WHITE_LUMA
    ycc = pixels[:, :3] @ YCBCR.T
    s = surround @ YCBCR[1:].T
    t = np.clip((ycc[:, 1:] * s).sum(-1) / np.maximum((s * s).sum(-1), 1e-6), 0.0, 1.0)
    off = np.hypot(*(ycc[:, 1:] - t[:, None] * s).T)
    return (ycc[:, 0] >= WHITE_LUMA) & (off <= CHROMA_TOL)


def _large_areas(clipped: np.ndarray, r: int) -> np.ndarray:
    """The clipped areas a disc of radius r fits in, and the 2 px around them (what touches
    a surface is part of it). Opened one component at a time, and only the components with
    room for such a disc: most photos have none, and then nothing is opened at all."""
    labels, count = ndimage.label(clipped)
    area = np.bincount(labels.ravel(), minlength=count + 1)[1:]
    # The disc x² + y² ≤ (r + ½)² holds at least π(r + ½ − √½)² pixels.
    min_area = math.pi * max(r + 0.5 - math.sqrt(0.5), 0.0) ** 2
    large = np.zeros_like(clipped)
    boxes = ndimage.find_objects(labels)
    for k in np.flatnonzero(area >= min_area):
        grown, _ = _grown(boxes[k], 2, clipped.shape)
        component = labels[grown] == k + 1
        large[grown] |= ndimage.binary_dilation(open_by_disc(component, r), iterations=2)
    return large


def _grown(box: tuple, px: int, shape: tuple) -> tuple[tuple, tuple]:
    """`box` (row and column slices) grown by `px` on every side, within an image of
    `shape`; and where `box` lies inside the grown one."""
    rows, cols = box
    top, left = max(rows.start - px, 0), max(cols.start - px, 0)
    grown = (slice(top, min(rows.stop + px, shape[0])), slice(left, min(cols.stop + px, shape[1])))
    inner = (slice(rows.start - top, rows.stop - top), slice(cols.start - left, cols.stop - left))
    return grown, inner


def _spot_with_margin(spots: ClippedSpots, k: int) -> tuple[tuple, tuple, np.ndarray]:
    """Spot k (0-based) in its box grown by one pixel (so an erosion or a distance transform
    sees the spot's edge): the grown box, where the spot's own box lies in it, and the spot's
    pixels in the grown box."""
    grown, box = _grown(spots.boxes[k], 1, spots.labels.shape)
    return grown, box, spots.labels[grown] == k + 1


def _ring(labels: np.ndarray, inner_px: int, outer_px: int) -> np.ndarray:
    """Each spot's label on the pixels `inner_px` + 1 to `outer_px` (square distance) from
    it and on no spot."""
    outer = ndimage.grey_dilation(labels, size=2 * outer_px + 1)
    inner = ndimage.grey_dilation(labels, size=2 * inner_px + 1) if inner_px else labels
    return np.where(inner == 0, outer, 0)


def _ring_means(flat: np.ndarray, ring: np.ndarray, count: int) -> tuple[np.ndarray, np.ndarray]:
    """Per spot, the mean code value over its ring and the mean linear RGB (count×3); NaN
    for a spot with an empty ring. `flat`: the photo's code values, (H·W)×C."""
    px = np.flatnonzero(ring)
    label = ring.ravel()[px]
    pixels = flat[px]
    n = np.bincount(label, minlength=count + 1)[1:]

    def mean(values: np.ndarray) -> np.ndarray:
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.bincount(label, weights=values, minlength=count + 1)[1:] / n

    linear = srgb_to_linear(pixels[:, :3])
    channels = [mean(linear[:, c]) for c in range(linear.shape[-1])]
    return mean(pixels.mean(axis=-1)).astype(np.float32), np.stack(channels, axis=-1)


def open_by_disc(mask: np.ndarray, r: int) -> np.ndarray:
    """Morphological opening of `mask` by the disc x² + y² ≤ (r + ½)², outside the image
    counting as empty: the union of all such discs that fit in `mask`. Done with two distance
    transforms, whose cost does not grow with r (an erosion by a 91 px disc took a minute on
    a 24 MP photo)."""
    reach = r + 0.5
    pad = r + 1
    padded = np.pad(mask, pad)
    centres = ndimage.distance_transform_edt(padded) > reach
    if not centres.any():
        return np.zeros_like(mask)
    opened = ndimage.distance_transform_edt(~centres) <= reach
    return opened[pad:-pad, pad:-pad]


def _light_colour(shoulder_linear: np.ndarray, surround_linear: np.ndarray) -> np.ndarray:
    """Each light's colour (channels averaging 1), from what its glow adds to the shoulder
    over the surround, in linear light (count×3 means of each ring). The clipped core is
    white whatever the light's colour; the unclipped shoulder still shows it, mixed with
    what is behind. Clamped to 0.5–1.8 of the mean (a noisy shoulder must not make a light
    garish): on the light spots of Cycles renders this halves the error of assuming white
    (median max |log| 0.71 → 0.46)."""
    glow = np.maximum(np.nan_to_num(shoulder_linear - surround_linear, nan=0.0), 1e-6)
    colour = np.clip(glow / glow.mean(axis=-1, keepdims=True), 0.5, 1.8)
    return (colour / colour.mean(axis=-1, keepdims=True)).astype(np.float32)


def _ramp(x: np.ndarray, zero_at: float, one_at: float) -> np.ndarray:
    """0 at `zero_at`, 1 at `one_at`, linear between (either order)."""
    return np.clip((x - zero_at) / (one_at - zero_at), 0.0, 1.0).astype(np.float32)


def light_likelihood(spots: ClippedSpots, disparity: np.ndarray | None = None) -> np.ndarray:
    """Per spot, how much it looks like a light (0–1): clipped in every channel, compact,
    with a steep shoulder, big enough not to be a glint, standing out from around it; and,
    given the photo's `disparity` (inverse depth, H×W), not flat on a surface
    (`_flat_on_a_surface`)."""
    likelihood = (
        _ramp(spots.white_share, NOT_WHITE, WHITE_SHARE)
        * _ramp(spots.elongation, ELONGATED, COMPACT)
        * np.minimum(
            _ramp(spots.shoulder_rise, SOFT_SHOULDER, STEEP_SHOULDER),
            _ramp(spots.shoulder, BRIGHT_SHOULDER, DIM_SHOULDER),
        )
        * _ramp(spots.area, SPECK_AREA_PX, LIGHT_AREA_PX)
        * _ramp(1.0 - spots.surround, MIN_CONTRAST, FULL_CONTRAST)
    )
    if disparity is not None:
        likelihood[_flat_on_a_surface(spots, disparity, likelihood > 0)] = 0.0
    return likelihood


#: Depth relief of a spot and its ring, relative to the ring's inverse depth. A surface: the
#: ring lies within RING_FLAT of a plane and the spot within FLAT (or within the map's own
#: step, for a map stored in 8 bits). A lamp: the spot holds a pixel LAMP_RELIEF nearer
#: than all of the ring, and 3 steps of the map. On Cycles renders (tuning scenes) lamps
#: stand 2 % to 5× nearer (in inverse depth) than what is behind them, exactly and after
#: blurring, quantising or shrinking the map, and printed stars and glints 0 (or one
#: 8-bit step). A map whose steps are coarser than the nearest lamps' relief
#: (MIN_LAMP_RELIEF) cannot tell them from prints and is not asked (an 8-bit map's steps
#: are 3–4 % at a far wall).
FLAT, RING_FLAT, LAMP_RELIEF, MIN_LAMP_RELIEF = 0.001, 0.012, 0.05, 0.02
#: The ring the surface is fitted on: 2 to RELIEF_RING_PX pixels outside the spot.
RELIEF_RING_PX = 5


@dataclass
class Relief:
    """How spot k lies in the depth map, relative to the inverse depth at the spot of the
    plane fitted to a ring around it."""

    spot: float  # the spot's largest distance from the plane
    ring: float  # the ring's largest distance from the plane
    nearer: float  # how much nearer the spot's nearest pixel is than the ring's
    step: float  # the map's step between stored values (0 for a float map)

    def is_flat(self) -> bool:
        """On a surface: the ring and the spot lie on the plane, up to the map's steps, and
        those steps are fine enough to have shown a lamp just in front."""
        return (
            self.step <= MIN_LAMP_RELIEF
            and self.ring <= max(RING_FLAT, self.step)
            and self.spot <= max(FLAT, self.step)
        )

    def is_bump(self) -> bool:
        """A small object of its own: the spot holds something well in front of all around
        it (whatever edges cross the ring)."""
        return self.nearer >= max(LAMP_RELIEF, 3.0 * self.step)


def _relief(disparity: np.ndarray, spots: ClippedSpots, k: int, step: float) -> Relief | None:
    """How spot k lies on the inverse depth around it, given the map's `step` (`_map_step`);
    None where the fitted plane is at or behind infinity (a relative map's far end) or the
    ring is too small to fit."""
    grown, _ = _grown(spots.boxes[k], RELIEF_RING_PX + 1, spots.labels.shape)
    inside = spots.labels[grown] == k + 1
    ring = ndimage.binary_dilation(inside, iterations=RELIEF_RING_PX)
    ring &= ~ndimage.binary_dilation(inside)
    values = disparity[grown].astype(np.float64)
    yy, xx = np.nonzero(ring)
    if yy.size < 3:
        return None
    design = np.stack([np.ones(yy.size), yy, xx], axis=-1)
    plane, *_ = np.linalg.lstsq(design, values[ring], rcond=None)
    iy, ix = np.nonzero(inside)
    at_spot = plane[0] + plane[1] * iy + plane[2] * ix
    scale = float(np.abs(at_spot).mean())
    if scale <= 1e-12:
        return None
    return Relief(
        spot=float(np.abs(values[inside] - at_spot).max()) / scale,
        ring=float(np.abs(values[ring] - design @ plane).max()) / scale,
        nearer=float(values[inside].max() - values[ring].max()) / scale,
        step=step / scale,
    )


#: Distinct values from which a map's smallest gap between them is its storage step.
MIN_LEVELS = 32


def _map_step(disparity: np.ndarray) -> float:
    """The depth map's step between stored values: the smallest gap between the distinct
    values of a sample of it (one step of an 8-bit map; next to nothing for a float one).
    0 for a map of a few flat planes (under MIN_LEVELS values), exact where it is flat."""
    sample = disparity[:: max(1, disparity.shape[0] // 512), :: max(1, disparity.shape[1] // 512)]
    levels = np.unique(sample)
    return float(np.diff(levels).min()) if levels.size >= MIN_LEVELS else 0.0


def _flat_on_a_surface(spots: ClippedSpots, disparity: np.ndarray, candidates: np.ndarray):
    """Which of the `candidates` (a bool per spot) lie flat on a surface of the depth map:
    printed or painted there, not lamps. Judged only where the map has shown a lamp not much
    bigger (a glow of at most four times the spot's area) as a bump: a soft or estimated
    map, or none, shows no lamp at all, and flat there says nothing."""
    flat = np.zeros(spots.count, bool)
    step = _map_step(disparity)
    relief = {k: _relief(disparity, spots, k, step) for k in np.flatnonzero(candidates)}
    bumps = [spots.area[k] for k, r in relief.items() if r is not None and r.is_bump()]
    if not bumps:
        return flat
    smallest_lamp_seen = min(bumps)
    for k, r in relief.items():
        if r is not None and 4.0 * spots.area[k] >= smallest_lamp_seen:
            flat[k] = r.is_flat()
    return flat


def light_energy(area: np.ndarray) -> np.ndarray:
    """Expected light in a light's clipped core, as a multiple of what clipping left."""
    return ENERGY_SCALE * np.power(np.maximum(area, 1.0), ENERGY_EXPONENT)


def light_gain(encoded01: np.ndarray, gain: float) -> np.ndarray:
    """Per-pixel, per-channel gain for clipped small lights (H×W×3), 1 elsewhere, at most
    `gain` on average over a light. `encoded01` are the photo's code values scaled to
    [0, 1], H×W×C."""
    out = np.ones(encoded01.shape[:2] + (3,), np.float32)
    spots = clipped_spots(encoded01) if gain > 1.0 else None
    if spots is not None:
        for box, boost in _light_boosts(spots, gain, light_likelihood(spots)):
            out[box] += boost
    return out


#: Within a light, the boost grows with the distance from the spot's edge to this power:
#: the clipped spot is wider than the light (its glow clips too), and a light is brightest
#: in its middle. Spread evenly, a light nearly in focus blurred into a disc too wide.
CORE_CONCENTRATION = 4.0


def _light_boosts(spots: ClippedSpots, gain: float, likelihood: np.ndarray):
    """For each light, its box and gain − 1 per pixel and channel over the box (0 off the
    light): the light's expected energy (times its `likelihood`), coloured by its shoulder,
    concentrated toward its middle."""
    energy = np.minimum(light_energy(spots.area), gain)
    per_spot = (energy - 1.0) * likelihood
    lights = per_spot > 0
    if not lights.any():
        return
    colour = _pooled_colour(spots, lights)
    for k in np.flatnonzero(lights):
        grown, box, inside = _spot_with_margin(spots, k)
        weight = inside.astype(np.float32)
        if CORE_CONCENTRATION > 0:
            depth = ndimage.distance_transform_edt(inside).astype(np.float32)
            depth **= CORE_CONCENTRATION
            weight = np.where(inside, depth / max(float(depth[inside].mean()), 1e-6), 0.0)
        boost = (np.float32(per_spot[k]) * weight[box])[..., None] * colour[k]
        yield spots.boxes[k], boost.astype(np.float32)


#: How far each light's colour is drawn toward the colour the photo's lights share (in log
#: space; 0 = its own, 1 = the common one).
COLOUR_POOLING = 0.5


def _pooled_colour(spots: ClippedSpots, lights: np.ndarray) -> np.ndarray:
    """The lights' colours, each drawn toward the median of all of them. A shoulder one or two
    pixels wide also holds what is behind the light (a green twig, a blue wall); the lights of
    one photo (a string of bulbs, the lamps of one street) mostly share a colour, and their
    median is not fooled by one light's background."""
    colour = spots.colour
    if COLOUR_POOLING <= 0 or lights.sum() < 2:
        return colour
    log = np.log(np.maximum(colour, 1e-3))
    common = np.median(log[lights], axis=0)
    pooled = np.exp((1.0 - COLOUR_POOLING) * log + COLOUR_POOLING * common)
    return (pooled / pooled.mean(axis=-1, keepdims=True)).astype(np.float32)


def _one_depth_per_light(
    coc_px: np.ndarray,
    spots: ClippedSpots,
    likelihood: np.ndarray,
    depth_coc_px: np.ndarray | None = None,
) -> np.ndarray:
    """One blur radius for each light's whole clipped spot: its lamp's.
    (The lights: the spots of `likelihood` above 0.)

    A light clips beyond its own outline (the lens and the pixels spread it), and the depth
    map gives those pixels the depth of what is behind: rendered with the background's blur,
    a light nearly in focus in front of a blurred wall became a large dim disc. A lamp is
    inside its own glow: where the depth map holds a surface that lies wholly inside the
    spot, that is the lamp (a twig in front of a light, a wall behind it run on past the
    glow). It is looked for in `depth_coc_px`, the radii before depth-edge snapping (default
    `coc_px`): snapping decides by colour, and clipping makes a light white whatever it is,
    so a small lamp beside a pale twig went to the twig. Where the map shows no lamp (a
    soft or coarse map), the spot takes the median radius of its inner pixels in `coc_px`.
    """
    lights = np.flatnonzero(likelihood > 0)
    if lights.size == 0:
        return coc_px
    depth_coc_px = coc_px if depth_coc_px is None else depth_coc_px
    out = coc_px.copy()
    for k in lights:
        grown, _, inside = _spot_with_margin(spots, k)
        lamp = _lamp_inside_glow(depth_coc_px[grown], inside)
        if lamp is None:
            core = ndimage.binary_erosion(inside)
            # Spots too thin to have an inner part take their median over all their pixels.
            lamp = np.median(coc_px[grown][core if core.any() else inside])
        out[grown][inside] = lamp
    return out


def _lamp_inside_glow(coc: np.ndarray, inside: np.ndarray) -> float | None:
    """The blur radius of the nearest surface of the depth map that the spot's pixels show
    and that lies wholly inside the spot; None if there is none. A surface is the connected
    pixels within half a depth jump (`depth_edges.depth_jump`) of one radius. `coc` and
    `inside` cover the spot's box grown by a pixel."""
    tried = []
    for level in np.unique(coc[inside])[::-1]:  # nearest first
        half_jump = 0.5 * float(depth_jump(level))
        if any(abs(level - t) <= half_jump for t in tried):
            continue
        tried.append(level)
        same = np.abs(coc - level) <= half_jump
        parts, _ = ndimage.label(same, structure=np.ones((3, 3), bool))
        surface = np.isin(parts, np.unique(parts[same & inside]))
        if (surface & ~inside).any():
            continue
        # A lamp is a small object of its own: more than one pixel centre of nearly one
        # depth, a whole jump from everything around it. (A soft map's steep slopes also cut
        # patches, mostly single pixels, out of a spot.)
        values = coc[surface]
        around = ndimage.binary_dilation(surface, np.ones((3, 3), bool)) & ~surface
        flat = values.size > 1 and float(values.max() - values.min()) <= 0.5 * half_jump
        if flat and np.all(np.abs(coc[around] - level) >= 2 * half_jump):
            return float(values.max())
    return None


def _blur_weight(coc_px: np.ndarray) -> np.ndarray:
    """Where a boost applies: where the light will be blurred (none below 0.5 px, full from
    1.5 px), as a weight to multiply an H×W×3 boost by."""
    return np.clip(np.abs(coc_px) - 0.5, 0.0, 1.0)[..., None]


def recover_highlights(
    linear_rgb: np.ndarray,
    encoded01: np.ndarray,
    coc_px: np.ndarray,
    gain: float = DEFAULT_GAIN,
    depth_coc_px: np.ndarray | None = None,
    disparity: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Scale small clipped lights by their estimated energy (at most `gain`) where they are
    out of focus (|CoC| ≥ 1.5 px), and give each light one blur radius, its lamp's, read
    from `depth_coc_px` (the radii before depth-edge snapping; default `coc_px`). With the
    photo's `disparity` (inverse depth), spots flat on a surface are not lights.
    Returns (linear RGB, CoC), new arrays where changed; in-focus pixels are untouched."""
    spots = clipped_spots(encoded01) if gain > 1.0 else None
    if spots is None:
        return linear_rgb, coc_px
    likelihood = light_likelihood(spots, disparity)
    coc_px = _one_depth_per_light(coc_px, spots, likelihood, depth_coc_px)
    out = None
    for box, boost in _light_boosts(spots, gain, likelihood):
        boost *= _blur_weight(coc_px[box])
        if boost.any():
            out = linear_rgb.copy() if out is None else out
            out[box] *= 1.0 + boost
    return (linear_rgb if out is None else out), coc_px


def separate_lights(
    linear_rgb: np.ndarray,
    encoded01: np.ndarray,
    coc_px: np.ndarray,
    gain: float = DEFAULT_GAIN,
    max_sprites: int = MAX_SPRITES,
    depth_coc_px: np.ndarray | None = None,
    disparity: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, Lights]:
    """Like `recover_highlights`, but the energy given back to the (at most `max_sprites`)
    strongest lights is returned apart, as sprites to draw after the layers
    (`light_sprites.py`), and only the rest is added to the photo's pixels.
    Returns (linear RGB, CoC, lights)."""
    spots = clipped_spots(encoded01) if gain > 1.0 else None
    if spots is None:
        return linear_rgb, coc_px, Lights()
    likelihood = light_likelihood(spots, disparity)
    coc_px = _one_depth_per_light(coc_px, spots, likelihood, depth_coc_px)
    lights = []
    for box, boost in _light_boosts(spots, gain, likelihood):
        patch = (linear_rgb[box][..., :3] * boost * _blur_weight(coc_px[box])).astype(np.float32)
        weight = patch.sum(axis=-1)
        total = float(weight.sum())
        if total <= 0.0:
            continue
        yy, xx = np.mgrid[box[0], box[1]]
        centre = (float((yy * weight).sum() / total), float((xx * weight).sum() / total))
        light_coc = float(np.median(coc_px[box][boost[..., 0] > 0]))
        lights.append(Light(patch, box[0].start, box[1].start, centre, light_coc))
    lights.sort(key=lambda light: light.energy, reverse=True)
    out = linear_rgb
    if len(lights) > max_sprites:
        out = linear_rgb.copy()
        for light in lights[max_sprites:]:
            ph, pw = light.patch.shape[:2]
            out[light.top : light.top + ph, light.left : light.left + pw, :3] += light.patch
        lights = lights[:max_sprites]
    return out, coc_px, Lights(lights)

"""Highlight recovery, grain matching and the classical upscale."""

import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from scipy import ndimage

from bokehkit.io.colour import srgb_to_linear
from bokehkit.render.depth_edges import snap_depth_edges
from bokehkit.render.grain import add_grain, estimate_noise
from bokehkit.render.highlights import (
    _large_areas,
    clipped_spots,
    light_gain,
    light_likelihood,
    recover_highlights,
    separate_lights,
)
from bokehkit.sr.lanczos import upscale_linear

REPO = Path(__file__).resolve().parents[2]


def test_small_light_is_boosted_but_not_a_white_wall_or_a_glint():
    img = np.full((120, 120, 3), 0.3, np.float32)
    yy, xx = np.mgrid[:120, :120]
    img[(yy - 20) ** 2 + (xx - 20) ** 2 <= 5] = 1.0  # a small light (21 px) on a dark wall
    img[60:110, 60:110] = 1.0  # a white wall
    img[20, 90] = 1.0  # a single-pixel glint
    img[40, 20:41] = 1.0  # a thin white stripe of paint (21 px, as many as the light)
    img[15:18, 40:43] = (1.0, 0.3, 0.3)  # a clipped speck of saturated red, no contrast
    img[14:19, 39:44, 1:] = 0.3
    gain = light_gain(img, 6.0)
    light = (yy - 20) ** 2 + (xx - 20) ** 2 <= 5
    assert gain[light].mean() == pytest.approx(6.0)  # the cap, on average over the light
    assert gain[20, 20, 0] > gain[18, 20, 0]  # brightest in its middle
    assert np.all(gain[60:110, 60:110] == 1.0)
    assert np.all(gain[20, 90] == 1.0)
    assert np.all(gain[40, 27] == 1.0)
    assert np.all(gain[16, 41] == 1.0)
    coc = np.full((120, 120), 10.0, np.float32)
    coc[:, :10] = 0.0  # in focus: untouched
    out, _ = recover_highlights(img, img, coc, 6.0)
    assert out[light].mean() == pytest.approx(6.0)
    assert np.array_equal(out[:, :10], img[:, :10])


@pytest.mark.parametrize("seed", range(6))
def test_large_areas_are_the_opening_by_the_disc_component_by_component(seed):
    """Surfaces are found by opening each large enough component in its own box; that must
    be exactly the whole-image opening by the disc (with outside the image empty), grown
    by 2 px, for blobs of every size, touching each other diagonally and the image's edge."""
    rng = np.random.default_rng(seed)
    h, w, r = 90, 120, int(rng.integers(3, 8))
    mask = np.zeros((h, w), bool)
    yy, xx = np.mgrid[:h, :w]
    for _ in range(14):
        cy, cx = rng.integers(-5, h + 5), rng.integers(-5, w + 5)
        ry, rx = rng.uniform(1, 2.5 * r, 2)
        mask |= ((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2 <= 1
    mask |= rng.random((h, w)) < 0.03
    disc = (np.mgrid[-r : r + 1, -r : r + 1] ** 2).sum(axis=0) <= (r + 0.5) ** 2
    padded = np.pad(mask, r + 1)
    opened = ndimage.binary_opening(padded, disc)[r + 1 : -r - 1, r + 1 : -r - 1]
    expected = ndimage.binary_dilation(opened, iterations=2)
    assert expected.any() and not expected.all()
    assert np.array_equal(_large_areas(mask, r), expected)


def test_a_light_keeps_the_colour_its_glow_shows():
    """The clipped core of a warm light is white; its unclipped shoulder is warm. The energy
    given back takes the shoulder's colour, not white."""
    img = np.full((60, 60, 3), 0.1, np.float32)
    yy, xx = np.mgrid[:60, :60]
    r2 = (yy - 30) ** 2 + (xx - 30) ** 2
    img[r2 <= 9] = 1.0
    shoulder = (r2 > 9) & (r2 <= 16)
    img[shoulder] = (0.75, 0.45, 0.25)  # the glow of an orange light over a dark wall
    gain = light_gain(img, 40.0)
    core = gain[r2 <= 4]
    assert np.all(core[:, 0] > core[:, 1]) and np.all(core[:, 1] > core[:, 2])
    assert np.all(gain[r2 > 9] == 1.0)


def test_a_light_is_blurred_as_its_core_not_as_the_wall_behind_its_glow():
    """The light clips beyond its outline; the depth map gives that rim the wall's depth.
    The whole clipped spot must take the light's own blur radius."""
    img = np.full((60, 60, 3), 0.2, np.float32)
    yy, xx = np.mgrid[:60, :60]
    spot = (yy - 30) ** 2 + (xx - 30) ** 2 <= 9  # 29 px clipped
    img[spot] = 1.0
    coc = np.full((60, 60), -14.0, np.float32)  # the wall, far behind
    coc[(yy - 30) ** 2 + (xx - 30) ** 2 <= 2] = -3.0  # the light itself, nearly in focus
    _, new_coc = recover_highlights(img, img, coc, 40.0)
    assert np.all(new_coc[spot] == -3.0)
    assert np.array_equal(new_coc[~spot], coc[~spot])


def test_a_small_lamp_in_its_glow_is_blurred_as_the_lamp_not_the_twig_or_the_wall():
    """A lamp of 2 pixel centres glows over 29 clipped pixels of a far wall, and a twig in
    front crosses the glow: most of the spot's inner pixels are wall or twig (their median
    is the wall's). The lamp is the surface that lies wholly inside the glow; the twig and
    the wall run on past it."""
    img = np.full((60, 60, 3), 0.2, np.float32)
    yy, xx = np.mgrid[:60, :60]
    spot = (yy - 30) ** 2 + (xx - 30) ** 2 <= 9
    img[spot] = 1.0
    coc = np.full((60, 60), -14.0, np.float32)  # the wall
    coc[28:30, :] = 6.0  # the twig, in front
    coc[31, 30:32] = -3.0  # the lamp
    _, new_coc = recover_highlights(img, img, coc, 40.0)
    assert np.all(new_coc[spot] == -3.0)
    assert np.array_equal(new_coc[~spot], coc[~spot])


def test_a_soft_depth_map_shows_no_lamp_and_the_spot_takes_its_median():
    """A network's soft map smears a near post across the glow of a light behind it: its
    steep slope cuts one-pixel patches a jump apart out of the spot, which are not lamps.
    The spot takes the median of its inner pixels, as without the lamp search."""
    img = np.full((60, 60, 3), 0.2, np.float32)
    yy, xx = np.mgrid[:60, :60]
    spot = (yy - 30) ** 2 + (xx - 30) ** 2 <= 9
    img[spot] = 1.0
    sharp = np.where(xx + 0.6 * yy < 48, -18.0, 6.0).astype(np.float32)  # post edge, wall
    soft = ndimage.gaussian_filter(sharp, 1.5)
    _, new_coc = recover_highlights(img, img, soft, 40.0)
    inner = ndimage.binary_erosion(spot)
    assert np.all(new_coc[spot] == np.median(soft[inner]))


def test_a_lamp_beside_a_pale_twig_keeps_its_depth_when_the_edges_are_snapped():
    """Depth-edge snapping gives the clipped (white) lamp to the pale twig beside it, whose
    colour is nearer white than the dark wall's. The light takes its depth from the map
    before snapping, where the lamp is a surface of its own inside the glow."""
    enc = np.full((60, 60, 3), 0.15, np.float32)  # a dark wall
    yy, xx = np.mgrid[:60, :60]
    spot = (yy - 30) ** 2 + (xx - 30) ** 2 <= 9
    enc[25:27, :] = 0.85  # a pale twig just above the glow
    enc[spot] = 1.0
    coc = np.full((60, 60), -14.0, np.float32)
    coc[25:27, :] = 8.0
    coc[29:31, 29:31] = -3.0  # the lamp: 4 pixel centres of the 29 its glow clips
    linear = srgb_to_linear(enc)
    snapped = snap_depth_edges(linear, coc)
    assert np.all(snapped[29:31, 29:31] == 8.0)  # snapping alone puts the lamp on the twig
    _, out_coc, lights = separate_lights(linear, enc, snapped, 40.0, depth_coc_px=coc)
    assert [light.coc for light in lights] == [-3.0]
    assert np.all(out_coc[spot] == -3.0)
    assert np.array_equal(out_coc[~spot], snapped[~spot])


def _lamps_and_a_printed_glint():
    """A dark wall at 10 m with two lamps hanging 2.5 m in front of it, and a card at about
    3 m, tilted, with a white glint printed on it (a 5×4 rectangle: as compact, white and
    steep-shouldered as a lamp's glow). Returns the photo, its inverse depth, the glint's
    pixels and the lamps'."""
    img = np.full((90, 160, 3), 0.2, np.float32)
    yy, xx = np.mgrid[:90, :160]
    disparity = np.full((90, 160), 1 / 10, np.float32)
    lamps = np.zeros((90, 160), bool)
    for cy, cx in ((20, 20), (70, 30)):
        glow = (yy - cy) ** 2 + (xx - cx) ** 2 <= 6
        img[glow] = 1.0
        lamps |= glow
        disparity[(yy - cy) ** 2 + (xx - cx) ** 2 <= 2] = 1 / 7.5
    card = (yy >= 10) & (yy < 80) & (xx >= 70) & (xx < 150)
    disparity[card] = (1 / 3 + 0.0004 * (xx - 110) - 0.0003 * (yy - 45))[card]
    img[card] = 0.25
    glint = (yy >= 40) & (yy < 44) & (xx >= 100) & (xx < 105)
    img[glint] = 1.0
    return img, disparity, glint, lamps


@pytest.mark.parametrize("map_kind", ["exact", "8-bit", "soft"])
def test_a_glint_printed_on_a_card_is_not_a_light_where_the_map_shows_lamps(map_kind):
    """Where the depth map shows the lamps as bumps in front of the wall, a clipped spot that
    lies flat on the card's surface is printed there: no energy is given back to it. Also
    with the map stored in 8 bits (whose steps cross the card), or blurred as a network's."""
    img, disparity, glint, lamps = _lamps_and_a_printed_glint()
    if map_kind == "8-bit":
        lo, hi = disparity.min(), disparity.max()
        disparity = lo + np.round((disparity - lo) / (hi - lo) * 255) / 255 * (hi - lo)
    elif map_kind == "soft":
        disparity = ndimage.gaussian_filter(disparity, 1.5)
    spots = clipped_spots(img)
    photometric = light_likelihood(spots)
    with_depth = light_likelihood(spots, disparity)
    glint_spot = spots.labels[glint][0] - 1
    assert photometric[glint_spot] == 1.0  # by its pixels alone, a light
    assert with_depth[glint_spot] == 0.0
    lamp_spots = np.unique(spots.labels[lamps]) - 1
    assert np.all(with_depth[lamp_spots] == photometric[lamp_spots]) and np.all(
        photometric[lamp_spots] > 0
    )
    coc = np.full(disparity.shape, 8.0, np.float32)
    out, _ = recover_highlights(img, img, coc, 40.0, disparity=disparity)
    assert np.array_equal(out[glint], img[glint])
    assert np.all(out[lamps] >= img[lamps]) and out[lamps].mean() > 5 * img[lamps].mean()


def test_a_flat_spot_is_still_a_light_where_the_map_shows_no_lamp():
    """A soft or estimated map smooths the lamps away; then a spot flat on a surface says
    nothing, and the glint is taken by its pixels as before (so are lights of a night photo
    whose map shows none of them)."""
    img, disparity, glint, _ = _lamps_and_a_printed_glint()
    smooth = np.where(disparity > 0.2, disparity, 1 / 10).astype(np.float32)  # no lamps
    spots = clipped_spots(img)
    glint_spot = spots.labels[glint][0] - 1
    assert light_likelihood(spots, smooth)[glint_spot] == 1.0


def _as_jpeg(img: np.ndarray, quality: int) -> np.ndarray:
    """`img` (code values in [0, 1]) stored as a JPEG with 4:2:0 chroma, as phones store
    photos, and read back."""
    buffer = io.BytesIO()
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(
        buffer, "JPEG", quality=quality, subsampling="4:2:0"
    )
    return np.asarray(Image.open(buffer), np.float32) / 255.0


@pytest.mark.parametrize("quality", [80, 92, 97])
def test_lights_stay_lights_in_a_jpeg_whose_chroma_tints_their_cores(quality):
    """JPEG keeps colour at half resolution: a small white core on yellow and magenta checks
    takes some of their colour, and single channels drop 10-25 code values under clipping.
    The lights are still lights; a clipped yellow blotch of the same size is still not."""
    img = np.zeros((96, 160, 3), np.float32)
    yy, xx = np.mgrid[:96, :160]
    checks = ((yy // 12 + xx // 12) % 2).astype(bool)
    img[checks] = (0.85, 0.68, 0.25)  # yellow
    img[~checks] = (0.6, 0.25, 0.55)  # magenta
    lights = []
    for cy, cx in ((18, 14), (30, 47), (43, 77), (55, 106), (66, 138)):
        light = (yy - cy) ** 2 + (xx - cx) ** 2 <= 5
        img[light] = 1.0
        lights.append(light)
    blotch = (yy - 82) ** 2 + (xx - 40) ** 2 <= 5
    img[blotch] = (1.0, 1.0, 0.35)
    stored = _as_jpeg(img, quality)
    spots = clipped_spots(stored)
    likelihood = light_likelihood(spots)
    per_light = []
    for light in lights:
        labels = np.unique(spots.labels[light])
        per_light.append(likelihood[labels[labels > 0] - 1].max())
    assert min(per_light) > 0.25 and sorted(per_light)[1] > 0.9
    blotch_labels = np.unique(spots.labels[blotch])
    assert np.all(likelihood[blotch_labels[blotch_labels > 0] - 1] == 0.0)


def test_a_light_in_front_of_a_bright_wall_is_a_light_and_a_bright_patch_is_not():
    """The shoulder is judged against what is around the spot: one pixel out, a light's
    glow has fallen most of the way to a bright wall (code values 0.62 here, above a dark
    wall's whole range), where a clipped patch that shades off softly has not."""
    img = np.full((60, 120, 3), 0.62, np.float32)
    yy, xx = np.mgrid[:60, :120]
    light = (yy - 30) ** 2 + (xx - 30) ** 2 <= 5
    img[light] = 1.0
    r = np.hypot(yy - 30, xx - 90)
    img[r <= 2.5] = 1.0  # a patch of the same size whose edge falls off over 3 px
    soft = (r > 2.5) & (r <= 5.5)
    img[soft] = (1.0 - (r[soft] - 2.5) / 3.0 * 0.38)[:, None]
    spots = clipped_spots(img)
    likelihood = light_likelihood(spots)
    assert likelihood[spots.labels[30, 30] - 1] == 1.0
    assert likelihood[spots.labels[30, 90] - 1] == 0.0


def test_a_greyscale_photo_has_lights_too():
    img = np.full((60, 60, 1), 0.25, np.float32)
    yy, xx = np.mgrid[:60, :60]
    img[(yy - 30) ** 2 + (xx - 30) ** 2 <= 5] = 1.0
    spots = clipped_spots(img)
    assert spots.count == 1 and light_likelihood(spots)[0] == 1.0


def test_the_bundled_samples_string_of_lights_is_taken_for_lights():
    """The sample (a JPEG of quality 92) has a string of 28 small lights hanging across
    yellow and magenta checks, between rows 95 and 230: in front of the bright yellow, their
    shoulders stay well above the code values of a dark wall."""
    sample = REPO / "core" / "bokehkit" / "data" / "sample" / "sample.jpg"
    photo = np.asarray(Image.open(sample).convert("RGB"), np.float32) / 255.0
    spots = clipped_spots(photo)
    likelihood = light_likelihood(spots)
    rows = np.array([box[0].start for box in spots.boxes])
    in_string = (rows >= 95) & (rows < 230) & (spots.area >= 6)
    assert in_string.sum() >= 25
    assert (likelihood[in_string] > 0.5).sum() >= 2 / 3 * in_string.sum()
    # Nor are the sample's other clipped spots.
    assert np.all(likelihood[~in_string & (spots.area >= 6)] == 0.0)


def test_noise_estimate_and_grain_put_back():
    rng = np.random.default_rng(0)
    sigma = 4 / 255
    base = np.repeat(np.linspace(0.2, 0.8, 256, dtype=np.float32)[None], 256, 0)[..., None]
    noisy = base + rng.standard_normal((256, 256, 3)).astype(np.float32) * sigma
    est = estimate_noise(noisy)
    assert np.allclose(est, sigma, rtol=0.25)
    flat = np.full((256, 256, 3), 0.2, np.float32)
    coc = np.zeros((256, 256), np.float32)
    coc[:, 128:] = 20.0
    out = add_grain(flat.copy(), coc, est, seed=1)
    assert np.array_equal(out[:, :128], flat[:, :128])  # sharp half untouched
    added = np.std(out[:, 140:])  # in linear light; sRGB slope at 0.2 is about 1/1.7
    assert 0.5 * sigma < added < 1.5 * sigma


def test_upscale_is_sharper_than_bilinear_and_does_not_ring():
    from PIL import Image

    rng = np.random.default_rng(2)
    hi = rng.random((32, 32, 3)).astype(np.float32)
    hi = np.kron(hi, np.ones((8, 8, 1), np.float32))  # blocky detail at 256 px
    lo = hi.reshape(64, 4, 64, 4, 3).mean(axis=(1, 3))
    ours = upscale_linear(lo, 4)
    assert ours.shape == hi.shape
    assert ours.min() >= lo.min() - 1e-6 and ours.max() <= lo.max() + 1e-6
    bilinear = np.stack(
        [
            np.asarray(Image.fromarray(lo[..., c]).resize((256, 256), Image.Resampling.BILINEAR))
            for c in range(3)
        ],
        -1,
    )
    err_ours = np.abs(ours - hi).mean()
    err_bilinear = np.abs(bilinear - hi).mean()
    assert err_ours < err_bilinear

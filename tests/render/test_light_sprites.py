"""Recovered lights drawn as sprites: energy kept, and cut by what stands in front of them."""

import numpy as np
import pytest

from bokehkit.render.highlights import recover_highlights, separate_lights
from bokehkit.render.light_sprites import Light, Lights, draw_lights, visibility
from bokehkit.scene.aperture import Aperture


def _light(y, x, coc, energy=10.0):
    patch = np.zeros((1, 1, 3), np.float32)
    patch[0, 0] = energy
    return Light(patch, y, x, (float(y), float(x)), coc)


def test_a_light_with_nothing_in_front_keeps_all_its_energy_in_its_disc():
    coc = np.full((80, 80), -12.0, np.float32)
    out = np.zeros((80, 80, 3), np.float32)
    draw_lights(out, coc, Lights([_light(40, 40, -12.0)]), Aperture())
    assert out.sum(axis=(0, 1)) == pytest.approx([10.0] * 3, rel=1e-4)
    yy, xx = np.mgrid[:80, :80]
    r = np.hypot(yy - 40, xx - 40)
    assert np.all(out[r > 13.5] == 0)  # nothing beyond the disc
    assert out[40, 40, 0] == pytest.approx(out[40, 50, 0], rel=0.05)  # a flat disc


def test_a_twig_in_front_draws_a_thin_line_across_the_disc_not_a_cut_half():
    """A light far behind (blur −12) and a one-pixel twig in front of the focal plane (+4),
    four columns to its right. The ray to pixel x passes the twig's depth at
    P = L + (1 − 4/−12)(x − L) = L + 4/3 (x − L): the twig blocks the column 3 px right of
    the light (3/4 of that pixel's area, so it is dark, not black), and the disc on both
    sides of that line stays lit."""
    coc = np.full((80, 80), -12.0, np.float32)
    coc[:, 44] = 4.0
    seen = visibility(coc, (40.0, 40.0), -12.0, (28, 53, 28, 53))
    column = seen[40 - 28]  # the row through the light
    assert column[43 - 28] <= 0.5  # the twig's shadow
    assert column[40 - 28] == 1.0 and column[39 - 28] == 1.0  # the light's side
    assert column[47 - 28] == 1.0 and column[49 - 28] == 1.0  # and beyond the shadow
    assert (seen == 0).mean() < 0.15  # a line, not half the disc


def test_a_slanted_edge_cuts_the_disc_smoothly_not_in_steps():
    """A light (blur −20) behind a near wall (+3) whose edge is slanted. The share of each
    pixel's area whose ray meets the wall, counted with 16×16 rays a pixel, is what a lens
    shows; one ray a pixel drew the depth map's staircase (mean error 0.0083 over the disc's
    box, no partial pixels)."""
    h = w = 120
    yy, xx = np.mgrid[:h, :w]
    box = (38, 83, 38, 83)
    o = (np.arange(16) + 0.5) / 16 - 0.5
    ys = np.arange(box[0], box[1])[:, None, None, None] + o[None, None, :, None]
    xs = np.arange(box[2], box[3])[None, :, None, None] + o[None, None, None, :]
    magnification = 1 + 3 / 20  # P = L + (1 − s_wall / s_light)(x − L)
    errors, partial = [], 0
    for slope in (0.35, -0.6, 1.7):
        coc = np.full((h, w), -20.0, np.float32)
        coc[yy > slope * (xx - 60) + 66] = 3.0
        seen = visibility(coc, (60.0, 60.0), -20.0, box)
        py = np.rint(60 + magnification * (ys - 60))
        px = np.rint(60 + magnification * (xs - 60))
        exact = 1.0 - (py > slope * (px - 60) + 66).mean(axis=(2, 3))
        errors.append(np.abs(seen - exact).mean())
        partial += int(((seen > 0.01) & (seen < 0.99)).sum())
    assert np.mean(errors) < 0.0073
    assert partial >= 60  # the cut is anti-aliased along its length


def test_a_light_behind_a_near_edge_is_cut_by_a_sharp_chord():
    """A wall in front (blur +6) covers the image left of column 36; the light (blur −10)
    sits 4 px right of its edge. Where the ray meets the wall's depth, P = L + 1.6 (x − L):
    pixels left of column 40 − 4/1.6 = 37.5 see the wall, not the light."""
    coc = np.full((80, 80), -10.0, np.float32)
    coc[:, :36] = 6.0
    out = np.zeros((80, 80, 3), np.float32)
    draw_lights(out, coc, Lights([_light(40, 40, -10.0)]), Aperture())
    assert np.all(out[30:51, :37] == 0)  # behind the wall: no light at all
    assert np.all(out[40, 39:49, 0] > 0)  # the rest of the disc is lit
    # The cut is sharp: full brightness right beside it.
    assert out[40, 39, 0] == pytest.approx(out[40, 44, 0], rel=0.05)


def test_separate_lights_returns_the_energy_recover_highlights_adds():
    img = np.full((80, 80, 3), 0.2, np.float32)
    yy, xx = np.mgrid[:80, :80]
    for cy, cx in [(20, 20), (20, 60), (60, 40)]:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 <= 5] = 1.0
    coc = np.full((80, 80), -8.0, np.float32)
    boosted, _ = recover_highlights(img, img, coc, 40.0)
    base, new_coc, lights = separate_lights(img, img, coc, 40.0)
    assert len(lights) == 3
    assert np.array_equal(base, img)  # the photo's pixels stay as they were
    excess = sum(light.patch.sum() for light in lights)
    assert excess == pytest.approx(float((boosted - img).sum()), rel=1e-4)
    assert all(light.coc == -8.0 for light in lights)
    # Beyond the cap the weakest lights go back into the pixels.
    base, _, few = separate_lights(img, img, coc, 40.0, max_sprites=1)
    assert len(few) == 1
    assert float((base - img).sum()) + few.items[0].patch.sum() == pytest.approx(excess, rel=1e-4)


def test_lights_scaled_for_an_enlarged_image_keep_their_brightness():
    light = _light(10, 20, -5.0, energy=3.0)
    (big,) = Lights([light]).scaled(2).items
    assert big.patch.shape[:2] == (2, 2) and np.all(big.patch == 3.0)
    assert (big.top, big.left) == (20, 40)
    assert big.centre_yx == (20.5, 40.5)
    assert big.coc == -10.0


def _render_lit_and_unlit(tmp_path, img, depth, factor=1):
    """Render an 8-bit photo and its metric depth as `bokehkit render` does (focus 2 m,
    f/2, 200 mm, no grain, ×`factor`), with highlight recovery at the default cap and off:
    (lit, unlit) as int arrays."""
    from PIL import Image

    from bokehkit.pipeline import RenderSettings, render_file

    Image.fromarray(img).save(tmp_path / "in.png")
    np.save(tmp_path / "depth.npy", depth)
    out = []
    for highlights in (40.0, 1.0):
        settings = RenderSettings(
            depth_path=str(tmp_path / "depth.npy"),
            depth_units="m",
            depth_kind="depth",
            focus_distance_m=2.0,
            f_number=2.0,
            focal_length_mm=200.0,
            grain=0.0,
            highlight_gain=highlights,
            sr_factor=factor,
        )
        render_file(tmp_path / "in.png", tmp_path / f"out{highlights}.png", settings)
        out.append(np.asarray(Image.open(tmp_path / f"out{highlights}.png")).astype(int))
    return tuple(out)


@pytest.mark.parametrize("factor", [1, 2])
def test_a_lamp_behind_a_post_does_not_glow_through_it(tmp_path, factor):
    """A photo as a user renders it: a small street lamp far behind, just beside a dark post
    that stands in front of the focal plane. Its recovered light makes a bright disc on the
    open side, and none of it shows through the post, whose own blur is translucent."""
    h, w = 96, 128
    img = np.full((h, w, 3), 60, np.uint8)
    depth = np.full((h, w), 20.0, np.float32)
    img[:, 20:56] = 15  # the post, 1.2 m away (its blur: 12 px)
    depth[:, 20:56] = 1.2
    yy, xx = np.mgrid[:h, :w]
    img[(yy - 48) ** 2 + (xx - 60) ** 2 <= 4] = 255  # the lamp (blur 16 px), beside the post
    lit, unlit = _render_lit_and_unlit(tmp_path, img, depth, factor)
    f = factor
    open_side = np.s_[40 * f : 56 * f, 62 * f : 70 * f]
    post_middle = np.s_[36 * f : 60 * f, 44 * f : 54 * f]
    # The open side of the disc is much brighter with the light's energy given back...
    assert (lit[open_side] - unlit[open_side]).mean() > 40
    # ...and the post's middle, which the lamp's disc covers, is not brightened at all.
    assert np.abs(lit[post_middle] - unlit[post_middle]).max() <= 1


def test_a_glint_printed_on_a_card_does_not_bloom_but_the_lamp_does(tmp_path):
    """A photo as a user renders it with its depth map: a lamp hangs in front of a far wall
    (the map shows it), and a photo card nearer by has a white glint printed on it, as
    compact and white as the lamp. Only the lamp's disc gets the light given back."""
    h, w = 96, 160
    img = np.full((h, w, 3), 40, np.uint8)
    depth = np.full((h, w), 20.0, np.float32)
    yy, xx = np.mgrid[:h, :w]
    img[(yy - 48) ** 2 + (xx - 40) ** 2 <= 4] = 255  # the lamp's glow
    depth[(yy - 48) ** 2 + (xx - 40) ** 2 <= 1] = 12.0  # the lamp, 8 m before the wall
    depth[16:80, 90:150] = 3.0  # the card
    img[16:80, 90:150] = 70
    img[46:50, 118:123] = 255  # the printed glint
    lit, unlit = _render_lit_and_unlit(tmp_path, img, depth)
    lamp_disc, glint_disc = np.s_[40:57, 32:49], np.s_[40:57, 112:129]
    assert (lit[lamp_disc] - unlit[lamp_disc]).mean() > 40
    assert np.abs(lit[glint_disc] - unlit[glint_disc]).max() <= 1


def test_a_lamp_with_a_size_casts_a_soft_shadow_of_a_twig():
    """The twig of the test above in front of a lamp 5 px across instead of a point: each
    point of the lamp casts the twig's shadow a little aside, so the line across its disc is
    a soft dip, not a dark stripe one pixel wide, and as much light is lost as before."""
    yy, xx = np.mgrid[-3:4, -3:4]
    patch = np.repeat((((yy**2 + xx**2) <= 6.25) * 1.0).astype(np.float32)[..., None], 3, -1)
    lamp = Light(patch, 37, 37, (40.0, 40.0), -12.0)
    assert 2.0 < lamp.radius < 3.0
    coc = np.full((80, 80), -12.0, np.float32)
    out_clear = np.zeros((80, 80, 3), np.float32)
    draw_lights(out_clear, coc, Lights([lamp]), Aperture())
    coc[:, 44] = 4.0
    out = np.zeros((80, 80, 3), np.float32)
    draw_lights(out, coc, Lights([lamp]), Aperture())
    ratio = out[40, 30:51, 0] / out_clear[40, 30:51, 0]
    assert 0.6 < ratio.min() < 0.95  # a dip (a hard-edged shadow: 0.5), not a dark stripe
    lost = 1.0 - out.sum() / out_clear.sum()
    point_lost = 1.0 - (visibility(coc, (40.0, 40.0), -12.0, (28, 53, 28, 53))).mean()
    assert 0.3 * point_lost < lost < 2.0 * point_lost

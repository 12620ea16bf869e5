"""The classical renderer against what optics says must happen."""

import numpy as np
import pytest

from bokehkit.progress import Cancelled, Progress
from bokehkit.render.base import RenderJob
from bokehkit.render.classical import ClassicalRenderer, signed_slabs
from bokehkit.scene.aperture import Aperture


def render(image, coc, **aperture):
    job = RenderJob(image.astype(np.float32), coc.astype(np.float32), Aperture(**aperture))
    return ClassicalRenderer(threads=1).render(job, Progress())


def point_light(size=161, value=1000.0):
    img = np.zeros((size, size, 3), np.float32)
    img[size // 2, size // 2] = value
    return img


@pytest.mark.parametrize("radius", [2.5, 3.0, 4.4, 5.0, 6.0])
def test_point_light_becomes_disc_of_its_coc_with_energy_kept(radius):
    """Up to 6 px slabs are 1 px apart, so even a radius between two slabs keeps its
    half-maximum diameter within 1 px (beyond, slabs grow by 12 %: see the rms test)."""
    img = point_light()
    out = render(img, np.full(img.shape[:2], -radius))
    lum = out[..., 0]
    assert lum.sum() == pytest.approx(1000.0, rel=1e-3)
    # Half-maximum diameter through the centre: the thin-lens disc, ±1 px.
    row = lum[80]
    diameter = np.count_nonzero(row >= 0.5 * lum[80, 80])
    assert abs(diameter - 2 * radius) <= 1.0
    # Evenly lit: the middle half of the disc is flat within 5 %.
    inner = lum[80, 80 - int(radius / 2) : 80 + int(radius / 2) + 1]
    assert inner.max() / inner.min() < 1.05


def test_point_light_between_slabs_keeps_its_size():
    """Radii between two slabs mix two discs; the rms size must still be the CoC."""
    img = point_light()
    for radius in (7.1, 10.0, 13.7, 24.0, 29.3, 40.0):
        out = render(img, np.full(img.shape[:2], radius))[..., 0]
        assert out.sum() == pytest.approx(1000.0, rel=1e-3)
        yy, xx = np.mgrid[:161, :161] - 80
        rms = np.sqrt((out * (xx**2 + yy**2)).sum() / out.sum())
        # A uniform disc of radius r has rms radius r/√2.
        assert abs(rms * np.sqrt(2) - radius) <= 0.5


def test_in_focus_pixels_are_untouched():
    rng = np.random.default_rng(0)
    img = rng.random((96, 128, 3)).astype(np.float32)
    coc = np.zeros((96, 128), np.float32)
    coc[:, 96:] = -12.0  # background on the right only
    out = render(img, coc)
    assert np.array_equal(out[:, :60], img[:, :60])


def step_edge(left_coc, right_coc, width=200):
    img = np.zeros((48, width, 3), np.float32)
    img[:, : width // 2] = 1.0
    coc = np.zeros((48, width), np.float32)
    coc[:, : width // 2] = left_coc
    coc[:, width // 2 :] = right_coc
    return render(img, coc)[24, :, 0]


def test_sharp_foreground_gets_no_halo_from_blurred_background():
    # Left: bright, in focus. Right: dark, behind the focal plane, blurred 10 px.
    row = step_edge(0.0, -10.0)
    assert np.all(row[:100] == 1.0)  # the in-focus side stays exactly itself
    assert np.all(row[100:] < 1e-6)  # and its light does not spread behind it


@pytest.mark.parametrize("behind", [-0.8, -1.2, -2.0, -10.0])
def test_an_in_focus_edge_hides_a_background_only_just_behind_it(behind):
    # A background blurred by less than a depth jump is no part of the in-focus surface:
    # every pixel on the in-focus side keeps its exact value, right up to the edge.
    rng = np.random.default_rng(1)
    img = rng.random((48, 64, 3)).astype(np.float32)
    coc = np.zeros((48, 64), np.float32)
    coc[:, :32] = behind
    out = render(img, coc)
    assert np.array_equal(out[:, 32:], img[:, 32:])


def test_blurred_foreground_turns_translucent_over_sharp_background():
    # Left: bright, in front, blurred 10 px. Right: dark, in focus.
    row = step_edge(10.0, 0.0)
    # Thin-lens truth (ray-traced in research/anchors.md §2.3): ~0.56 one pixel inside the
    # edge, ~0.50 on it, ~0.19 five pixels out, 0 beyond the radius.
    assert 0.45 < row[99] < 0.62
    assert 0.40 < row[100] < 0.56
    assert 0.10 < row[105] < 0.26
    assert row[111] < 0.02
    assert row[80] > 0.99


def test_thin_blurred_foreground_does_not_leave_a_dark_line():
    """A thin dark twig in front, far out of focus, must fade into the background."""
    img = np.full((80, 80, 3), 0.5, np.float32)
    img[:, 39:42] = 0.0
    coc = np.zeros((80, 80), np.float32)
    coc[:, 39:42] = 15.0
    row = render(img, coc)[40, :, 0]
    # 3 px of black spread over a 30 px disc: the middle darkens by about 3·30/(π·15²) ≈ 13 %.
    assert row[40] > 0.38
    assert row.min() > 0.38


def test_polygon_aperture_and_rotation():
    img = point_light()
    coc = np.full(img.shape[:2], -30.0)
    hexagon = render(img, coc, blades=6)[..., 0] > 1e-4
    circle = render(img, coc)[..., 0] > 1e-4
    # A hexagon inscribed in the circle covers 3√3/(2π) ≈ 83 % of its area.
    assert hexagon.sum() / circle.sum() == pytest.approx(0.83, abs=0.04)
    rotated = render(img, coc, blades=6, rotation_deg=30)[..., 0] > 1e-4
    assert np.count_nonzero(hexagon != rotated) > 100
    assert np.array_equal(np.rot90(rotated, 1) > 0, np.rot90(rotated, 1) > 0)


def test_cats_eye_narrows_discs_toward_the_corners():
    ap = Aperture(cat_eye=1.0)
    centre = ap.kernel(20.0, (0.0, 0.0))
    corner = ap.kernel(20.0, (0.7, 0.7))
    assert np.count_nonzero(corner > 0) < 0.6 * np.count_nonzero(centre > 0)
    assert corner.sum() == pytest.approx(1.0, abs=1e-5)


def test_slabs_cover_front_and_back():
    slabs = signed_slabs(np.array([-20.0, 0.0, 35.0]))
    assert slabs[0] <= -20.0 and slabs[-1] >= 35.0
    assert np.all(np.diff(slabs) > 0)


def test_cancel_between_tiles():
    img = np.zeros((600, 600, 3), np.float32)
    progress = Progress()
    progress.cancel()
    with pytest.raises(Cancelled):
        ClassicalRenderer(tile_px=128).render(RenderJob(img, np.zeros((600, 600))), progress)


def radial_coc(h=300, w=400, strength=40.0):
    from bokehkit.scene.depth import fallback_depth

    disparity = fallback_depth(w, h, focus_point=(w / 2, h / 2)).inverse_depth
    return ((disparity - 1.0) * strength).astype(np.float32)


def test_flat_image_stays_flat_under_any_depth():
    coc = radial_coc()
    out = render(np.full(coc.shape + (3,), 0.5, np.float32), coc)
    assert np.abs(out - 0.5).max() < 1e-4


def test_receding_surface_hides_what_is_behind_it_at_every_slab_boundary():
    """A tilted card in front of a bright wall: its blur radius grows across it, so it is cut
    into many slabs. Laid over each other, two slabs of one surface let the wall through
    along their boundary (a light line on the card); the card must stay its own colour."""
    h, w = 200, 400
    img = np.zeros((h, w, 3), np.float32)
    img[...] = (1.0, 0.9, 0.6)  # the wall
    coc = np.full((h, w), -4.0, np.float32)
    card = (slice(20, 180), slice(20, 380))
    img[card] = (0.05, 0.1, 0.2)
    coc[card] = np.linspace(8.0, 30.0, 360, dtype=np.float32)[None, :]
    out = render(img, coc)
    # Far enough inside the card that its own blurred rim is not reached.
    interior = out[60:140, 60:340]
    assert np.abs(interior - img[60:140, 60:340]).max() < 2e-3


def test_result_does_not_depend_on_the_tiling():
    """Hidden background, compositing and resolution changes are decided for the image, not
    per tile: a seam at a tile border shows as a line in the photo."""
    rng = np.random.default_rng(3)
    h, w = 180, 260
    img = rng.random((h, w, 3)).astype(np.float32)
    yy, xx = np.mgrid[:h, :w]
    for background, disc in ((-14.0, 9.0), (-3.0, 15.0)):
        coc = np.full((h, w), background, np.float32)
        coc[(yy - 90) ** 2 + (xx - 130) ** 2 < 50**2] = disc  # a blurred disc in front
        coc[60:120, 20:60] = 0.0  # a sharp block
        coc[10:20, :] = 6.0  # a blurred bar
        job = RenderJob(img, coc, Aperture())
        whole = ClassicalRenderer(tile_px=1024, threads=1).render(job, Progress())
        tiled = ClassicalRenderer(tile_px=64, threads=1).render(job, Progress())
        assert np.abs(whole - tiled).max() < 1e-4
        # Threads share the whole-image work (planes, slab bands, hidden background) and
        # the tiles: the same pixels, bit for bit.
        threaded = ClassicalRenderer(tile_px=64, threads=3).render(job, Progress())
        assert np.array_equal(threaded, tiled)

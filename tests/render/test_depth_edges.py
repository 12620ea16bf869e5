"""Depth edges settled by the photo: thin structures of the map the photo does not show."""

import numpy as np

from bokehkit.progress import Progress
from bokehkit.render.base import RenderJob
from bokehkit.render.classical import ClassicalRenderer
from bokehkit.render.depth_edges import drop_unseen_thin, snap_depth_edges

FAR_COC, ROD_COC = -12.0, 0.0


def _star_card(seed: int = 3) -> np.ndarray:
    """A dark card printed with stars of every brightness (linear RGB, 80×80)."""
    rng = np.random.default_rng(seed)
    img = np.full((80, 80, 3), 0.02, np.float32)
    ys, xs = rng.integers(0, 80, (2, 300))
    xs[xs == 40] = 20  # none under the rod (a star there shows: the rod keeps that pixel)
    img[ys, xs] = rng.uniform(0.05, 0.9, (300, 1)) * rng.uniform(0.7, 1.0, (300, 3))
    return img


def _rod_map(width: int = 1) -> np.ndarray:
    """The card far behind the focal plane, a vertical rod `width` px wide in focus."""
    coc = np.full((80, 80), FAR_COC, np.float32)
    coc[:, 40 : 40 + width] = ROD_COC
    return coc


def test_a_rod_the_photo_does_not_show_goes_to_the_surface_behind():
    """A rod thinner than a pixel: its pixels in the photo are the card's stars, tinted a
    little. The map has it as a 1-px line of pixel centres."""
    img = _star_card()
    img[:, 40] = 0.8 * img[:, 40] + 0.2 * np.float32(0.03)  # the rod's faint tint
    out = drop_unseen_thin(img, _rod_map())
    assert np.all(out[:, 40] == FAR_COC)
    assert np.array_equal(np.delete(out, 40, axis=1), np.delete(_rod_map(), 40, axis=1))


def test_a_rod_the_photo_shows_keeps_its_depth():
    img = _star_card()
    img[:, 40] = (0.6, 0.55, 0.5)  # a pale rod, plainly seen across the card
    out = drop_unseen_thin(img, _rod_map())
    assert np.all(out[:, 40] == ROD_COC)


def test_a_rod_crossing_a_stripe_of_its_own_colour_stays_whole():
    """Where the rod crosses something of its own colour the photo cannot show it, but it
    shows the rod on either side: those few pixels stay with the rod."""
    img = _star_card()
    img[:, 40] = (0.6, 0.55, 0.5)
    img[37:39, 30:51] = (0.6, 0.55, 0.5)  # a pale stripe the rod crosses
    out = drop_unseen_thin(img, _rod_map())
    assert np.all(out[:, 40] == ROD_COC)


def test_a_bar_wider_than_thin_is_left_to_the_colour_snapping():
    img = _star_card()
    coc = _rod_map(width=4)
    assert np.array_equal(drop_unseen_thin(img, coc), coc)


def test_an_unseen_rod_draws_no_sharp_line_across_the_blur():
    """Rendered at the rod's depth, its pixels drew the stars under them as a sharp line
    across the blurred card. Snapped, the render is the card's blur alone, as with no rod."""
    img = _star_card()
    rod = _rod_map()
    no_rod = np.full_like(rod, FAR_COC)
    renderer = ClassicalRenderer(threads=1)

    def render(coc):
        return renderer.render(RenderJob(img, coc), Progress())

    blur_only = render(no_rod)
    as_mapped = render(rod)
    snapped = render(snap_depth_edges(img, rod))
    column = (slice(10, 70), 40)
    assert np.abs(as_mapped[column] - blur_only[column]).max() > 0.01  # the line
    assert np.abs(snapped[column] - blur_only[column]).max() < 1e-4

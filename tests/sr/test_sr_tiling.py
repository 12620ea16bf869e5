"""Tiled super-resolution: seamless windows, progress and cancelling, the linear-light wrap,
the detail mix with Lanczos."""

import itertools
import threading

import numpy as np
import pytest

from bokehkit.errors import BokehkitError
from bokehkit.io.colour import linear_to_srgb, srgb_to_linear
from bokehkit.progress import Cancelled, Progress
from bokehkit.sr import realesrgan
from bokehkit.sr.lanczos import resize_plane
from bokehkit.sr.tiling import axis_weights, run_tiled, window_starts


@pytest.mark.parametrize("length", [1, 7, 64, 65, 100, 129, 300, 1000, 1234])
@pytest.mark.parametrize("tile,pad,blend", [(64, 10, 12), (256, 10, 12), (40, 4, 6)])
def test_windows_cover_and_weights_sum_to_one(length, tile, pad, blend):
    starts = window_starts(length, tile, 2 * pad + blend)
    assert starts[0] == 0 and min(tile, length) + starts[-1] == length
    assert all(b - a <= tile - 2 * pad - blend for a, b in itertools.pairwise(starts))
    for scale in (2, 4):
        weights = axis_weights(starts, tile, length, pad, blend, scale)
        total = np.zeros(length * scale)
        for s, w in zip(starts, weights, strict=True):
            assert w.min() >= 0
            total[s * scale : s * scale + w.size] += w
        assert np.allclose(total, 1.0, atol=1e-6)


def test_window_must_exceed_its_overlaps():
    with pytest.raises(ValueError):
        window_starts(100, 40, 40)


def nearest4(window):
    return np.repeat(np.repeat(window, 4, 0), 4, 1)


def test_tiled_network_equals_untiled_when_its_reach_is_within_pad():
    """A small random RRDBNet (1 block: it sees 19 px around each pixel) run in 96 px windows
    with 20 px of context equals one run over the whole image."""
    torch = pytest.importorskip("torch")
    from bokehkit.sr.rrdbnet import RRDBNet

    torch.manual_seed(0)
    net = RRDBNet(num_feat=8, num_block=1, num_grow_ch=4).eval()
    assert net.receptive_radius <= 20

    def fn(window):
        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(window.transpose(2, 0, 1)))[None]
            return net(x)[0].numpy().transpose(1, 2, 0)

    img = np.random.default_rng(0).random((130, 210, 3), dtype=np.float32)
    whole = fn(img)
    calls = []
    tiled = run_tiled(img, lambda w: calls.append(w.shape) or fn(w), 4, tile=96, pad=20, blend=8)
    assert len(calls) == 2 * 4  # a real grid of windows, not one
    assert tiled.shape == whole.shape == (520, 840, 3)
    assert np.abs(tiled - whole).max() < 1e-4


def test_progress_per_tile_and_cancel_between_tiles():
    img = np.zeros((100, 100, 3), np.float32)
    seen = []
    progress = Progress(lambda f, t: seen.append((f, t)))
    run_tiled(img, nearest4, 4, tile=40, pad=4, blend=4, progress=progress)
    assert seen[0][0] == 0.0 and seen[-1][0] == 1.0
    assert seen[-1][1] == "tile: 16 of 16 tiles"
    assert all(a[0] <= b[0] for a, b in itertools.pairwise(seen))

    cancel = threading.Event()
    calls = []

    def fn(w):
        calls.append(1)
        cancel.set()  # the user presses Cancel during the first tile
        return nearest4(w)

    with pytest.raises(Cancelled):
        run_tiled(img, fn, 4, tile=40, pad=4, blend=4, progress=Progress(cancel_event=cancel))
    assert len(calls) == 1


def fake_net(x):
    """Stands in for Real-ESRGAN: nearest ×4 of the sRGB input (N×3×H×W)."""
    return np.repeat(np.repeat(x, 4, 2), 4, 3)


def test_upscaler_works_in_srgb_and_keeps_light_outside_0_1():
    rng = np.random.default_rng(1)
    linear = rng.random((30, 44, 3), dtype=np.float32) * 0.9
    linear[10, 20] = 25.0  # a light far brighter than white
    x4 = realesrgan.upscale_realesrgan(linear, 4, net=fake_net, tile=24, pad=2, blend=4, detail=1)
    assert x4.shape == (120, 176, 3) and x4.dtype == np.float32
    # The network saw sRGB: nearest ×4 of the encoded image decodes to nearest ×4 of linear.
    body = x4[:, :, :].copy()
    body[36:48, 76:88] = 0
    ref = nearest4(np.clip(linear, 0, 1))
    ref[36:48, 76:88] = 0
    assert np.abs(body - ref).max() < 1e-5
    # The light keeps its energy (the part above 1 goes through the classical upscaler).
    assert abs(x4.sum() / 16 - linear.sum()) / linear.sum() < 1e-3
    x2 = realesrgan.upscale_realesrgan(linear, 2, net=fake_net, tile=24, pad=2, blend=4, detail=1)
    assert x2.shape == (60, 88, 3)
    flat = np.full((20, 20, 3), 0.3, np.float32)
    assert np.allclose(realesrgan.upscale_realesrgan(flat, 2, net=fake_net), 0.3, atol=1e-5)


def test_grey_and_extra_channels():
    grey = np.random.default_rng(2).random((12, 10), dtype=np.float32)
    assert realesrgan.upscale_realesrgan(grey, 4, net=fake_net).shape == (48, 40)
    rgba = np.random.default_rng(3).random((12, 10, 4), dtype=np.float32)
    assert realesrgan.upscale_realesrgan(rgba, 2, net=fake_net).shape == (24, 20, 4)
    assert realesrgan.upscale_realesrgan(rgba, 1, net=fake_net) is rgba


def test_blurred_windows_skip_the_network():
    """Where the renderer will blur everything anyway, the classical upscale is used."""
    img = np.random.default_rng(4).random((64, 150, 3), dtype=np.float32)
    sharp = np.zeros((64, 150), np.float32)
    sharp[20:40, 10:30] = 1.0  # one sharp patch on the left
    calls = []

    def counting(x):
        calls.append(x.shape)
        return fake_net(x)

    out = realesrgan.upscale_realesrgan(
        img, 4, sharp, net=counting, tile=64, pad=4, blend=8, detail=1
    )
    assert out.shape == (256, 600, 3)
    assert 0 < len(calls) < 4  # only windows holding the sharp patch
    assert np.abs(out[80:160, 40:120] - nearest4(img)[80:160, 40:120]).max() < 1e-5
    assert np.isfinite(out).all()


def test_srgb_helper_is_the_identity_for_a_nearest_network():
    img = np.random.default_rng(5).random((30, 30, 3), dtype=np.float32)
    out = realesrgan.sr_srgb(img, fake_net, tile=16, pad=2, blend=4)
    assert np.abs(out - nearest4(img)).max() < 1e-6


# ---------------------------------------------------------------------------- detail
def no_net(x):
    raise AssertionError("detail 0 must not run the network")


def lanczos_upscale(linear, factor):
    """Lanczos-3 as the classical upscaler filters (`resize_plane`), of the sRGB encoding
    clipped to [0, 1], decoded back to linear light."""
    srgb = linear_to_srgb(np.clip(linear, 0.0, 1.0))
    h, w = srgb.shape[:2]
    up = np.stack([resize_plane(srgb[..., c], w * factor, h * factor) for c in range(3)], 2)
    return srgb_to_linear(np.clip(up, 0.0, 1.0))


def model_alone(linear, factor):
    """What the nearest-×4 stand-in network gives alone, in linear light."""
    x4 = nearest4(np.clip(linear, 0.0, 1.0))
    return x4 if factor == 4 else realesrgan.downscale_half(x4)


@pytest.fixture
def photo():
    return np.random.default_rng(6).random((20, 28, 3), dtype=np.float32)


@pytest.mark.parametrize("factor", [2, 4])
def test_detail_0_is_the_lanczos_upscale_without_the_network(photo, factor):
    out = realesrgan.upscale_realesrgan(photo, factor, detail=0, net=no_net)
    assert out.shape == (20 * factor, 28 * factor, 3)
    assert np.array_equal(out, lanczos_upscale(photo, factor))


@pytest.mark.parametrize("factor", [2, 4])
def test_detail_1_is_the_network_alone(photo, factor):
    out = realesrgan.upscale_realesrgan(photo, factor, detail=1, net=fake_net)
    np.testing.assert_allclose(out, model_alone(photo, factor), atol=2e-6)
    assert np.abs(out - lanczos_upscale(photo, factor)).max() > 0.1  # the two really differ


@pytest.mark.parametrize("factor", [2, 4])
def test_detail_half_is_the_mean_of_the_two_in_srgb(photo, factor):
    lanczos = linear_to_srgb(lanczos_upscale(photo, factor))
    model = linear_to_srgb(model_alone(photo, factor))
    for detail in (0.5, 0.25):
        out = realesrgan.upscale_realesrgan(photo, factor, detail=detail, net=fake_net)
        want = lanczos + detail * (model - lanczos)
        np.testing.assert_allclose(linear_to_srgb(out), want, atol=2e-6)
    # In sRGB, not in linear light (whose mean is lighter wherever the two differ).
    half = realesrgan.upscale_realesrgan(photo, factor, detail=0.5, net=fake_net)
    linear_mean = (lanczos_upscale(photo, factor) + model_alone(photo, factor)) / 2
    assert (linear_mean - half).mean() > 1e-3


def test_detail_keeps_light_outside_0_1():
    """The light above white goes round the mix (bilinear) and keeps its energy."""
    white = np.full((16, 16, 3), 0.2, np.float32)
    white[8, 8] = 1.0
    brighter = white.copy()
    brighter[8, 8] = 25.0
    for detail in (0, 0.5):
        up = [
            realesrgan.upscale_realesrgan(x, 4, detail=detail, net=fake_net).sum() / 16
            for x in (white, brighter)
        ]
        assert abs(up[1] - up[0] - 3 * 24.0) < 1e-3 * 3 * 24.0


def test_no_detail_means_the_default(photo, monkeypatch):
    monkeypatch.setattr(realesrgan, "DETAIL", 0.75)
    out = realesrgan.upscale_realesrgan(photo, 4, net=fake_net)
    assert np.array_equal(out, realesrgan.upscale_realesrgan(photo, 4, detail=0.75, net=fake_net))


def test_the_default_is_the_one_the_benchmark_chose():
    from pathlib import Path

    doc = Path(__file__).resolve().parents[2] / "docs" / "benchmarks-sr.md"
    assert f"**Chosen: detail {realesrgan.DETAIL:g}**" in doc.read_text("utf-8")


@pytest.mark.parametrize("detail", [-0.1, 1.5, float("nan"), "0.5", True, [0.5]])
def test_detail_out_of_range_is_refused(photo, detail):
    with pytest.raises(BokehkitError, match=r"detail must be a number from 0 .* to 1 .*, not"):
        realesrgan.upscale_realesrgan(photo, 4, detail=detail, net=no_net)

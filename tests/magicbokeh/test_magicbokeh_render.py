"""MagicBokeh reference mode (the official inference.py pipeline) on the tiny bundle."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from magicbokeh_fixtures import make_bundle  # noqa: E402

from bokehkit.errors import BokehkitError  # noqa: E402
from bokehkit.magicbokeh import reference as ref  # noqa: E402
from bokehkit.magicbokeh.network import load_network  # noqa: E402
from bokehkit.progress import Cancelled, Progress  # noqa: E402

TILE, STRIDE = 64, 32  # the tiny model's stand-in for 512/256


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("mbref"))


@pytest.fixture(scope="module")
def net(folder):
    return load_network(folder, channels_last=False)  # as reference mode loads it


def _scene(h=96, w=96, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    image = np.stack(
        [0.2 + 0.6 * xx / w, 0.3 + 0.4 * yy / h, 0.5 + 0.2 * np.sin(xx / 5.0)], axis=-1
    ) + rng.normal(0, 0.03, (h, w, 3))
    image = np.clip(image, 0, 1).astype(np.float32)
    depth = (xx / (w - 1)).astype(np.float32)  # near on the right
    mask = np.zeros((h, w), np.uint8)
    mask[:, : w // 4] = 255  # focus on the far left
    return image, depth, mask


class _Identity:
    """A stand-in network: returns its input tile (to check tiling and blending)."""

    def __init__(self):
        self.alpha_bar_t = torch.tensor(0.0046601)
        self.calls = []

    def __call__(self, image_m11, defocus, in_focus, generator=None):
        self.calls.append((image_m11.shape, float(in_focus.mean())))
        return image_m11


def test_official_tile_grid():
    counts = {(1024, 1562): 18, (3024, 4032): 165, (1024, 768): 6, (512, 512): 1}
    for (h, w), n in counts.items():
        assert len(ref.tile_positions(h, w)) == n
    pos = ref.tile_positions(600, 520)
    assert pos == [(0, 0), (88, 0), (0, 8), (88, 8)]
    with pytest.raises(BokehkitError, match="smaller than one"):
        ref.tile_positions(500, 600)


def test_blend_weights():
    # tents at stride tile/2 sum to 1 (up to float rounding) where no edge tile is added
    torch.testing.assert_close(ref.weight_sum(1024, 768), torch.ones(1024, 768))
    torch.testing.assert_close(ref.weight_sum(96, 128, TILE, STRIDE), torch.ones(96, 128))
    total = ref.weight_sum(1024, 1562)  # edge column: normalised by the sum
    assert total.min() > 0.25
    w = ref.tile_weight((256, 0), 1024, 1024)
    assert (
        w[0, 0] == 0
        and w[255, 0] == 1
        and w[256:, 0].tolist() == torch.linspace(1, 0, 256).tolist()
    )
    assert torch.equal(w[:, :256], torch.ones(512, 256) * w[:, :1])  # no ramp on the left edge


def test_identity_network_reconstructs_the_input():
    image, depth, mask = _scene(100, 120)  # not multiples of the stride: edge tiles
    stub = _Identity()
    out = ref.render_reference(
        image, depth, mask, 32, stub, tile=TILE, stride=STRIDE, official_quantisation=False
    )
    assert out.shape == image.shape and out.dtype == np.float32
    assert len(stub.calls) == len(ref.tile_positions(100, 120, TILE, STRIDE))
    np.testing.assert_allclose(out, image, atol=2e-5)


def test_focus_defocus_and_quantisation():
    d = np.array([[0.0, 0.5, 0.999, 1.0]], np.float32)
    assert ref.quantise_depth(d).tolist() == [[0, 127, 254, 255]]
    depth = np.array([[10, 20, 30, 40]], np.uint8)
    assert ref.focal_value(depth, np.array([[1, 1, 1, 1]])) == 20 / 255  # lower median
    assert ref.focal_value(depth, np.array([[0, 0, 3, 1]])) == 30 / 255
    assert ref.focal_value(depth, np.zeros((1, 4))) == 0.0
    disp = ref.defocus_map(depth, 20 / 255, 16)
    assert disp.shape == (1, 1, 1, 4)
    want = np.abs(depth[0].astype(int) - 20) / 255 * 0.5
    np.testing.assert_allclose(disp.flatten().numpy(), want, rtol=0, atol=1e-7)


def test_reference_render(net):
    image, depth, mask = _scene()
    events = []
    progress = Progress(lambda f, text: events.append((f, text)))
    out = ref.render_reference(
        image, depth, mask, 32, net, progress=progress, tile=TILE, stride=STRIDE
    )
    n = len(ref.tile_positions(96, 96, TILE, STRIDE))
    assert n == 4
    assert out.shape == (96, 96, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    assert np.array_equal(np.round(out * 255) / 255, out.astype(np.float64).astype(np.float32))
    tiles = [t for _, t in events if "tile" in t]
    assert tiles == [f"MagicBokeh tile {k}/{n}" for k in range(1, n + 1)]
    fractions = [f for f, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0
    assert np.abs(out - image).mean() > 1e-3  # the network did something
    again = ref.render_reference(image, depth, mask, 32, net, tile=TILE, stride=STRIDE)
    assert np.array_equal(out, again)  # posterior mean: deterministic
    seeded = [
        ref.render_reference(image, depth, mask, 32, net, seed=s, tile=TILE, stride=STRIDE)
        for s in (3, 3, 4)
    ]
    assert np.array_equal(seeded[0], seeded[1]) and not np.array_equal(seeded[0], seeded[2])


def test_adain_matches_input_statistics(net):
    image, depth, mask = _scene(seed=2)
    image = 0.5 + (image - 0.5) * 0.2  # low contrast: AdaIN's result is not clamped
    out = ref.render_reference(
        image, depth, mask, 20, net, tile=TILE, stride=STRIDE, official_quantisation=False
    )
    assert np.abs(out - 0.5).max() < 0.5  # no clamping, so the match is exact
    for c in range(3):
        assert out[..., c].mean() == pytest.approx(image[..., c].mean(), abs=1e-5)
        # the official std carries its +1e-5 on the (unbiased) variance
        want = np.sqrt(image[..., c].astype(np.float64).var(ddof=1) + 1e-5)
        assert out[..., c].std(ddof=1) == pytest.approx(want, abs=2e-5)


def test_cancel_between_tiles():
    image, depth, mask = _scene()
    progress = Progress()

    class CancelDuringFirstTile(_Identity):
        def __call__(self, *args, **kw):
            progress.cancel()  # as a user would, while the first tile runs
            return super().__call__(*args, **kw)

    stub = CancelDuringFirstTile()
    with pytest.raises(Cancelled):
        ref.render_reference(image, depth, mask, 32, stub, progress=progress, tile=TILE,
                             stride=STRIDE)  # fmt: skip
    assert len(stub.calls) == 1


def test_in_focus_labels_follow_the_threshold():
    image, depth, mask = _scene(64, 64)
    stub = _Identity()
    ref.render_reference(image, depth, mask, 32, stub, tile=TILE, stride=STRIDE)
    # focus at the lower median of the left quarter; in focus where |d − f| ≤ 0.1
    d8 = ref.quantise_depth(depth)
    f = ref.focal_value(d8, mask)
    want = float((np.abs(d8 / np.float32(255) - np.float32(f)) <= 0.1).mean())
    assert stub.calls[0][1] == pytest.approx(want, abs=1 / 64)
    ref.render_reference(image, depth, mask, 0, stub, tile=TILE, stride=STRIDE)
    assert stub.calls[-1][1] == 1.0  # K = 0: everything in focus


def test_small_image_is_padded(net):
    image, depth, mask = _scene(40, 56)
    stub = _Identity()
    out = ref.render_reference(
        image, depth, mask, 32, stub, tile=TILE, stride=STRIDE, official_quantisation=False
    )
    assert out.shape == (40, 56, 3) and len(stub.calls) == 1
    np.testing.assert_allclose(out, image, atol=2e-5)
    with pytest.raises(BokehkitError, match="same size"):
        ref.render_reference(image, depth[:10], mask, 32, stub, tile=TILE, stride=STRIDE)


def test_cli_reference_end_to_end(folder, net, tmp_path, monkeypatch, capsys):
    from PIL import Image

    from bokehkit.commands import main

    monkeypatch.setenv("BOKEHKIT_MODELS", str(folder.parent))
    image, depth, mask = _scene(512, 520, seed=4)  # 520 wide: an extra edge column of tiles
    u8 = np.round(image * 255).astype(np.uint8)
    Image.fromarray(u8).save(tmp_path / "in.png")
    np.save(tmp_path / "d.npy", depth)
    Image.fromarray(mask).save(tmp_path / "m.png")
    args = ["render", str(tmp_path / "in.png"), "--engine", "magicbokeh", "--model",
            folder.name, "--depth", str(tmp_path / "d.npy"), "--focus-mask",
            str(tmp_path / "m.png"), "--strength", "32", "--reference", "--device", "cpu",
            "--save-float", str(tmp_path / "out.npy"), "-o", str(tmp_path / "out.png"),
            "-q"]  # fmt: skip
    assert main(args) == 0
    result = np.load(tmp_path / "out.npy")
    assert result.dtype == np.float32 and result.shape == (512, 520, 3)
    png = np.asarray(Image.open(tmp_path / "out.png"))
    assert np.array_equal(png, np.round(result * 255).astype(np.uint8))
    want = ref.render_reference(u8 / np.float32(255), depth, mask, 32, net)
    assert np.array_equal(result, want)
    # --reference is magicbokeh's own option
    assert main(["render", str(tmp_path / "in.png"), "--reference", "-q"]) == 2
    assert "--engine magicbokeh" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()

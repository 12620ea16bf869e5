"""The pipeline on files: encodings kept, untouched pixels exact, SR, depth and focus."""

import numpy as np
import pytest
import tifffile
from PIL import Image

from bokehkit.errors import BokehkitError
from bokehkit.io.image import load_image
from bokehkit.pipeline import RenderSettings, render_file
from bokehkit.scene.depth import fallback_depth, fit_to_image, load_depth
from bokehkit.scene.focus import focus_from_mask, focus_from_point, weighted_median
from bokehkit.scene.optics import Lens, strength_k


def metric_scene(tmp_path, dtype=np.uint16, alpha=True):
    rng = np.random.default_rng(0)
    h, w = 96, 128
    maxv = np.iinfo(dtype).max
    rgba = (rng.random((h, w, 4)) * maxv).astype(dtype)
    rgba[..., 3] = np.linspace(0, maxv, w).astype(dtype)[None]
    if not alpha:
        rgba = rgba[..., :3]
    tifffile.imwrite(
        tmp_path / "in.tif", rgba, photometric="rgb", extrasamples=[2] if alpha else None
    )
    depth = np.full((h, w), 8.0, np.float32)
    depth[20:76, 30:98] = 2.0
    np.save(tmp_path / "depth.npy", depth)
    return rgba


def test_16bit_rgba_keeps_alpha_bits_and_in_focus_pixels(tmp_path):
    src = metric_scene(tmp_path)
    settings = RenderSettings(
        depth_path=str(tmp_path / "depth.npy"),
        depth_units="m",
        depth_kind="depth",
        focus_distance_m=2.0,
        f_number=1.4,
    )
    render_file(tmp_path / "in.tif", tmp_path / "out.tif", settings)
    out = tifffile.imread(tmp_path / "out.tif")
    assert out.dtype == np.uint16 and out.shape == src.shape
    assert np.array_equal(out[..., 3], src[..., 3])  # alpha passes through untouched
    # The in-focus card, away from the blurred wall's reach, is bit-identical.
    assert np.array_equal(out[40:56, 50:78, :3], src[40:56, 50:78, :3])
    assert not np.array_equal(out[:10, :, :3], src[:10, :, :3])


def test_float_tiff_is_rendered_in_linear_light_without_clipping(tmp_path):
    img = np.full((160, 160, 3), 0.1, np.float32)
    img[80, 80] = 200.0  # a light far brighter than white
    tifffile.imwrite(tmp_path / "in.tif", img, photometric="rgb")
    np.save(tmp_path / "d.npy", np.full((160, 160), 10.0, np.float32))
    settings = RenderSettings(
        depth_path=str(tmp_path / "d.npy"),
        depth_units="m",
        depth_kind="depth",
        focus_distance_m=1.0,
        f_number=2.0,
        focal_length_mm=200,
        grain=0,
    )  # r limited to 16 px
    render_file(tmp_path / "in.tif", tmp_path / "out.tif", settings)
    out = tifffile.imread(tmp_path / "out.tif")
    assert out.dtype == np.float32
    assert out.sum() == pytest.approx(img.sum(), rel=2e-3)  # light is conserved
    assert out.max() < 0.5  # and spread into a disc of about 800 px


def test_grey_8bit_png(tmp_path):
    g = (np.random.default_rng(1).random((50, 70)) * 255).astype(np.uint8)
    Image.fromarray(g).save(tmp_path / "g.png")
    render_file(tmp_path / "g.png", tmp_path / "o.png", RenderSettings(f_number=1.4))
    out = Image.open(tmp_path / "o.png")
    assert out.mode == "L" and out.size == (70, 50)


@pytest.mark.parametrize("factor", [2, 4])
def test_super_resolution_enlarges_and_keeps_focus_crisp(tmp_path, factor):
    h, w = 48, 64
    img = np.zeros((h, w, 3), np.uint8)
    img[:, w // 2 :] = 255  # a crisp vertical edge, in focus
    Image.fromarray(img).save(tmp_path / "in.png")
    mask = np.full((h, w), 255, np.uint8)
    Image.fromarray(mask).save(tmp_path / "m.png")
    settings = RenderSettings(focus_mask_path=str(tmp_path / "m.png"), sr_factor=factor)
    render_file(tmp_path / "in.png", tmp_path / "out.png", settings)
    out = np.asarray(Image.open(tmp_path / "out.png").convert("L")).astype(int)
    assert out.shape == (h * factor, w * factor)
    row = out[h * factor // 2]
    # No ringing past the edge's own values, and the edge stays within ~2 source pixels.
    assert row.min() >= 0 and row.max() <= 255
    ramp = np.count_nonzero((row > 10) & (row < 245))
    assert ramp <= 2 * factor


def test_depth_conventions(tmp_path):
    near_bright = np.tile(np.linspace(0, 65535, 100).astype(np.uint16), (20, 1))
    Image.fromarray(near_bright).save(tmp_path / "disp.png")
    d = load_depth(tmp_path / "disp.png", "relative", "disparity")
    assert d.inverse_depth[0, -1] > d.inverse_depth[0, 0]  # right is near
    d = load_depth(tmp_path / "disp.png", "relative", "disparity", near="dark")
    assert d.inverse_depth[0, -1] < d.inverse_depth[0, 0]
    d = load_depth(tmp_path / "disp.png", "relative", "depth")  # bright = far for depth
    assert d.inverse_depth[0, -1] < d.inverse_depth[0, 0]
    assert fit_to_image(d, 200, 40).shape == (40, 200)
    with pytest.raises(BokehkitError, match="aspect ratios differ"):
        fit_to_image(d, 100, 100)


def test_metric_depth_must_be_positive(tmp_path):
    np.save(tmp_path / "d.npy", np.zeros((4, 4), np.float32))
    with pytest.raises(BokehkitError, match="zero or negative"):
        load_depth(tmp_path / "d.npy", "m", "depth")


def test_fallback_depth_puts_the_subject_in_front_of_one_far_background():
    """No depth map: the subject is on the focal plane and the background right beside it
    is as far as the rest (graded by distance, it stayed sharp around the subject)."""
    mask = np.zeros((100, 200), np.float32)
    mask[40:60, 90:110] = 1.0
    d = fallback_depth(200, 100, focus_mask=mask)
    assert d.inverse_depth[50, 100] == pytest.approx(1.0)
    assert d.inverse_depth[50, 88] == d.inverse_depth[50, 0] == 0.0


def test_fallback_depth_without_a_subject_grades_away_from_the_point():
    d = fallback_depth(200, 100, focus_point=(100, 50))
    assert d.inverse_depth[50, 100] == pytest.approx(1.0)
    assert d.inverse_depth[50, 0] < d.inverse_depth[50, 80] < 1.0


def test_focus_from_mask_is_the_weighted_median():
    inv = np.array([[0.1, 0.2, 0.9, 0.95]], np.float32)
    from bokehkit.scene.depth import DepthMap

    depth = DepthMap(inv, False, "test")
    mask = np.array([[0.0, 0.2, 1.0, 1.0]], np.float32)
    assert focus_from_mask(depth, mask).inverse_depth == pytest.approx(0.9)
    assert weighted_median(np.array([1.0, 2.0, 3.0]), np.array([1.0, 1.0, 5.0])) == 3.0
    assert focus_from_point(depth, 3, 0).inverse_depth > 0.2


def test_thin_lens_matches_blender():
    # a Blender Cycles thin-lens case: 50 mm, f/2, focus 0.5 m, point at 2 m, 640 px, 36 mm:
    # 33.3 px diameter
    lens = Lens(2.0, 50.0, 36.0)
    assert 2 * lens.coc_radius_px(2.0, 0.5, 640) == pytest.approx(33.3, abs=0.1)
    # K for relative disparity reproduces the metric blur when disparity ∝ 1/z.
    k = strength_k(lens, 640, focus_disparity=0.25, focus_distance_m=2.0)
    # A point at 1 m has disparity 0.5 on that scale: |0.5 − 0.25|·K == metric CoC.
    assert 0.25 * k == pytest.approx(lens.coc_radius_px(1.0, 2.0, 640))


def test_exif_focal_length_is_used(tmp_path):
    img = Image.fromarray(np.full((40, 60, 3), 128, np.uint8))
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0xA405] = 85
    img.save(tmp_path / "in.jpg", exif=exif)
    report = render_file(tmp_path / "in.jpg", tmp_path / "out.jpg", RenderSettings())
    assert report.focal_length.startswith("85 mm (35 mm equivalent from EXIF)")
    assert load_image(tmp_path / "out.jpg").encoding.exif  # EXIF kept

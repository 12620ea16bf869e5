"""The reader of depth that phones embed in photos, on files built here to the published
formats: GDepth with extended XMP (Google Camera), Dynamic Depth 1.0 (a container of items
after the primary JPEG), HEIF depth through pillow-heif, and Apple's portrait JPEG (the
depth as a Multi-Picture Format image with Apple's XMP, beside the portrait matte and the
HDR gain map)."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from phone_depth_files import (
    APPLE_FAR,
    APPLE_GAIN_MAP_XMP,
    APPLE_MATTE_XMP,
    APPLE_NEAR,
    FAR,
    NEAR,
    app1,
    apple_depth_xmp,
    apple_portrait_jpeg,
    disparity_codes,
    dynamic_depth_jpeg,
    encode_google,
    gdepth_jpeg,
    grey_jpeg,
    image_bytes,
    matte,
    packet,
    photo_jpeg,
    scene_depth,
    with_segments,
    write,
)
from PIL import Image

from bokehkit.errors import BokehkitError
from bokehkit.scene.depth import DepthMap
from bokehkit.scene.phone_depth import XMP_HEADER, read_embedded_depth

# ----------------------------------------------------------------------- file builders


# ------------------------------------------------------------------------------- tests


def test_gdepth_extended_xmp_range_inverse_is_metric(tmp_path):
    z = scene_depth(40, 30)
    p = write(
        tmp_path, "pixel.jpg", gdepth_jpeg(80, 60, image_bytes(encode_google(z, "RangeInverse")))
    )
    depth, notes = read_embedded_depth(p, 40, 30)
    assert notes == []
    assert depth is not None and depth.metric
    np.testing.assert_allclose(depth.inverse_depth, 1.0 / z, rtol=2e-3)
    assert "GDepth" in depth.source and "RangeInverse" in depth.source
    # At the photo's size (twice the map's) it is resized, still metric and in range.
    full, _ = read_embedded_depth(p, 80, 60)
    assert full.shape == (60, 80) and full.metric
    assert abs(full.inverse_depth[30, 25] - 1 / 0.8) < 0.01  # inside the near subject
    assert 1 / 6.05 < full.inverse_depth.min() and full.inverse_depth.max() < 1 / 0.79


def test_gdepth_range_linear_jpeg_without_units_is_relative(tmp_path):
    z = scene_depth(40, 30)
    depth_img = image_bytes(encode_google(z, "RangeLinear", bits=8), "JPEG")
    data = gdepth_jpeg(40, 30, depth_img, "RangeLinear", units=None, mime="image/jpeg")
    depth, notes = read_embedded_depth(write(tmp_path, "lensblur.jpg", data), 40, 30)
    assert depth is not None and not depth.metric and notes == []
    assert "relative" in depth.source
    # Only Near/Far's ratio is used: disparity near/z, zero at infinity (JPEG: loose,
    # and its ringing at the subject's edges is left out).
    err = np.abs(depth.inverse_depth - NEAR / z)
    assert np.median(err) < 0.01 and np.percentile(err, 95) < 0.03


def test_dynamic_depth_container_item_is_found_and_metric(tmp_path):
    z = scene_depth(32, 24)
    depth_img = image_bytes(encode_google(z, "RangeLinear"))
    p = write(tmp_path, "dd.jpg", dynamic_depth_jpeg(64, 48, depth_img))
    depth, notes = read_embedded_depth(p, 32, 24)
    assert notes == [] and depth is not None and depth.metric
    np.testing.assert_allclose(1.0 / depth.inverse_depth, z, rtol=1e-3)
    assert "Dynamic Depth" in depth.source


def test_dynamic_depth_item_past_the_end_is_ignored_with_a_note(tmp_path):
    z = scene_depth(32, 24)
    data = dynamic_depth_jpeg(32, 24, image_bytes(encode_google(z, "RangeLinear")))
    depth, notes = read_embedded_depth(write(tmp_path, "cut.jpg", data[:-50]), 32, 24)
    assert depth is None and len(notes) == 1 and "not where the container says" in notes[0]


def test_plain_jpeg_has_no_depth(tmp_path):
    p = write(tmp_path, "plain.jpg", photo_jpeg(32, 24))
    assert read_embedded_depth(p, 32, 24) == (None, [])
    with pytest.raises(BokehkitError, match="holds no depth map"):
        read_embedded_depth(p, 32, 24, strict=True)


def test_corrupt_xmp_is_ignored_with_a_note_or_an_error_when_asked_for(tmp_path):
    bad = XMP_HEADER + packet('<rdf:Description GDepth:Format="RangeInverse"')  # unclosed
    p = write(tmp_path, "bad.jpg", with_segments(photo_jpeg(32, 24), [app1(bad)]))
    depth, notes = read_embedded_depth(p, 32, 24)
    assert depth is None and len(notes) == 1 and "cannot be parsed" in notes[0]
    with pytest.raises(BokehkitError, match="bad.jpg was ignored: its XMP cannot be parsed"):
        read_embedded_depth(p, 32, 24, strict=True)


def test_incomplete_extended_xmp_is_ignored_with_a_note(tmp_path):
    z = scene_depth(40, 30)
    data = gdepth_jpeg(40, 30, image_bytes(encode_google(z, "RangeInverse")), drop_chunk=True)
    depth, notes = read_embedded_depth(write(tmp_path, "lost.jpg", data), 40, 30)
    assert depth is None and "extended XMP is incomplete" in notes[0]


def test_unusable_gdepth_values_are_ignored_with_a_note(tmp_path):
    z = scene_depth(40, 30)
    good = image_bytes(encode_google(z, "RangeInverse"))
    cases = {
        "format": (gdepth_jpeg(40, 30, good, fmt="RangeCubic"), "format 'RangeCubic'"),
        "image": (gdepth_jpeg(40, 30, b"not a png at all" * 40), "cannot be decoded"),
    }
    for name, (data, expected) in cases.items():
        depth, notes = read_embedded_depth(write(tmp_path, f"{name}.jpg", data), 40, 30)
        assert depth is None and expected in notes[0], (name, notes)


def test_depth_follows_stored_pixels_and_a_turned_map_is_refused(tmp_path):
    """load_image keeps the stored pixel orientation (EXIF orientation is not applied), and
    the phone stores depth in that orientation: a 6 ("rotate 90") tag changes nothing."""
    exif = Image.Exif()
    exif[0x0112] = 6
    z = scene_depth(40, 30)
    data = gdepth_jpeg(80, 60, image_bytes(encode_google(z, "RangeInverse")), exif=exif.tobytes())
    p = write(tmp_path, "rotated.jpg", data)
    from bokehkit.io.image import load_image

    image = load_image(p)
    assert image.size == (80, 60)
    depth, notes = read_embedded_depth(p, *image.size)
    assert depth is not None and depth.shape == (60, 80) and notes == []
    # A photo turned after it was taken no longer matches its depth map.
    depth, notes = read_embedded_depth(p, 60, 80)
    assert depth is None and "turned" in notes[0]
    depth, notes = read_embedded_depth(p, 80, 80)
    assert depth is None and "does not fit" in notes[0]


# ---------------------------------------------------------------------------------- HEIF


def _fake_heif(monkeypatch, depth_pixels: np.ndarray | None, metadata: dict):
    """pillow-heif cannot write depth images, so its reader is replaced by an object with
    the same interface (HeifFile[primary_index].info['depth_images'][i])."""
    depth_images = []
    if depth_pixels is not None:
        pil = Image.fromarray(depth_pixels)
        depth_images.append(
            types.SimpleNamespace(to_pillow=lambda: pil, size=pil.size, info={"metadata": metadata})
        )
    primary = types.SimpleNamespace(info={"depth_images": depth_images})

    class FakeHeif:
        primary_index = 0

        def __getitem__(self, i):
            return primary

    module = types.SimpleNamespace(open_heif=lambda *a, **k: FakeHeif())
    monkeypatch.setitem(sys.modules, "pillow_heif", module)


def test_heif_depth_with_representation_info_is_metric(tmp_path, monkeypatch):
    z = scene_depth(40, 30)
    # Uniform inverse Z, bright = near, between z_near and z_far.
    nearness = (1 / z - 1 / FAR) / (1 / NEAR - 1 / FAR)
    _fake_heif(
        monkeypatch,
        np.round(nearness * 255).astype(np.uint8),
        {"representation_type": 0, "z_near": NEAR, "z_far": FAR},
    )
    p = write(tmp_path, "portrait.heic", b"\x00\x00\x00\x18ftypheic")
    depth, notes = read_embedded_depth(p, 40, 30)
    assert depth is not None and depth.metric and notes == []
    np.testing.assert_allclose(depth.inverse_depth, 1 / z, atol=(1 / NEAR) / 255)


def test_heif_depth_without_info_is_relative_disparity(tmp_path, monkeypatch):
    ramp = np.tile(np.linspace(0, 255, 40).astype(np.uint8), (30, 1))
    _fake_heif(monkeypatch, ramp, {})  # Apple's portraits: no representation info
    p = write(tmp_path, "iphone.heic", b"\x00\x00\x00\x18ftypheic")
    depth, _ = read_embedded_depth(p, 40, 30)
    assert isinstance(depth, DepthMap) and not depth.metric
    assert depth.inverse_depth[0, -1] == pytest.approx(1.0) and depth.inverse_depth[0, 0] == 0


def test_heif_without_depth_through_the_real_pillow_heif(tmp_path):
    pillow_heif = pytest.importorskip("pillow_heif")
    p = tmp_path / "nodepth.heic"
    rgb = np.random.default_rng(0).integers(0, 255, (32, 48, 3), dtype=np.uint8)
    try:
        pillow_heif.from_pillow(Image.fromarray(rgb, "RGB")).save(str(p), quality=80)
    except Exception as exc:  # noqa: BLE001 - a build without an HEVC encoder
        pytest.skip(f"pillow-heif cannot encode here: {exc}")
    assert read_embedded_depth(p, 48, 32) == (None, [])


def test_heif_without_pillow_heif_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "pillow_heif", None)
    p = write(tmp_path, "x.heic", b"\x00\x00\x00\x18ftypheic")
    with pytest.raises(BokehkitError, match="needs pillow-heif"):
        read_embedded_depth(p, 8, 8, strict=True)


# ------------------------------------------------------------------- Apple portrait JPEG


@pytest.mark.parametrize("order", [">", "<"])
def test_apple_portrait_jpeg_disparity_is_read_and_the_matte_is_not(tmp_path, order):
    z = scene_depth(40, 30)
    # Depth as the second image (what `exiftool -b -MPImage2` extracts), the matte third.
    aux = [(disparity_codes(z), apple_depth_xmp()), (matte(40, 30), APPLE_MATTE_XMP)]
    p = write(tmp_path, "IMG_0001.JPG", apple_portrait_jpeg(80, 60, aux, order))
    depth, notes = read_embedded_depth(p, 40, 30)
    assert notes == [] and depth is not None and not depth.metric  # accuracy "relative"
    assert "Apple depth (MPF image 2)" in depth.source and "relative" in depth.source
    # Disparity over the nearest's (1/0.8 m): the shape of 1/z, zero at infinity; near bright.
    err = np.abs(depth.inverse_depth - APPLE_NEAR / z)
    assert np.median(err) < 0.01 and np.percentile(err, 95) < 0.03
    assert depth.inverse_depth[15, 15] > 0.95 and depth.inverse_depth[15, -1] < 0.2
    full, _ = read_embedded_depth(p, 80, 60)  # the photo is larger than its map
    assert full.shape == (60, 80)


@pytest.mark.parametrize("native", ["hdis", "hdep"])
def test_apple_depth_with_absolute_accuracy_is_metric(tmp_path, native):
    z = scene_depth(40, 30)
    if native == "hdep":  # depth in metres: bright = far
        codes = np.round((z - APPLE_NEAR) / (APPLE_FAR - APPLE_NEAR) * 255).astype(np.uint8)
    else:
        codes = disparity_codes(z)
    # Gain map and matte first, depth fourth: newer iPhones add more auxiliary images.
    aux = [
        (np.full((30, 40), 128, np.uint8), APPLE_GAIN_MAP_XMP),
        (matte(40, 30), APPLE_MATTE_XMP),
        (matte(40, 30), APPLE_MATTE_XMP),
        (codes, apple_depth_xmp(native, "absolute")),
    ]
    p = write(tmp_path, "front.jpg", apple_portrait_jpeg(40, 30, aux))
    depth, notes = read_embedded_depth(p, 40, 30)
    assert notes == [] and depth.metric and "MPF image 5" in depth.source
    err = np.abs(1 / depth.inverse_depth - z) / z
    assert np.median(err) < 0.02 and np.percentile(err, 90) < 0.06


def test_apple_matte_and_gain_map_are_not_depth(tmp_path):
    aux = [(matte(40, 30), APPLE_MATTE_XMP), (np.full((30, 40), 90, np.uint8), APPLE_GAIN_MAP_XMP)]
    p = write(tmp_path, "matte.jpg", apple_portrait_jpeg(40, 30, aux))
    assert read_embedded_depth(p, 40, 30) == (None, [])
    with pytest.raises(BokehkitError, match="holds no depth map"):
        read_embedded_depth(p, 40, 30, strict=True)


def test_other_multi_picture_files_have_no_depth(tmp_path):
    """A stereo MPO (two views, no Apple XMP), written by Pillow's own MPO writer."""
    rgb = np.random.default_rng(2).integers(0, 255, (30, 40, 3), dtype=np.uint8)
    p = tmp_path / "stereo.mpo"
    Image.fromarray(rgb).save(p, "MPO", save_all=True, append_images=[Image.fromarray(rgb)])
    with Image.open(p) as im:
        assert im.format == "MPO" and im.n_frames == 2
    assert read_embedded_depth(p, 40, 30) == (None, [])


def test_damaged_apple_jpeg_is_ignored_with_a_note_or_an_error_when_asked_for(tmp_path):
    z = scene_depth(40, 30)
    aux = [(matte(40, 30), APPLE_MATTE_XMP), (disparity_codes(z), apple_depth_xmp())]
    data = apple_portrait_jpeg(40, 30, aux)
    depth_len = len(grey_jpeg(disparity_codes(z), apple_depth_xmp()))
    cases = {
        # Cut inside the depth image's scan: its XMP is there, its pixels are not.
        "cut": (data[:-200], "Apple depth image (MPF image 3) cannot be decoded"),
        # Cut before it: the index points past the end.
        "short": (data[:-depth_len], "lists image 3 of 3, which is not in the file"),
        # An index whose entries are missing.
        "index": (apple_portrait_jpeg(40, 30, aux, n_entries=1), "MPF) index cannot be read"),
    }
    for name, (bad, expected) in cases.items():
        p = write(tmp_path, f"{name}.jpg", bad)
        depth, notes = read_embedded_depth(p, 40, 30)
        assert depth is None and len(notes) == 1 and expected in notes[0], (name, notes)
        with pytest.raises(BokehkitError, match="was ignored"):
            read_embedded_depth(p, 40, 30, strict=True)


def test_apple_depth_reaches_the_pipeline(tmp_path):
    """The pipeline reads the photo (the first MPF image) and asks phone_depth for depth."""
    from bokehkit.io.image import load_image
    from bokehkit.pipeline import _embedded_depth

    z = scene_depth(40, 30)
    aux = [(disparity_codes(z), apple_depth_xmp()), (matte(40, 30), APPLE_MATTE_XMP)]
    p = write(tmp_path, "IMG_0002.JPG", apple_portrait_jpeg(80, 60, aux))
    image = load_image(p)
    assert image.encoding.format == "JPEG" and image.size == (80, 60)
    report = types.SimpleNamespace(notes=[])
    depth = _embedded_depth(image, 80, 60, report)
    assert depth is not None and "Apple depth" in depth.source and report.notes == []


def test_apple_depth_without_a_value_range_is_relative_near_bright(tmp_path):
    """An image whose XMP only names the depthData namespace (as image_io looks for it) is
    taken as disparity; without IntMin…FloatMax it is a relative map, bright = near."""
    bare = packet(
        '<rdf:Description rdf:about="" xmlns:depthData="http://ns.apple.com/depthData/1.0/"/>'
    )
    z = scene_depth(40, 30)
    p = write(tmp_path, "bare.jpg", apple_portrait_jpeg(40, 30, [(disparity_codes(z), bare)]))
    depth, notes = read_embedded_depth(p, 40, 30)
    assert notes == [] and not depth.metric and "no value range" in depth.source
    assert depth.inverse_depth[15, 15] == pytest.approx(1.0) and depth.inverse_depth[15, -1] < 0.05

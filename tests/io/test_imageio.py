"""Tests for bokehkit.io.colour and bokehkit.io.image: round trips, metadata, errors."""

from __future__ import annotations

import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import tifffile
from PIL import Image

from bokehkit.errors import BokehkitError
from bokehkit.io import colour
from bokehkit.io import image as imageio

RNG = np.random.default_rng(1234)


# ------------------------------------------------------------------------- fixtures


def _s15f16(*vals: float) -> bytes:
    return b"".join(struct.pack(">i", round(v * 65536)) for v in vals)


def make_icc(space: str = "RGB", trc: bytes | None = None) -> bytes:
    """A minimal matrix/TRC ICC v2 profile with the given TRC tag body."""
    assert trc is not None

    def xyz(x, y, z):
        return b"XYZ \0\0\0\0" + _s15f16(x, y, z)

    if space == "RGB":
        tags = [
            (b"wtpt", xyz(0.9642, 1.0, 0.8249)),
            (b"rXYZ", xyz(0.4361, 0.2225, 0.0139)),
            (b"gXYZ", xyz(0.3851, 0.7169, 0.0971)),
            (b"bXYZ", xyz(0.1431, 0.0606, 0.7141)),
            (b"rTRC", trc),
            (b"gTRC", trc),
            (b"bTRC", trc),
        ]
        space_sig = b"RGB "
    else:
        tags = [(b"wtpt", xyz(0.9642, 1.0, 0.8249)), (b"kTRC", trc)]
        space_sig = b"GRAY"
    table = b""
    body = b""
    offset = 128 + 4 + 12 * len(tags)
    for sig, data in tags:
        data += b"\0" * (-len(data) % 4)
        table += struct.pack(">4sII", sig, offset + len(body), len(data))
        body += data
    size = offset + len(body)
    header = bytearray(128)
    struct.pack_into(
        ">I4sI4s4s4s", header, 0, size, b"none", 0x02100000, b"mntr", space_sig, b"XYZ "
    )
    header[36:40] = b"acsp"
    header[68:80] = _s15f16(0.9642, 1.0, 0.8249)
    return bytes(header) + struct.pack(">I", len(tags)) + table + body


def curv_gamma(g: float) -> bytes:
    return b"curv\0\0\0\0" + struct.pack(">IH", 1, round(g * 256))


def curv_table(values: np.ndarray) -> bytes:
    v = np.round(np.asarray(values) * 65535).astype(">u2")
    return b"curv\0\0\0\0" + struct.pack(">I", v.size) + v.tobytes()


# Rec. 709 OETF as a type-3 parametric curve (decoding direction).
REC709 = (1 / 0.45, 1 / 1.099, 0.099 / 1.099, 1 / 4.5, 0.081)


def para3(g: float, a: float, b: float, c: float, d: float) -> bytes:
    return b"para\0\0\0\0" + struct.pack(">HH", 3, 0) + _s15f16(g, a, b, c, d)


def make_exif(**ifd_extra: object) -> bytes:
    ex = Image.Exif()
    ex[271] = "Acme"
    ex[272] = "Bokeh 9000"
    exif_ifd = {0x829A: 0.004, 0x920A: 50.0}
    exif_ifd.update({int(k[1:], 16): v for k, v in ifd_extra.items()})
    ex[0x8769] = exif_ifd
    data = ex.tobytes()
    return data[6:] if data.startswith(b"Exif\x00\x00") else data


def exif_tags(data: bytes) -> dict:
    ex = Image.Exif()
    ex.load(data)
    return {"0": {k: ex[k] for k in (271, 272) if k in ex}, "exif": dict(ex.get_ifd(0x8769))}


def roundtrip(loaded: imageio.LoadedImage, out: Path) -> imageio.LoadedImage:
    enc = imageio.encode_linear(loaded.linear_rgb, loaded.encoding)
    imageio.save_image(out, enc, loaded.alpha, loaded.encoding)
    return imageio.load_image(out)


def rand(shape: tuple, dtype: type) -> np.ndarray:
    return RNG.integers(0, np.iinfo(dtype).max + 1, shape, dtype=dtype)


# ------------------------------------------------------------------- transfer curves


def test_srgb_functions_known_values_and_inverse() -> None:
    x = np.array([0.0, 0.04045, 0.5, 1.0], np.float32)
    y = colour.srgb_to_linear(x)
    assert y.dtype == np.float32
    np.testing.assert_allclose(y, [0.0, 0.04045 / 12.92, 0.21404114, 1.0], rtol=1e-5)
    grid = np.linspace(0, 1, 10001, dtype=np.float32)
    np.testing.assert_allclose(colour.linear_to_srgb(colour.srgb_to_linear(grid)), grid, atol=2e-6)


@pytest.mark.parametrize(
    "transfer",
    [
        colour.SRGB,
        colour.Transfer((colour.ParametricCurve(0, (2.2,)),)),
        colour.Transfer((colour.ParametricCurve(3, REC709),)),
        colour.Transfer((colour.TableCurve(np.linspace(0, 1, 1024) ** 1.8),)),
    ],
    ids=["srgb", "gamma", "para3", "table"],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_integer_round_trip_exact(transfer: colour.Transfer, dtype: type) -> None:
    maxval = np.iinfo(dtype).max
    codes = np.arange(maxval + 1, dtype=dtype)
    if dtype == np.uint16:  # a sample: all dark codes plus a random spread
        codes = np.unique(np.concatenate([codes[:2048], RNG.choice(codes, 20000), codes[-64:]]))
    img = np.stack([codes] * 3, -1)[None]
    enc = imageio.SourceEncoding("PNG", np.dtype(dtype).name, "RGB", None, None, transfer)
    lin = imageio._decode_to_linear(img, transfer)
    back = imageio.encode_linear(lin, enc)
    np.testing.assert_array_equal(back, img)
    # and the grey path (Rec. 709 luminance of replicated grey)
    genc = imageio.SourceEncoding("PNG", np.dtype(dtype).name, "L", None, None, transfer)
    np.testing.assert_array_equal(imageio.encode_linear(lin, genc)[..., 0], img[..., 0])


def test_parametric_curves_match_formulas() -> None:
    g, a, b, c, d = REC709
    curve = colour.ParametricCurve(3, REC709)
    x = np.linspace(0, 1, 101, dtype=np.float32)
    want = np.where(x >= d, (a * x.astype(np.float64) + b) ** g, c * x)
    np.testing.assert_allclose(curve.to_linear(x), want, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(curve.from_linear(curve.to_linear(x)), x, atol=1e-5)
    t2 = colour.ParametricCurve(2, (2.0, 1.0, 0.0, 0.1))
    np.testing.assert_allclose(t2.to_linear(np.float32([0.5])), [0.35], rtol=1e-6)
    t4 = colour.ParametricCurve(4, (2.0, 1.0, 0.0, 0.5, 0.2, 0.05, 0.01))
    np.testing.assert_allclose(t4.to_linear(np.float32([0.1, 0.5])), [0.06, 0.30], rtol=1e-6)


def test_parse_icc_curves() -> None:
    info = colour.parse_icc(make_icc("RGB", curv_gamma(2.2)))
    assert info.colour_space == "RGB" and info.version[0] == 2
    assert len(info.transfer.curves) == 1  # identical r/g/b collapse to one
    g = 563 / 256  # 2.2 as u8Fixed8Number
    np.testing.assert_allclose(info.transfer.to_linear(np.float32([0.5])), [0.5**g], rtol=1e-5)
    ident = colour.parse_icc(make_icc("GRAY", b"curv\0\0\0\0\0\0\0\0"))
    assert ident.colour_space == "GRAY" and ident.transfer.is_identity
    tab = colour.parse_icc(make_icc("RGB", curv_table(np.linspace(0, 1, 256) ** 2)))
    np.testing.assert_allclose(tab.transfer.to_linear(np.float32([0.5])), [0.25], atol=1e-4)
    # LittleCMS's own sRGB profile uses 'para' curves: must decode like sRGB
    srgb = colour.parse_icc(colour.srgb_icc_profile())
    x = np.linspace(0, 1, 256, dtype=np.float32)
    np.testing.assert_allclose(srgb.transfer.to_linear(x), colour.srgb_to_linear(x), atol=2e-4)
    with pytest.raises(ValueError):
        colour.parse_icc(b"garbage" * 40)


def test_lut_only_profile_has_no_transfer() -> None:
    info = colour.parse_icc(make_icc("RGB", b"sf32" + b"\0" * 12))
    assert info.transfer is None


# ------------------------------------------------------------------------ round trips


def test_png8_rgb_round_trip(tmp_path: Path) -> None:
    px = rand((23, 31, 3), np.uint8)
    Image.fromarray(px).save(tmp_path / "a.png")
    img = imageio.load_image(tmp_path / "a.png")
    assert img.size == (31, 23)
    assert img.linear_rgb.dtype == np.float32 and img.linear_rgb.shape == (23, 31, 3)
    assert (img.encoding.format, img.encoding.dtype, img.encoding.channels) == (
        "PNG",
        "uint8",
        "RGB",
    )
    np.testing.assert_allclose(img.linear_rgb, colour.srgb_to_linear(px / 255.0), atol=1e-6)
    back = roundtrip(img, tmp_path / "b.png")
    np.testing.assert_array_equal(back.encoded, px)


def test_jpeg_round_trip_approximate(tmp_path: Path) -> None:
    y, x = np.mgrid[0:64, 0:80]
    px = np.stack([x * 3, y * 4, (x + y) * 2], -1).astype(np.uint8)
    Image.fromarray(px).save(tmp_path / "a.jpg", quality=90)
    img = imageio.load_image(tmp_path / "a.jpg")
    assert img.encoding.format == "JPEG" and 80 <= img.encoding.jpeg_quality <= 100
    np.testing.assert_array_equal(imageio.encode_linear(img.linear_rgb, img.encoding), img.encoded)
    back = roundtrip(img, tmp_path / "b.jpg")
    assert np.abs(back.encoded.astype(int) - img.encoded).mean() < 2.0


def test_webp_lossless_round_trip(tmp_path: Path) -> None:
    px = rand((20, 24, 4), np.uint8)
    Image.fromarray(px, "RGBA").save(tmp_path / "a.webp", lossless=True, exact=True)
    img = imageio.load_image(tmp_path / "a.webp")
    assert img.encoding.webp_lossless is True and img.encoding.channels == "RGBA"
    back = roundtrip(img, tmp_path / "b.webp")
    np.testing.assert_array_equal(back.encoded, px[..., :3])
    np.testing.assert_array_equal(back.alpha, px[..., 3])


@pytest.mark.parametrize("channels", ["L", "LA", "RGB", "RGBA"])
def test_png16_round_trip_exact(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, channels: str
) -> None:
    monkeypatch.setattr(imageio, "_BLOCK_PIXELS", 100)  # force many row blocks
    n = len(channels)
    px = rand((33, 17, n), np.uint16)
    colour_px = px[..., : 1 if channels[0] == "L" else 3]
    alpha = px[..., -1] if channels.endswith("A") else None
    enc = imageio.SourceEncoding("PNG", "uint16", channels, None, None, colour.SRGB)
    imageio.save_image(tmp_path / "a.png", colour_px, alpha, enc)
    img = imageio.load_image(tmp_path / "a.png")
    assert (img.encoding.dtype, img.encoding.channels) == ("uint16", channels)
    np.testing.assert_array_equal(img.encoded, colour_px)
    if alpha is not None:
        assert img.alpha.dtype == np.uint16
        np.testing.assert_array_equal(img.alpha, alpha)
    back = roundtrip(img, tmp_path / "b.png")
    np.testing.assert_array_equal(back.encoded, colour_px)


@pytest.mark.parametrize("png_filter", [0, 1, 2, 3, 4])
def test_png16_every_filter_decodes(tmp_path: Path, png_filter: int) -> None:
    px = rand((9, 13, 3), np.uint16)
    imageio._write_png16(tmp_path / "f.png", px, None, None, None, None, png_filter=png_filter)
    np.testing.assert_array_equal(imageio.load_image(tmp_path / "f.png").encoded, px)


def test_png16_grey_written_by_pillow(tmp_path: Path) -> None:
    px = rand((12, 10), np.uint16)
    Image.fromarray(px).save(tmp_path / "g.png")
    img = imageio.load_image(tmp_path / "g.png")
    assert (img.encoding.dtype, img.encoding.channels) == ("uint16", "L")
    np.testing.assert_array_equal(img.encoded[..., 0], px)
    np.testing.assert_array_equal(img.linear_rgb[..., 0], img.linear_rgb[..., 2])


@pytest.mark.parametrize("channels", ["L", "RGB", "RGBA"])
def test_tiff16_round_trip_exact(tmp_path: Path, channels: str) -> None:
    px = rand((21, 19, len(channels)), np.uint16)
    kw = {"extrasamples": ["unassalpha"]} if channels == "RGBA" else {}
    tifffile.imwrite(
        tmp_path / "a.tif",
        px[..., 0] if channels == "L" else px,
        photometric="minisblack" if channels == "L" else "rgb",
        **kw,
    )
    img = imageio.load_image(tmp_path / "a.tif")
    assert (img.encoding.dtype, img.encoding.channels) == ("uint16", channels)
    back = roundtrip(img, tmp_path / "b.tiff")
    np.testing.assert_array_equal(back.encoded, px[..., : 1 if channels == "L" else 3])
    if channels == "RGBA":
        np.testing.assert_array_equal(back.alpha, px[..., 3])


def test_tiff_planar_and_deflate(tmp_path: Path) -> None:
    px = rand((3, 12, 10), np.uint16)  # separate planes
    tifffile.imwrite(
        tmp_path / "p.tif", px, photometric="rgb", planarconfig="separate", compression="zlib"
    )
    img = imageio.load_image(tmp_path / "p.tif")
    np.testing.assert_array_equal(img.encoded, np.moveaxis(px, 0, -1))


def test_tiff_lzw_8bit_via_pillow_fallback(tmp_path: Path) -> None:
    px = rand((12, 10, 3), np.uint8)
    Image.fromarray(px).save(tmp_path / "l.tif", compression="tiff_lzw")
    img = imageio.load_image(tmp_path / "l.tif")
    assert img.encoding.format == "TIFF"
    np.testing.assert_array_equal(img.encoded, px)


def test_float_tiff_exact_and_linear(tmp_path: Path) -> None:
    px = RNG.normal(0.5, 0.6, (15, 11, 3)).astype(np.float32)  # HDR and negatives too
    tifffile.imwrite(tmp_path / "a.tif", px, photometric="rgb")
    img = imageio.load_image(tmp_path / "a.tif")
    assert img.encoding.dtype == "float32" and img.encoding.transfer.is_identity
    np.testing.assert_array_equal(img.linear_rgb, px)
    back = roundtrip(img, tmp_path / "b.tif")
    np.testing.assert_array_equal(back.encoded, px)
    assert back.encoded.dtype == np.float32


def test_float_to_png_becomes_16bit_srgb(tmp_path: Path) -> None:
    px = RNG.uniform(0, 1, (8, 9, 3)).astype(np.float32)
    tifffile.imwrite(tmp_path / "a.tif", px, photometric="rgb")
    img = imageio.load_image(tmp_path / "a.tif")
    imageio.save_image(tmp_path / "b.png", img.encoded, None, img.encoding)
    back = imageio.load_image(tmp_path / "b.png")
    assert back.encoding.dtype == "uint16" and back.encoding.icc_profile is None
    np.testing.assert_allclose(back.linear_rgb, px, atol=2e-4)


def test_16bit_to_jpeg_becomes_8bit(tmp_path: Path) -> None:
    px = np.full((16, 16, 3), 257 * 100, np.uint16)
    enc = imageio.SourceEncoding("PNG", "uint16", "RGB", None, None, colour.SRGB)
    imageio.save_image(tmp_path / "a.jpg", px, np.zeros((16, 16), np.uint16), enc)
    back = imageio.load_image(tmp_path / "a.jpg")
    assert back.encoding.dtype == "uint8" and back.encoding.channels == "RGB"
    assert np.abs(back.encoded.astype(int) - 100).max() <= 1


@pytest.mark.parametrize("suffix", [".png", ".tif", ".webp"])
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_alpha_bit_exact_through_pipeline(tmp_path: Path, suffix: str, dtype: type) -> None:
    px = rand((18, 22, 4), dtype)
    enc0 = imageio.SourceEncoding("PNG", np.dtype(dtype).name, "RGBA", None, None, colour.SRGB)
    src = tmp_path / f"src{suffix}"
    imageio.save_image(src, px[..., :3], px[..., 3], enc0)
    img = imageio.load_image(src)
    if suffix == ".webp":  # WebP is 8-bit only
        px = imageio._to_dtype(px, "uint8")
    np.testing.assert_array_equal(img.alpha, px[..., 3])
    back = roundtrip(img, tmp_path / f"out{suffix}")
    np.testing.assert_array_equal(back.alpha, px[..., 3])
    np.testing.assert_array_equal(back.encoded, px[..., :3])


def test_grey_8bit_and_la(tmp_path: Path) -> None:
    px = rand((10, 12, 2), np.uint8)
    Image.fromarray(px, "LA").save(tmp_path / "a.png")
    img = imageio.load_image(tmp_path / "a.png")
    assert img.encoding.channels == "LA" and img.encoded.shape == (10, 12, 1)
    back = roundtrip(img, tmp_path / "b.png")
    np.testing.assert_array_equal(back.encoded[..., 0], px[..., 0])
    np.testing.assert_array_equal(back.alpha, px[..., 1])


# ------------------------------------------------------------------- ICC and metadata


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".tif"])
def test_icc_and_exif_preserved(tmp_path: Path, suffix: str) -> None:
    icc = make_icc("RGB", curv_gamma(2.2))
    exif = make_exif()
    px = rand((16, 16, 3), np.uint8)
    src = tmp_path / f"src{suffix}"
    if suffix == ".tif":
        enc = imageio.SourceEncoding("TIFF", "uint8", "RGB", icc, exif, colour.SRGB)
        imageio.save_image(src, px, None, enc)
    else:
        Image.fromarray(px).save(src, icc_profile=icc, exif=b"Exif\x00\x00" + exif)
    img = imageio.load_image(src)
    assert img.encoding.icc_profile == icc
    assert exif_tags(img.encoding.exif) == exif_tags(exif)
    for out_suffix in (".png", ".jpg", ".tif", ".webp"):
        back = roundtrip(img, tmp_path / f"out{out_suffix}")
        assert back.encoding.icc_profile == icc, out_suffix
        if out_suffix != ".tif" and suffix != ".tif":
            assert back.encoding.exif == img.encoding.exif, out_suffix  # bytes unchanged
        assert exif_tags(back.encoding.exif) == exif_tags(exif), out_suffix


@pytest.mark.parametrize(
    ("trc", "curve"),
    [
        (curv_gamma(2.2), lambda x: x ** (563 / 256)),
        (
            para3(*REC709),
            lambda x: np.where(x >= REC709[4], (REC709[1] * x + REC709[2]) ** REC709[0], x / 4.5),
        ),
    ],
    ids=["curv-gamma-2.2", "para-type-3"],
)
def test_non_srgb_trc_decodes_with_its_curve(tmp_path: Path, trc: bytes, curve) -> None:
    codes = np.arange(256, dtype=np.uint8)
    px = np.stack([codes, codes[::-1], codes], -1)[None].repeat(2, 0)
    Image.fromarray(px).save(tmp_path / "a.png", icc_profile=make_icc("RGB", trc))
    img = imageio.load_image(tmp_path / "a.png")
    want = curve(px / 255.0)
    np.testing.assert_allclose(img.linear_rgb, want, rtol=1e-4, atol=1e-7)
    srgb = colour.srgb_to_linear(px / 255.0)
    assert np.abs(img.linear_rgb - srgb).max() > 0.005  # really not decoded as sRGB
    np.testing.assert_array_equal(imageio.encode_linear(img.linear_rgb, img.encoding), px)


def test_grey_profile_16bit(tmp_path: Path) -> None:
    icc = make_icc("GRAY", curv_gamma(1.8))
    px = rand((7, 5), np.uint16)
    enc = imageio.SourceEncoding("PNG", "uint16", "L", icc, None, colour.SRGB)
    imageio.save_image(tmp_path / "g.png", px, None, enc)
    img = imageio.load_image(tmp_path / "g.png")
    assert img.encoding.icc_profile == icc
    g = round(1.8 * 256) / 256
    np.testing.assert_allclose(img.linear_rgb[..., 1], (px / 65535.0) ** g, rtol=1e-4, atol=1e-9)
    # a grey profile cannot go into an RGB-only WebP: pixels re-encoded to sRGB, no profile
    imageio.save_image(tmp_path / "g.webp", img.encoded, None, img.encoding)
    web = imageio.load_image(tmp_path / "g.webp")
    assert web.encoding.icc_profile is None
    np.testing.assert_allclose(web.linear_rgb, img.linear_rgb, atol=0.01)


def test_cms_lattice_fallback_is_close_to_identity_for_srgb() -> None:
    px = rand((40, 30, 3), np.uint16)
    out = imageio._cms_to_srgb(px, colour.srgb_icc_profile(), "x")
    assert out.dtype == np.uint16
    assert np.abs(out.astype(int) - px).max() < 65535 * 0.03


def test_focal_length_35mm() -> None:
    enc = imageio.SourceEncoding("JPEG", "uint8", "RGB", None, make_exif(xA405=75), colour.SRGB)
    assert imageio.focal_length_35mm(enc) == 75.0
    # 6000 x 4000 px on a 36 x 24 mm sensor (unit mm) -> full frame, crop 1
    exif = make_exif(xA20E=6000 / 36, xA20F=4000 / 24, xA210=4, xA002=6000, xA003=4000)
    enc = imageio.SourceEncoding("JPEG", "uint8", "RGB", None, exif, colour.SRGB)
    assert imageio.focal_length_35mm(enc) == pytest.approx(50.0, rel=1e-3)
    assert (
        imageio.focal_length_35mm(
            imageio.SourceEncoding("PNG", "uint8", "RGB", None, None, colour.SRGB)
        )
        is None
    )


# ------------------------------------------------------------------------------ errors


def test_missing_and_garbage_files(tmp_path: Path) -> None:
    with pytest.raises(BokehkitError, match="not found"):
        imageio.load_image(tmp_path / "nope.png")
    (tmp_path / "junk.png").write_bytes(b"this is not an image" * 10)
    with pytest.raises(BokehkitError, match="junk.png"):
        imageio.load_image(tmp_path / "junk.png")
    Image.fromarray(rand((50, 50, 3), np.uint8)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(BokehkitError, match="cut.png"):
        imageio.load_image(tmp_path / "cut.png")
    (tmp_path / "cut.tif").write_bytes(b"II*\x00" + b"\xff" * 20)
    with pytest.raises(BokehkitError, match="cut.tif"):
        imageio.load_image(tmp_path / "cut.tif")


def test_cmyk_is_rejected(tmp_path: Path) -> None:
    Image.new("CMYK", (8, 8), (10, 20, 30, 40)).save(tmp_path / "c.jpg")
    with pytest.raises(BokehkitError, match="convert to RGB first"):
        imageio.load_image(tmp_path / "c.jpg")


def test_unknown_extension(tmp_path: Path) -> None:
    enc = imageio.SourceEncoding("PNG", "uint8", "RGB", None, None, colour.SRGB)
    with pytest.raises(BokehkitError, match="extension"):
        imageio.save_image(tmp_path / "out.bmp", np.zeros((4, 4, 3), np.uint8), None, enc)


@pytest.mark.parametrize("writer", ["_write_png16", "_write_pillow", "_write_tiff"])
def test_failed_save_leaves_no_partial_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    original = getattr(imageio, writer)

    def half_then_fail(tmp: Path, *args, **kwargs) -> None:
        original(tmp, *args, **kwargs)
        with open(tmp, "r+b") as f:
            f.truncate(10)
        raise OSError("disk full")

    monkeypatch.setattr(imageio, writer, half_then_fail)
    suffix, dtype = {
        "_write_png16": (".png", np.uint16),
        "_write_pillow": (".jpg", np.uint8),
        "_write_tiff": (".tif", np.uint16),
    }[writer]
    enc = imageio.SourceEncoding("PNG", np.dtype(dtype).name, "RGB", None, None, colour.SRGB)
    target = tmp_path / f"out{suffix}"
    with pytest.raises(BokehkitError, match="disk full"):
        imageio.save_image(target, np.zeros((4, 4, 3), dtype), None, enc)
    assert list(tmp_path.iterdir()) == []
    # an existing file survives a failed overwrite untouched
    target.write_bytes(b"previous")
    with pytest.raises(BokehkitError):
        imageio.save_image(target, np.zeros((4, 4, 3), dtype), None, enc)
    assert target.read_bytes() == b"previous"
    assert [q.name for q in tmp_path.iterdir()] == [target.name]


# ------------------------------------------------------------------------------ memory


def test_load_peak_memory_stays_near_output(tmp_path: Path) -> None:
    h, w = 1000, 1500
    px = rand((h, w, 3), np.uint16)
    enc = imageio.SourceEncoding("PNG", "uint16", "RGB", None, None, colour.SRGB)
    imageio.save_image(tmp_path / "big.png", px, None, enc)
    tracemalloc.start()
    try:
        img = imageio.load_image(tmp_path / "big.png")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    kept = img.linear_rgb.nbytes + img.encoded.nbytes
    # no full-size float64 (would be 36 MB here); temporaries bounded by the row blocks
    assert peak - kept < 0.6 * img.linear_rgb.nbytes


@pytest.mark.parametrize("maxval", [255, 1023, 65535])
@pytest.mark.parametrize("curve", ["sRGB", "gamma 2.2", "linear"])
def test_encode_is_the_exact_nearest_code_whatever_the_search(curve, maxval):
    """`Transfer.encode` takes a bucketed shortcut for float32 input; it must give exactly
    the binary search's codes, at and beside every threshold and at the odd values."""
    transfer = {
        "sRGB": colour.SRGB,
        "linear": colour.LINEAR,
        "gamma 2.2": colour.Transfer((colour.ParametricCurve(0, (2.2,)),)),
    }[curve]
    thr, codes = colour._encoder(transfer.curve(0), maxval)
    rng = np.random.default_rng(maxval)
    odd = [np.inf, -np.inf, 0.0, -0.0, 1.0, 3e38, 1e-45, -1e-45, -2.0]
    y = np.concatenate(
        [
            rng.uniform(-0.2, 1.3, 200_000),
            rng.uniform(0.0, 0.003, 100_000),
            thr,
            np.nextafter(thr, np.float32(-1)),
            np.nextafter(thr, np.float32(2)),
            odd,
        ]
    ).astype(np.float32)
    expected = np.searchsorted(thr, y, side="right")
    expected = expected if codes is None else codes[expected]
    got = transfer.encode(y, 0, maxval)
    assert np.array_equal(got, expected)
    assert got.min() == 0 and got.max() == maxval

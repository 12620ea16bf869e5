"""The reader of depth that phones embed in photos, on files built here to the published
formats: GDepth with extended XMP (Google Camera), Dynamic Depth 1.0 (a container of items
after the primary JPEG), HEIF depth through pillow-heif, and Apple's portrait JPEG (the
depth as a Multi-Picture Format image with Apple's XMP, beside the portrait matte and the
HDR gain map)."""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import types

import numpy as np
import pytest
from PIL import Image

from bokehkit.errors import BokehkitError
from bokehkit.scene.depth import DepthMap
from bokehkit.scene.phone_depth import XMP_EXT_HEADER, XMP_HEADER, read_embedded_depth

NEAR, FAR = 0.5, 8.0


# ----------------------------------------------------------------------- file builders


def scene_depth(w: int, h: int) -> np.ndarray:
    """Metric depth: a near subject (0.8 m) on a floor receding from 1 m to 6 m."""
    z = np.tile(np.linspace(1.0, 6.0, w, dtype=np.float64), (h, 1))
    z[h // 4 : 3 * h // 4, w // 4 : w // 2] = 0.8
    return z


def encode_google(z: np.ndarray, fmt: str, near=NEAR, far=FAR, bits: int = 16) -> np.ndarray:
    """Google's normalisation (0 = near), quantised to integer codes."""
    if fmt == "RangeInverse":
        d_n = far * (z - near) / (z * (far - near))
    else:
        d_n = (z - near) / (far - near)
    top = 2**bits - 1
    return np.round(np.clip(d_n, 0, 1) * top).astype(np.uint16 if bits == 16 else np.uint8)


def image_bytes(arr: np.ndarray, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    if arr.dtype == np.uint16:
        Image.fromarray(arr.astype(np.uint16)).save(buf, "PNG")
    else:
        Image.fromarray(arr).save(buf, fmt, **({"quality": 95} if fmt == "JPEG" else {}))
    return buf.getvalue()


def photo_jpeg(w: int, h: int, exif: bytes | None = None) -> bytes:
    rng = np.random.default_rng(1)
    rgb = rng.integers(40, 200, (h, w, 3), dtype=np.uint8)
    buf = io.BytesIO()
    kw = {"exif": exif} if exif else {}
    Image.fromarray(rgb, "RGB").save(buf, "JPEG", quality=90, **kw)
    return buf.getvalue()


def app1(payload: bytes) -> bytes:
    assert len(payload) + 2 <= 0xFFFF
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def with_segments(jpeg: bytes, segments: list[bytes]) -> bytes:
    """Insert APP segments right after SOI (before any JFIF/EXIF is fine for readers)."""
    assert jpeg.startswith(b"\xff\xd8")
    return jpeg[:2] + b"".join(segments) + jpeg[2:]


XMP_OPEN = (
    '<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
    'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
)
XMP_CLOSE = "</rdf:RDF></x:xmpmeta>"


def packet(body: str) -> bytes:
    return (
        '<?xpacket begin="\ufeff" id="W5M0MpCehiHzreSzNTczkc9d"?>'
        + XMP_OPEN
        + body
        + XMP_CLOSE
        + '<?xpacket end="w"?>'
    ).encode()


def gdepth_jpeg(
    w: int,
    h: int,
    depth_img: bytes,
    fmt: str = "RangeInverse",
    units: str | None = "m",
    mime: str = "image/png",
    drop_chunk: bool = False,
    exif: bytes | None = None,
) -> bytes:
    """A Google Camera file: GDepth properties in the main XMP, the depth image in the
    extended XMP, split into four APP1 segments (real files use ~65 kB chunks)."""
    ext = (
        XMP_OPEN
        + '<rdf:Description rdf:about="" xmlns:GDepth="http://ns.google.com/photos/1.0/depthmap/"'
        + f' GDepth:Data="{base64.b64encode(depth_img).decode()}"/>'
        + XMP_CLOSE
    ).encode()
    guid = hashlib.md5(ext).hexdigest().upper().encode()
    units_attr = f' GDepth:Units="{units}"' if units else ""
    main = packet(
        '<rdf:Description rdf:about=""'
        ' xmlns:GDepth="http://ns.google.com/photos/1.0/depthmap/"'
        ' xmlns:xmpNote="http://ns.adobe.com/xmp/note/"'
        f' GDepth:Format="{fmt}" GDepth:Near="{NEAR}" GDepth:Far="{FAR}"{units_attr}'
        f' GDepth:Mime="{mime}" GDepth:MeasureType="OpticalAxis"'
        f' xmpNote:HasExtendedXMP="{guid.decode()}"/>'
    )
    segments = [app1(XMP_HEADER + main)]
    chunk = len(ext) // 4 + 1
    parts = [(off, ext[off : off + chunk]) for off in range(0, len(ext), chunk)]
    assert len(parts) > 2
    if drop_chunk:
        del parts[1]
    for off, part in parts:
        head = XMP_EXT_HEADER + guid + len(ext).to_bytes(4, "big") + off.to_bytes(4, "big")
        segments.append(app1(head + part))
    return with_segments(photo_jpeg(w, h, exif), segments)


def dynamic_depth_jpeg(w: int, h: int, depth_img: bytes, fmt: str = "RangeLinear") -> bytes:
    """A Dynamic Depth 1.0 file: the primary JPEG whose XMP lists a container of items
    (primary, confidence, depth), the other items appended after its EOI with padding."""
    confidence = image_bytes(np.full((4, 4), 255, np.uint8))
    pad = 3
    main = packet(
        '<rdf:Description rdf:about=""'
        ' xmlns:Device="http://ns.google.com/photos/dd/1.0/device/"'
        ' xmlns:Camera="http://ns.google.com/photos/dd/1.0/camera/"'
        ' xmlns:Depth="http://ns.google.com/photos/dd/1.0/depthmap/"'
        ' xmlns:Image="http://ns.google.com/photos/dd/1.0/image/"'
        ' xmlns:Container="http://ns.google.com/photos/dd/1.0/container/"'
        ' xmlns:Item="http://ns.google.com/photos/dd/1.0/item/">'
        "<Device:Container><Container:Directory><rdf:Seq>"
        '<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="image/jpeg"'
        ' Item:Semantic="Primary" Item:Length="0" Item:Padding="0"/></rdf:li>'
        '<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="image/png"'
        f' Item:Semantic="Confidence" Item:Length="{len(confidence)}" Item:Padding="{pad}"'
        ' Item:DataURI="android/confidencemap"/></rdf:li>'
        '<rdf:li rdf:parseType="Resource"><Container:Item Item:Mime="image/png"'
        f' Item:Semantic="Depth" Item:Length="{len(depth_img)}" Item:Padding="0"'
        ' Item:DataURI="android/depthmap"/></rdf:li>'
        "</rdf:Seq></Container:Directory></Device:Container>"
        '<Device:Cameras><rdf:Seq><rdf:li rdf:parseType="Resource"><Device:Camera'
        ' rdf:parseType="Resource"><Camera:Trait>Physical</Camera:Trait>'
        '<Camera:Image Image:ItemSemantic="Primary" Image:ItemURI="primary_image"/>'
        '<Camera:DepthMap rdf:parseType="Resource">'
        f"<Depth:Format>{fmt}</Depth:Format><Depth:Near>{NEAR}</Depth:Near>"
        f"<Depth:Far>{FAR}</Depth:Far><Depth:Units>Meters</Depth:Units>"
        "<Depth:MeasureType>OpticalAxis</Depth:MeasureType>"
        "<Depth:DepthURI>android/depthmap</Depth:DepthURI>"
        "<Depth:ConfidenceURI>android/confidencemap</Depth:ConfidenceURI>"
        "</Camera:DepthMap></Device:Camera></rdf:li></rdf:Seq></Device:Cameras>"
        "</rdf:Description>"
    )
    primary = with_segments(photo_jpeg(w, h), [app1(XMP_HEADER + main)])
    return primary + confidence + b"\x00" * pad + depth_img


def write(tmp_path, name: str, data: bytes):
    p = tmp_path / name
    p.write_bytes(data)
    return p


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

NS_APDI = "http://ns.apple.com/pixeldatainfo/1.0/"
L008 = int.from_bytes(b"L008", "big")  # 1278226488: 8-bit grey, as the codes are stored
APPLE_NEAR, APPLE_FAR = 0.8, 6.0


def fourcc(code: str) -> int:
    return int.from_bytes(code.encode(), "big")  # apdi writes e.g. 'hdis' as 1751411059


def apple_depth_xmp(native: str = "hdis", accuracy: str = "relative", lo=None, hi=None) -> bytes:
    """The XMP of Apple's depth image: pixel data info (how the codes map to values) and
    depth data (accuracy, quality), as in packets iPhones write (calibration left out)."""
    if lo is None:
        lo, hi = (1 / APPLE_FAR, 1 / APPLE_NEAR) if native[1:] == "dis" else (APPLE_NEAR, APPLE_FAR)
    return packet(
        f'<rdf:Description rdf:about="" xmlns:apdi="{NS_APDI}"'
        ' xmlns:depthData="http://ns.apple.com/depthData/1.0/">'
        "<apdi:IntMaxValue>255</apdi:IntMaxValue>"
        f"<apdi:StoredFormat>{L008}</apdi:StoredFormat>"
        f"<apdi:NativeFormat>{fourcc(native)}</apdi:NativeFormat>"
        "<apdi:IntMinValue>0</apdi:IntMinValue>"
        f"<apdi:FloatMaxValue>{hi:.6f}</apdi:FloatMaxValue>"
        f"<apdi:FloatMinValue>{lo:.6f}</apdi:FloatMinValue>"
        "<depthData:Quality>high</depthData:Quality>"
        f"<depthData:Accuracy>{accuracy}</depthData:Accuracy>"
        "<depthData:Filtered>true</depthData:Filtered>"
        "</rdf:Description>"
    )


# The portrait matte: it claims AuxiliaryImageType "depth" (as Apple-style writers put it)
# but is the person's matte: it must never be read as depth.
APPLE_MATTE_XMP = packet(
    f'<rdf:Description rdf:about="" xmlns:apdi="{NS_APDI}"'
    ' xmlns:portraitEffectsMatte="http://ns.apple.com/portraitEffectsMatte/1.0/">'
    "<apdi:AuxiliaryImageSubType>portraiteffectsmatte</apdi:AuxiliaryImageSubType>"
    f"<apdi:NativeFormat>{L008}</apdi:NativeFormat>"
    "<apdi:AuxiliaryImageType>depth</apdi:AuxiliaryImageType>"
    f"<apdi:StoredFormat>{L008}</apdi:StoredFormat>"
    "<portraitEffectsMatte:PortraitEffectsMatteVersion>65537"
    "</portraitEffectsMatte:PortraitEffectsMatteVersion>"
    "</rdf:Description>"
)
# The HDR gain map, as Skia identifies it.
APPLE_GAIN_MAP_XMP = packet(
    f'<rdf:Description rdf:about="" xmlns:apdi="{NS_APDI}"'
    ' xmlns:HDRGainMap="http://ns.apple.com/HDRGainMap/1.0/">'
    "<apdi:AuxiliaryImageType>urn:com:apple:photo:2020:aux:hdrgainmap</apdi:AuxiliaryImageType>"
    f"<apdi:StoredFormat>{L008}</apdi:StoredFormat>"
    f"<apdi:NativeFormat>{L008}</apdi:NativeFormat>"
    "<HDRGainMap:HDRGainMapVersion>65536</HDRGainMap:HDRGainMapVersion>"
    "</rdf:Description>"
)


def grey_jpeg(arr: np.ndarray, xmp: bytes | None) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(arr, "L").save(buf, "JPEG", quality=100)
    segments = [app1(XMP_HEADER + xmp)] if xmp else []
    return with_segments(buf.getvalue(), segments)


def mpf_app2(sizes: list[int], offsets: list[int], order: str = ">", n_entries=None) -> bytes:
    """CIPA DC-007 APP2: "MPF\\0", then the MP header (a TIFF header) and the MP Index IFD:
    MPFVersion, NumberOfImages and the MP Entries (attribute, size, offset from the MP
    header, two dependent-image numbers), 16 bytes each."""
    n = len(sizes)
    u16 = lambda v: v.to_bytes(2, "big" if order == ">" else "little")  # noqa: E731
    u32 = lambda v: v.to_bytes(4, "big" if order == ">" else "little")  # noqa: E731
    ifd_at, entries_at = 8, 8 + 2 + 3 * 12 + 4
    ifd = u16(3)
    ifd += u16(0xB000) + u16(7) + u32(4) + b"0100"  # UNDEFINED[4]
    ifd += u16(0xB001) + u16(4) + u32(1) + u32(n)  # LONG
    ifd += u16(0xB002) + u16(7) + u32(16 * (n_entries or n)) + u32(entries_at)
    ifd += u32(0)  # no MP Attribute IFD
    entries = b""
    for i, (size, offset) in enumerate(zip(sizes, offsets, strict=True)):
        attribute = 0x20030000 if i == 0 else 0  # representative baseline primary; undefined
        entries += u32(attribute) + u32(size) + u32(offset) + u16(0) + u16(0)
    entries = entries[: 16 * (n_entries or n)]
    head = (b"MM\x00\x2a" if order == ">" else b"II\x2a\x00") + u32(ifd_at)
    payload = b"MPF\x00" + head + ifd + entries
    return b"\xff\xe2" + (len(payload) + 2).to_bytes(2, "big") + payload


def apple_portrait_jpeg(
    w: int, h: int, aux: list[tuple[np.ndarray, bytes]], order: str = ">", n_entries=None
) -> bytes:
    """An iPhone portrait JPEG: the photo (EXIF Make "Apple", MPF index in APP2 after its
    APP segments), then each auxiliary image, a grey JPEG with its own XMP."""
    exif = Image.Exif()
    exif[0x010F] = "Apple"
    exif[0x0110] = "iPhone 12 Pro"
    photo = photo_jpeg(w, h, exif.tobytes())
    images = [grey_jpeg(arr, xmp) for arr, xmp in aux]
    i = 2  # after the photo's APP segments, where iPhones put MPF
    while photo[i] == 0xFF and 0xE0 <= photo[i + 1] <= 0xEF:
        i += 2 + int.from_bytes(photo[i + 2 : i + 4], "big")
    placeholder = mpf_app2([0] * (1 + len(images)), [0] * (1 + len(images)), order, n_entries)
    header_at = i + 4 + 4  # the MP header follows the marker, length and "MPF\0"
    primary_size = len(photo) + len(placeholder)
    sizes, offsets, pos = [primary_size], [0], primary_size
    for img in images:
        sizes.append(len(img))
        offsets.append(pos - header_at)
        pos += len(img)
    segment = mpf_app2(sizes, offsets, order, n_entries)
    return photo[:i] + segment + photo[i:] + b"".join(images)


def disparity_codes(z: np.ndarray) -> np.ndarray:
    lo, hi = 1 / APPLE_FAR, 1 / APPLE_NEAR
    return np.round((1 / z - lo) / (hi - lo) * 255).astype(np.uint8)


def matte(w: int, h: int) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[h // 4 : 3 * h // 4, w // 4 : w // 2] = 255  # the subject: bright, like near disparity
    return m


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

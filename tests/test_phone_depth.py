"""The reader of depth that phones embed in photos, on files built here to the published
formats: GDepth with extended XMP (Google Camera), Dynamic Depth 1.0 (a container of items
after the primary JPEG), and HEIF depth through pillow-heif."""

from __future__ import annotations

import base64
import hashlib
import io
import sys
import types

import numpy as np
import pytest
from PIL import Image

from bokehkit.depth import DepthMap
from bokehkit.errors import BokehkitError
from bokehkit.phone_depth import XMP_EXT_HEADER, XMP_HEADER, read_embedded_depth

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
    from bokehkit.imageio import load_image

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
            types.SimpleNamespace(to_pillow=lambda: pil, info={"metadata": metadata})
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

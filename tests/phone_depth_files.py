"""Phone photos with depth stored in them, built byte by byte for the tests: Google's
GDepth (with extended XMP), Dynamic Depth containers and Apple's portrait JPEGs (MPF with a
disparity image and its XMP). Used by tests/scene/test_phone_depth.py and the CLI, order and
fuzz tests."""

from __future__ import annotations

import base64
import hashlib
import io

import numpy as np
from PIL import Image

from bokehkit.scene.phone_depth import XMP_EXT_HEADER, XMP_HEADER

NEAR, FAR = 0.5, 8.0


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

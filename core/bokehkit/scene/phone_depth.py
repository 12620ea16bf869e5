"""Depth that phones already recorded in the photo: read it instead of guessing it.

Written from the published formats, with no third-party metadata library:

- **GDepth** (Google Camera "Lens Blur" and early Pixel portraits): XMP properties in the
  namespace ``http://ns.google.com/photos/1.0/depthmap/``: ``Format`` (``RangeInverse`` or
  ``RangeLinear``), ``Near``, ``Far``, optional ``Units``, ``Mime`` and ``Data``, the depth
  image (PNG or JPEG) in base64. ``Data`` is too large for one JPEG segment, so it lives in
  the *extended XMP*: APP1 segments starting ``http://ns.adobe.com/xmp/extension/\\0``, then
  a 32-character GUID (the main XMP names it in ``xmpNote:HasExtendedXMP``), the full length
  and the offset of this chunk (big-endian uint32 each), then the chunk.
- **Dynamic Depth 1.0** (Android, later Pixels): the main XMP describes a ``Device:Container``
  whose ``Container:Item`` entries (``Item:Mime``, ``Item:Semantic``, ``Item:Length``,
  ``Item:Padding``, ``Item:DataURI``) are files concatenated after the primary JPEG, and a
  ``Depth:`` element (``Format``, ``Near``, ``Far``, ``Units``, ``DepthURI``) that names the
  item holding the depth image.
- **HEIF/HEIC depth** (Apple portrait photos, and any HEIF with an MPEG depth auxiliary
  image) through ``pillow-heif`` when it is installed (optional: requirements/heif.txt). Its
  ``depth_images`` carry the depth representation info when the file has one (z_near, z_far,
  the representation type); Apple's files usually have none, which gives a relative
  disparity map, bright = near.
- **Apple portrait JPEG** (iPhone "Most Compatible" captures): the depth is one more JPEG
  after the photo, listed in the photo's Multi-Picture Format index, read with Pillow's MPO
  reader. Where each fact comes from:

  * MPF (CIPA DC-007): an APP2 ``MPF\\0`` segment in the primary image holds a TIFF-style
    MP Index IFD whose MP Entries give each image's size and offset (from the MP header;
    the first image at 0). Apple's WWDC 2017 session 507 ("Image Editing with Depth", as
    its transcript is quoted): the map is "8-bit lossy JPEG if it's filtered", 16-bit
    lossless JPEG when it holds NaNs, stored "as a second image at the bottom of the JPEG",
    like a multi-picture file. Pillow cannot decode lossless JPEG: such a map is ignored
    with a note.
  * Which image is the depth: Google's image_io (``JpegInfoBuilder``, Android's JPEG depth
    tools) takes an image after the first, in a file whose first image has MPF, whose XMP
    names ``http://ns.apple.com/depthData/1.0``; one naming
    ``http://ns.apple.com/portraitEffectsMatte/1.0/`` is the portrait matte. Skia
    (``SkJpegGainmap.cpp``) takes the MPF image whose XMP has ``apdi:AuxiliaryImageType``
    ``urn:com:apple:photo:2020:aux:hdrgainmap`` (namespaces apdi and HDRGainMap) as the HDR
    gain map. ExifTool names ``apdi`` = ``http://ns.apple.com/pixeldatainfo/1.0/`` and reads
    its ``NativeFormat``/``StoredFormat`` as four-character codes written as numbers; users
    pull the iPhone depth out with ``exiftool -b -MPImage2``. Public writers of Apple-style
    files put ``apdi:AuxiliaryImageType`` "depth" on the *matte* (with
    ``AuxiliaryImageSubType`` "portraiteffectsmatte"), so that type proves nothing: an image
    with a matte, semantic matte or gain map namespace, or a matte or gain map type or
    sub-type, is never depth. What is: an image whose XMP names the depthData namespace
    (as image_io asks), or whose ``NativeFormat`` is a depth format.
  * What the values are: Apple's AVDepthData documentation: ``hdis``/``fdis`` are
    disparity in 1/m, ``hdep``/``fdep`` depth in metres; ``Accuracy`` "relative" maps are
    "usable for foreground/background separation, but are not absolutely accurate in the
    physical world", "absolute" ones are. Apple's answer on its developer forum (thread
    108284): photos always store the map as ``DisparityFloat16``, so a map that does not
    say is taken as disparity. The stored 8-bit codes ``IntMinValue``…``IntMaxValue`` stand
    for ``FloatMinValue``…``FloatMaxValue``, linearly: Apple does not document that; it is
    how public readers of these files (Python and Rust, on real iPhone packets such as
    0…255 ↔ 0.36…1.80 /m, ``NativeFormat`` 1751411059 = hdis, ``StoredFormat`` 1278226488
    = L008) read them. So a disparity map is bright = near. An absolute map is metric;
    a relative one keeps its shape (disparity over the largest, zero at infinity).

Both Google formats normalise depth d to d_n in [0, 1] with d_n = 0 at Near:
RangeLinear d_n = (d − near)/(far − near); RangeInverse d_n = far·(d − near)/(d·(far − near)),
i.e. 1/d = (1 − d_n)/near + d_n/far, which is linear in disparity. Near/Far are metres when
``Units`` says so (Pixels write ``m``; Dynamic Depth ``Meters``); without units (Lens Blur
wrote Near ≈ 12, Far ≈ 51, not metres) only their ratio is used, giving a relative map with
the right shape (near/d, zero at infinity).

Depth maps are stored in the stored pixel orientation of the photo (as `load_image` reads
it: EXIF orientation is not applied), usually at a lower resolution: they are resized to the
photo if their aspect ratio matches, and ignored with a note if it does not.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np

from ..errors import BokehkitError
from ..limits import check_pixels
from .depth import DepthMap, fit_to_image
from .depth import _ranged as _ranged_map

NS_GDEPTH = "http://ns.google.com/photos/1.0/depthmap/"
NS_XMPNOTE = "http://ns.adobe.com/xmp/note/"
NS_DD_DEPTH = "http://ns.google.com/photos/dd/1.0/depthmap/"
NS_DD_ITEM = "http://ns.google.com/photos/dd/1.0/item/"
NS_APPLE_PIXEL = "http://ns.apple.com/pixeldatainfo/1.0/"  # "apdi"
NS_APPLE_DEPTH = "http://ns.apple.com/depthData/1.0/"
# Apple's other auxiliary images: they carry apdi too, and are no depth.
NS_APPLE_NOT_DEPTH = (
    "http://ns.apple.com/portraitEffectsMatte/1.0/",
    "http://ns.apple.com/semanticSegmentationMatte/1.0/",
    "http://ns.apple.com/HDRGainMap/1.0/",
)
# Core Video depth formats, as apdi:NativeFormat names them (the four characters, or the
# big-endian number they make).
APPLE_DEPTH_FORMATS = {"hdis": "disparity", "fdis": "disparity", "hdep": "depth", "fdep": "depth"}

XMP_HEADER = b"http://ns.adobe.com/xap/1.0/\x00"
XMP_EXT_HEADER = b"http://ns.adobe.com/xmp/extension/\x00"
HEIF_SUFFIXES = (".heic", ".heif", ".hif", ".avif")

_METRES = {"m": 1.0, "meter": 1.0, "meters": 1.0, "metre": 1.0, "metres": 1.0,
           "mm": 0.001, "millimeter": 0.001, "millimeters": 0.001, "cm": 0.01}  # fmt: skip


class _Skip(Exception):
    """Depth was found but cannot be used: the message says why."""


def read_embedded_depth(
    path: str | Path, width: int, height: int, strict: bool = False
) -> tuple[DepthMap | None, list[str]]:
    """The depth map a phone embedded in the photo at `path`, fitted to width×height.

    Returns (depth, notes): depth is None when the file holds none, or holds one that cannot
    be used; notes then say what was found and why it was ignored. With `strict` (the user
    named this file as the depth source) an unusable or missing depth raises BokehkitError
    instead."""
    path = Path(path)
    notes: list[str] = []
    try:
        depth = _read(path)
        if depth is None:
            if strict:
                raise BokehkitError(f"{path.name} holds no depth map a phone recorded")
            return None, notes
        h, w = depth.shape
        if (w, h) != (width, height):
            same = abs(w / h - width / height) <= 0.02 * (width / height)
            turned = abs(h / w - width / height) <= 0.02 * (width / height)
            if not same and turned:
                raise _Skip(
                    f"its {w}×{h} depth map is turned against the {width}×{height} photo "
                    "(the photo was rotated after it was taken)"
                )
            if not same:
                raise _Skip(f"its {w}×{h} depth map does not fit the {width}×{height} photo")
            depth = fit_to_image(depth, width, height)
        return depth, notes
    except _Skip as exc:
        message = f"the depth embedded in {path.name} was ignored: {exc}"
        if strict:
            raise BokehkitError(message) from None
        notes.append(f"note: {message}")
        return None, notes


def _read(path: Path) -> DepthMap | None:
    if path.suffix.lower() in HEIF_SUFFIXES:
        return _read_heif(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise BokehkitError(f"{path}: cannot read file ({exc.strerror or exc})") from exc
    if not data.startswith(b"\xff\xd8"):
        return None  # only JPEG carries GDepth / Dynamic Depth
    main, extended, primary_end = _jpeg_xmp(data)
    if main is not None:
        props = _xmp_tree(main, "XMP")
        gdepth = _props_anywhere(props, NS_GDEPTH)
        if gdepth:
            guid = _props_anywhere(props, NS_XMPNOTE).get("HasExtendedXMP")
            if "Data" not in gdepth:
                tree = _extended_tree(extended, guid, len(data))
                gdepth.update(_props_anywhere(tree, NS_GDEPTH))
            return _gdepth(gdepth, path.name)
        dd = _dynamic_depth_props(props)
        if dd is not None:
            return _dynamic_depth(data, primary_end, props, dd, path.name)
    return _apple_mpf(data, path.name)  # iPhones write no XMP on the photo itself


# ---------------------------------------------------------------------------------- JPEG


def _jpeg_xmp(data: bytes) -> tuple[bytes | None, dict[str, dict[int, bytes]], int]:
    """(main XMP packet, extended XMP chunks by GUID and offset (with the full length under
    key -1), end of the primary JPEG). Metadata segments all come before the first scan."""
    main: bytes | None = None
    extended: dict[str, dict[int, bytes]] = {}
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            break  # not a marker: a damaged file; keep what was read
        marker = data[i + 1]
        if marker == 0xFF:  # fill byte
            i += 1
            continue
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xDA, 0xD9):
            break
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if length < 2:
            break
        seg = data[i + 4 : i + 2 + length]
        if marker == 0xE1 and seg.startswith(XMP_HEADER) and main is None:
            main = seg[len(XMP_HEADER) :]
        elif marker == 0xE1 and seg.startswith(XMP_EXT_HEADER):
            body = seg[len(XMP_EXT_HEADER) :]
            if len(body) >= 40:
                guid = body[:32].decode("ascii", "replace")
                full = int.from_bytes(body[32:36], "big")
                offset = int.from_bytes(body[36:40], "big")
                chunks = extended.setdefault(guid, {})
                chunks[-1] = full.to_bytes(4, "big")
                chunks[offset] = body[40:]
        i += 2 + length
    eoi = data.find(b"\xff\xd9", i)
    return main, extended, (eoi + 2 if eoi >= 0 else n)


def _extended_tree(
    extended: dict[str, dict[int, bytes]], guid: str | None, file_size: int
) -> ET.Element | None:
    if not extended:
        return None
    if guid is None or guid not in extended:
        if len(extended) != 1:
            raise _Skip("its extended XMP does not match the GUID the main XMP names")
        guid = next(iter(extended))
    chunks = dict(extended[guid])
    full = int.from_bytes(chunks.pop(-1), "big")
    # The chunks are in the file: a declared length beyond the file's is a lie, refused
    # before anything of that length is allocated.
    if full > file_size:
        raise _Skip(
            f"its extended XMP declares {full} bytes, more than the whole file ({file_size})"
        )
    buf = bytearray(full)
    covered = 0
    for offset, chunk in sorted(chunks.items()):
        if offset + len(chunk) > full:
            raise _Skip("its extended XMP has a chunk beyond its stated length")
        buf[offset : offset + len(chunk)] = chunk
        covered += len(chunk)
    if covered != full:
        raise _Skip(f"its extended XMP is incomplete ({covered} of {full} bytes)")
    return _xmp_tree(bytes(buf), "extended XMP")


# ----------------------------------------------------------------------------------- XMP


def _xmp_tree(packet: bytes, what: str) -> ET.Element:
    text = packet.strip(b"\x00 \t\r\n")
    start = text.find(b"<x:xmpmeta")
    if start < 0:
        start = text.find(b"<rdf:RDF")
    end_tags = [text.rfind(t) + len(t) for t in (b"</x:xmpmeta>", b"</rdf:RDF>") if t in text]
    if start < 0 or not end_tags:
        raise _Skip(f"its {what} is not an XMP packet")
    try:
        return ET.fromstring(text[start : max(end_tags)])
    except ET.ParseError as exc:
        raise _Skip(f"its {what} cannot be parsed ({exc})") from None


def _props(elem: ET.Element, ns: str) -> dict[str, str]:
    """The simple properties of `elem` in namespace `ns`: attributes and text-only children."""
    prefix = "{" + ns + "}"
    out = {k[len(prefix) :]: v for k, v in elem.attrib.items() if k.startswith(prefix)}
    for child in elem:
        if child.tag.startswith(prefix) and len(child) == 0:
            out.setdefault(child.tag[len(prefix) :], (child.text or "").strip())
    return out


def _props_anywhere(root: ET.Element | None, ns: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if root is None:
        return out
    for elem in root.iter():
        for k, v in _props(elem, ns).items():
            out.setdefault(k, v)
    return out


def _number(props: dict[str, str], key: str, fmt: str) -> float:
    raw = props.get(key)
    if raw is None:
        raise _Skip(f"its {fmt} depth has no {key} value")
    try:
        value = float(raw)
    except ValueError:
        raise _Skip(f"its {fmt} {key} is not a number ({raw[:20]!r})") from None
    if not np.isfinite(value):
        raise _Skip(f"its {fmt} {key} is not finite")
    return value


# ------------------------------------------------------------------------- depth decoding


def _decode_depth_image(blob: bytes, what: str) -> np.ndarray:
    """A depth image (PNG/JPEG, 8 or 16 bit) as float32 in [0, 1]."""
    from ..io.encoding import open_pillow

    try:
        with open_pillow(io.BytesIO(blob), what) as im:
            im.load()
            mode = im.mode
            if mode in ("I;16", "I;16B", "I;16L", "I"):
                arr = np.asarray(im).astype(np.float32) / 65535.0
            elif mode == "F":
                arr = np.asarray(im, dtype=np.float32)
            else:
                arr = np.asarray(im.convert("L")).astype(np.float32) / 255.0
    except BokehkitError as exc:  # over the pixel limit
        raise _Skip(str(exc)) from None
    except Exception as exc:  # noqa: BLE001 - any decoder failure means "unusable"
        raise _Skip(f"its {what} cannot be decoded ({type(exc).__name__})") from None
    if arr.ndim != 2 or min(arr.shape) < 2:
        raise _Skip(f"its {what} is not a 2-D map")
    return np.clip(arr, 0.0, 1.0)


def _ranged(data, kind, near, range_m, label) -> DepthMap:
    """depth._ranged, with a range it refuses as a reason to ignore the phone's depth."""
    try:
        return _ranged_map(data, kind, near, range_m, label)
    except BokehkitError as exc:
        raise _Skip(str(exc)) from None


def _ranged_depth(
    d_n: np.ndarray, fmt: str, near: float, far: float, units: str | None, label: str
) -> DepthMap:
    """Google's normalised depth (0 = near) to a DepthMap: metric when the units are known,
    else relative disparity near/d (zero at infinity) from the Near/Far ratio."""
    if fmt not in ("RangeInverse", "RangeLinear"):
        raise _Skip(f"its depth format {fmt!r} is unknown (RangeInverse or RangeLinear)")
    if not 0 < near < far:
        raise _Skip(f"its depth range is not 0 < near < far ({near:g}, {far:g})")
    kind = "disparity" if fmt == "RangeInverse" else "depth"
    scale = _METRES.get((units or "").strip().lower())
    if scale is not None:
        found = _ranged(d_n, kind, "dark", (near * scale, far * scale), label)
        found.source = (
            f"{label} ({fmt}, {near * scale:.3g}–{far * scale:.3g} m, recorded by the phone)"
        )
        return found
    rel = _ranged(d_n, kind, "dark", (1.0, far / near), label)  # in units of Near
    why = f"units {units!r}" if units else "no units"
    return DepthMap(
        rel.inverse_depth, False, f"{label} ({fmt}, {why}: relative, recorded by the phone)"
    )


def _gdepth(props: dict[str, str], name: str) -> DepthMap:
    fmt = props.get("Format", "")
    near, far = _number(props, "Near", "GDepth"), _number(props, "Far", "GDepth")
    data = props.get("Data")
    if not data:
        raise _Skip("its GDepth XMP has no depth image (GDepth:Data)")
    try:
        packed = re.sub(rb"\s+", b"", data.encode("ascii", "replace"))
        blob = base64.b64decode(packed, validate=True)
    except (binascii.Error, ValueError):
        raise _Skip("its GDepth:Data is not valid base64") from None
    d_n = _decode_depth_image(blob, f"GDepth image ({props.get('Mime', 'no Mime')})")
    return _ranged_depth(d_n, fmt, near, far, props.get("Units"), f"{name}: GDepth")


def _dynamic_depth_props(root: ET.Element) -> dict[str, str] | None:
    for elem in root.iter():
        p = _props(elem, NS_DD_DEPTH)
        if "Format" in p or "DepthURI" in p:
            return p
    return None


def _dynamic_depth(
    data: bytes, primary_end: int, root: ET.Element, props: dict[str, str], name: str
) -> DepthMap:
    items = [p for p in (_props(e, NS_DD_ITEM) for e in root.iter()) if p]
    if len(items) < 2:
        raise _Skip("its Dynamic Depth container lists no items after the primary image")
    try:
        lengths = [int(p.get("Length", "0") or 0) for p in items]
        paddings = [int(p.get("Padding", "0") or 0) for p in items]
    except ValueError:
        raise _Skip("its Dynamic Depth container has a non-numeric Item:Length") from None
    if any(v < 0 for v in lengths + paddings) or any(v <= 0 for v in lengths[1:]):
        raise _Skip("its Dynamic Depth container has a missing or negative Item:Length")
    uri = props.get("DepthURI")
    index = next((i for i, p in enumerate(items) if uri and p.get("DataURI") == uri), None)
    if index is None:
        index = next((i for i, p in enumerate(items) if p.get("Semantic") == "Depth"), None)
    if index is None or index == 0:
        raise _Skip("its Dynamic Depth container has no depth item")
    # Items follow the primary image in directory order; each item's padding follows it.
    # The tail of the file is exactly the secondary items, so count back from the end;
    # where that disagrees with the primary JPEG's end (trailing bytes), use the latter.
    tail = sum(lengths[1:]) + sum(paddings[1:])
    starts = [len(data) - tail, primary_end + paddings[0]]
    blob = b""
    for first in starts:
        pos = first + sum(lengths[k] + paddings[k] for k in range(1, index))
        blob = data[pos : pos + lengths[index]]
        if len(blob) == lengths[index] and _looks_like_image(blob):
            break
    else:
        raise _Skip("its Dynamic Depth depth item is not where the container says")
    d_n = _decode_depth_image(blob, f"Dynamic Depth image ({items[index].get('Mime', '?')})")
    fmt = props.get("Format", "")
    near = _number(props, "Near", "Dynamic Depth")
    far = _number(props, "Far", "Dynamic Depth")
    return _ranged_depth(d_n, fmt, near, far, props.get("Units"), f"{name}: Dynamic Depth")


def _looks_like_image(blob: bytes) -> bool:
    return blob.startswith(b"\xff\xd8\xff") or blob.startswith(b"\x89PNG\r\n\x1a\n")


# -------------------------------------------------------------------- Apple portrait JPEG


def _apple_mpf(data: bytes, name: str) -> DepthMap | None:
    """The depth image among the MPF images after the photo, or None."""
    from PIL import Image

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            im = Image.open(io.BytesIO(data))
    except Exception:  # noqa: BLE001 - not a JPEG Pillow can open: the loader will say so
        return None
    with im:
        count = getattr(im, "n_frames", 1) if im.format == "MPO" else 1
        if count < 2:
            # Pillow falls back to the first image, with a warning, when the index is bad.
            if "mp" in im.info and _by_apple(im) and any("MPO" in str(w.message) for w in caught):
                raise _Skip("its Multi-Picture (MPF) index cannot be read")
            return None
        apple = _by_apple(im)
        unreadable = []
        for index in range(1, count):
            try:
                im.seek(index)
            except Exception:  # noqa: BLE001 - offset past the end, or no JPEG there
                unreadable.append(index)
                continue
            xmp = _frame_xmp(im)
            if xmp is None:
                continue
            what = f"MPF image {index + 1}"
            try:
                root = _xmp_tree(xmp, f"{what} XMP")
            except _Skip:
                if NS_APPLE_DEPTH.rstrip("/").encode() in xmp:
                    raise
                continue
            pixel = _props_anywhere(root, NS_APPLE_PIXEL)
            depth_props = _props_anywhere(root, NS_APPLE_DEPTH)
            names_depth = bool(depth_props) or NS_APPLE_DEPTH.rstrip("/").encode() in xmp
            kind = _apple_depth_kind(root, pixel, names_depth)
            if kind is None:
                continue
            codes = _frame_codes(im, f"Apple depth image ({what})")
            return _apple_depth(codes, kind, pixel, depth_props, f"{name}: Apple depth ({what})")
    if unreadable and apple:
        first = unreadable[0] + 1
        raise _Skip(
            f"its MPF index lists image {first} of {count}, which is not in the file (cut "
            "short or damaged), and none of the images that are there is a depth map"
        )
    return None


def _frame_xmp(im) -> bytes | None:
    """The XMP packet of the MPF image Pillow is on (``im.info`` keeps the photo's)."""
    for marker, content in im.applist:
        if marker == "APP1" and content.startswith(XMP_HEADER):
            return content[len(XMP_HEADER) :]
    return None


def _by_apple(im) -> bool:
    return str(im.getexif().get(0x010F, "")).strip().lower() == "apple"  # EXIF Make


def _apple_depth_kind(root: ET.Element, pixel: dict[str, str], names_depth: bool) -> str | None:
    """'disparity' or 'depth' for Apple's depth image, None for any other image."""
    if any(_props_anywhere(root, ns) for ns in NS_APPLE_NOT_DEPTH):
        return None
    aux = f"{pixel.get('AuxiliaryImageType', '')} {pixel.get('AuxiliaryImageSubType', '')}"
    if "matte" in aux.lower() or "gainmap" in aux.lower():
        return None
    native = APPLE_DEPTH_FORMATS.get(_fourcc(pixel.get("NativeFormat", "")))
    if native is not None:
        return native
    return "disparity" if names_depth else None  # photos store disparity (see above)


def _fourcc(value: str) -> str:
    value = value.strip()
    if value.isdigit() and int(value) < 2**32:
        return int(value).to_bytes(4, "big").decode("latin-1")
    return value


def _frame_codes(im, what: str) -> np.ndarray:
    """The stored code values of the MPF image Pillow is on, as float32."""
    try:
        check_pixels(im.size[0], im.size[1], what)
    except BokehkitError as exc:
        raise _Skip(str(exc)) from None
    try:
        im.load()
        arr = np.asarray(im)
    except Exception as exc:  # noqa: BLE001 - cut short, or lossless JPEG Pillow cannot read
        raise _Skip(f"its {what} cannot be decoded ({type(exc).__name__}: {exc})") from None
    if arr.ndim == 3:
        arr = arr[..., 0]  # a grey map stored as colour: the channels are equal
    if arr.ndim != 2 or min(arr.shape) < 2:
        raise _Skip(f"its {what} is not a 2-D map")
    return arr.astype(np.float32)


def _apple_depth(
    codes: np.ndarray, kind: str, pixel: dict[str, str], depth_props: dict[str, str], label: str
) -> DepthMap:
    accuracy = depth_props.get("Accuracy", "").strip().lower() or "not stated"
    try:
        lo_code, hi_code, lo, hi = (
            float(pixel[k])
            for k in ("IntMinValue", "IntMaxValue", "FloatMinValue", "FloatMaxValue")
        )
    except (KeyError, ValueError):
        lo_code = hi_code = lo = hi = float("nan")
    ranged = np.isfinite([lo_code, hi_code, lo, hi]).all() and hi_code > lo_code
    if ranged and not (0 <= lo < hi if kind == "disparity" else 0 < lo < hi):
        raise _Skip(f"its Apple {kind} range {lo:g}…{hi:g} is not usable")
    if not ranged:
        lo_c, hi_c = np.percentile(codes, (0.5, 99.5))
        if hi_c - lo_c < 1e-6:
            raise _Skip("its Apple depth image is flat")
        nearness = np.clip((codes - lo_c) / (hi_c - lo_c), 0.0, 1.0)
        if kind == "depth":
            nearness = 1.0 - nearness
        source = f"{label} ({kind}, no value range: relative, recorded by the phone)"
        return DepthMap(nearness.astype(np.float32), False, source)
    value = lo + (np.clip(codes, lo_code, hi_code) - lo_code) * ((hi - lo) / (hi_code - lo_code))
    inverse = value if kind == "disparity" else 1.0 / value  # 1/m
    near_m, far_m = (1 / hi, 1 / lo if lo > 0 else np.inf) if kind == "disparity" else (lo, hi)
    span = f"{near_m:.3g}–{far_m:.3g} m"
    if accuracy == "absolute":
        return DepthMap(
            inverse.astype(np.float32), True, f"{label} ({kind}, {span}, recorded by the phone)"
        )
    relative = inverse * np.float32(near_m)  # disparity over the nearest: zero at infinity
    return DepthMap(
        relative.astype(np.float32),
        False,
        f"{label} ({kind}, {span}, accuracy {accuracy}: relative, recorded by the phone)",
    )


# ---------------------------------------------------------------------------------- HEIF


def _read_heif(path: Path) -> DepthMap | None:
    try:
        import pillow_heif
    except ImportError:
        raise _Skip(
            "reading HEIF/HEIC depth needs pillow-heif (pip install -r requirements/heif.txt)"
        ) from None
    try:
        heif = pillow_heif.open_heif(str(path), convert_hdr_to_8bit=False)
        primary = heif[heif.primary_index]
        depth_images = primary.info.get("depth_images") or []
        if not depth_images:
            return None
        depth_image = depth_images[0]
        check_pixels(depth_image.size[0], depth_image.size[1], f"{path.name}: HEIF depth image")
        pil = depth_image.to_pillow()
        metadata = dict(depth_image.info.get("metadata") or {})
    except (_Skip, BokehkitError):
        raise
    except Exception as exc:  # noqa: BLE001 - libheif errors: an unreadable file
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise BokehkitError(f"{path}: cannot read HEIF depth ({reason})") from None
    if pil.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(pil).astype(np.float32) / 65535.0  # pillow-heif scales to 16 bit
    else:
        arr = np.asarray(pil.convert("L")).astype(np.float32) / 255.0
    return heif_depth_to_map(np.clip(arr, 0.0, 1.0), metadata, path.name)


def heif_depth_to_map(nearness: np.ndarray, metadata: dict, name: str) -> DepthMap:
    """A HEIF depth image (bright = near, as MPEG's depth representation and Apple's
    disparity store it) to a DepthMap, metric where the file gives z_near and z_far."""
    rep = metadata.get("representation_type")
    z_near, z_far = metadata.get("z_near"), metadata.get("z_far")
    label = f"{name}: HEIF depth image"
    if rep in (0, 2) and z_near and z_far and 0 < float(z_near) < float(z_far):
        kind = "disparity" if rep == 0 else "depth"  # uniform inverse Z, uniform Z
        found = _ranged(nearness, kind, "bright", (float(z_near), float(z_far)), label)
        found.source = f"{label} ({float(z_near):.3g}–{float(z_far):.3g} m, recorded by the phone)"
        return found
    lo, hi = np.percentile(nearness, (0.5, 99.5))
    if hi - lo < 1e-6:
        raise _Skip("its HEIF depth image is flat")
    rel = np.clip((nearness - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    return DepthMap(rel, False, f"{label} (relative disparity, near bright, recorded by the phone)")

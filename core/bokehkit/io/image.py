"""Image input/output that preserves the source's encoding.

``load_image`` decodes PNG, JPEG, TIFF and WebP (8/16-bit integer, 32-bit float; grey,
grey+alpha, RGB, RGBA) to float32 linear light and remembers everything needed to write
the result back like the source: dtype, channels, ICC profile, EXIF, transfer curve.
``encode_linear`` turns linear light back into the source's code values and
``save_image`` writes them atomically in the format named by the output's extension.

Pillow cannot hold 16-bit RGB(A), so 16-bit colour PNGs are read through Pillow's own
PNG decoder twice (high bytes, then low bytes) and written by a small numpy+zlib encoder;
TIFF goes through tifffile.
"""

from __future__ import annotations

import logging
import os
import struct
import tempfile
import warnings
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BokehkitError
from ..limits import check_pixels, max_pixels
from .colour import LINEAR, SRGB, Transfer, icc_to_srgb_pil, parse_icc, srgb_icc_profile

__all__ = [
    "LoadedImage",
    "SourceEncoding",
    "encode_linear",
    "focal_length_35mm",
    "format_for_path",
    "load_image",
    "save_image",
]

log = logging.getLogger(__name__)

_EXIF_PREFIX = b"Exif\x00\x00"
_MAXVAL = {"uint8": 255, "uint16": 65535}
# Rows are processed in blocks of about this many pixels so that float temporaries stay
# small (a few tens of MB) even for very large images.
_BLOCK_PIXELS = 1 << 20
_SUFFIX_FORMATS = {
    ".png": "PNG",
    ".jpg": "JPEG",
    ".jpeg": "JPEG",
    ".jpe": "JPEG",
    ".tif": "TIFF",
    ".tiff": "TIFF",
    ".webp": "WEBP",
}
# Descriptive IFD0 tags worth carrying into and out of TIFF files.
_IFD0_KEEP = (270, 271, 272, 274, 305, 306, 315, 33432)
_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005


@dataclass
class SourceEncoding:
    """Everything needed to write a result back like the source."""

    format: str  # 'PNG', 'JPEG', 'TIFF', 'WEBP'
    dtype: str  # 'uint8', 'uint16', 'float32'
    channels: str  # 'L', 'LA', 'RGB', 'RGBA'
    icc_profile: bytes | None
    exif: bytes | None  # TIFF-structured EXIF ('II*\0'/'MM\0*'), without the 'Exif\0\0' prefix
    transfer: Transfer  # sRGB if no profile; float data without a profile is linear
    size: tuple[int, int] = (0, 0)  # (width, height)
    dpi: tuple[float, float] | None = None
    jpeg_quality: int | None = None  # IJG-equivalent quality guessed from the tables
    jpeg_qtables: Any = None  # the source's quantisation tables, reused for JPEG output
    jpeg_subsampling: int | None = None  # Pillow's code: 0 = 4:4:4, 1 = 4:2:2, 2 = 4:2:0
    webp_lossless: bool | None = None
    converted_to_srgb: bool = False  # LUT-based profile: pixels converted, sRGB profile set
    notes: list[str] = field(default_factory=list)
    source: str = ""

    @property
    def has_alpha(self) -> bool:
        return self.channels in ("LA", "RGBA")

    @property
    def is_grey(self) -> bool:
        return self.channels in ("L", "LA")


@dataclass
class LoadedImage:
    """A decoded image: linear light plus the original code values and encoding."""

    linear_rgb: np.ndarray  # float32 H x W x 3, linear light (grey replicated)
    alpha: np.ndarray | None  # H x W, original dtype, untouched
    encoded: np.ndarray  # H x W x C colour code values (C = 1 grey, 3 RGB), original dtype
    encoding: SourceEncoding

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.linear_rgb.shape[1]), int(self.linear_rgb.shape[0])


# ----------------------------------------------------------------------------- helpers


def _row_blocks(height: int, width: int) -> Iterator[slice]:
    step = max(1, _BLOCK_PIXELS // max(1, width))
    for r in range(0, height, step):
        yield slice(r, min(height, r + step))


def _strip_exif(exif: bytes | None) -> bytes | None:
    if not exif:
        return None
    return exif[6:] if exif.startswith(_EXIF_PREFIX) else exif


def format_for_path(path: str | os.PathLike[str]) -> str:
    """Output format for a file name, from its extension; BokehkitError if unknown."""
    suffix = Path(path).suffix.lower()
    fmt = _SUFFIX_FORMATS.get(suffix)
    if fmt is None:
        raise BokehkitError(
            f"{path}: unknown image extension {suffix or '(none)'!r}; use .png, .jpg, .tif or .webp"
        )
    return fmt


def _sniff(head: bytes) -> str | None:
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "PNG"
    if head.startswith(b"\xff\xd8\xff"):
        return "JPEG"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "TIFF"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return None


def _decode_to_linear(encoded: np.ndarray, transfer: Transfer) -> np.ndarray:
    """Code values (H x W x C) -> float32 linear H x W x 3, block by block."""
    h, w, c = encoded.shape
    out = np.empty((h, w, 3), np.float32)
    maxval = _MAXVAL.get(encoded.dtype.name)
    for rows in _row_blocks(h, w):
        for ch in range(c):
            src = encoded[rows, :, ch]
            if maxval is not None:
                out[rows, :, ch] = transfer.decode_lut(ch, maxval)[src]
            elif transfer.is_identity:
                out[rows, :, ch] = src
            else:
                out[rows, :, ch] = transfer.curve(ch).to_linear(src)
        if c == 1:
            out[rows, :, 1] = out[rows, :, 0]
            out[rows, :, 2] = out[rows, :, 0]
    return out


def _transfer_for(icc: bytes | None, channels: str, dtype: str, name: str) -> tuple:
    """(transfer, use_cms) for a profile; raises for CMYK/Lab or unusable grey profiles."""
    if not icc:
        return (LINEAR if dtype == "float32" else SRGB), False
    try:
        info = parse_icc(icc)
    except ValueError:
        log.warning("%s: ignoring a malformed ICC profile, assuming sRGB", name)
        return (LINEAR if dtype == "float32" else SRGB), False
    grey = channels in ("L", "LA")
    if info.colour_space not in ("RGB", "GRAY"):
        raise BokehkitError(
            f"{name}: {info.colour_space} images are not supported; convert to RGB first"
        )
    if info.colour_space != ("GRAY" if grey else "RGB"):
        log.warning("%s: ICC profile colour space does not match the pixels; ignoring it", name)
        return (LINEAR if dtype == "float32" else SRGB), False
    if info.transfer is not None:
        return info.transfer, False
    if grey:
        raise BokehkitError(f"{name}: greyscale ICC profile without a TRC is not supported")
    return SRGB, True


# ------------------------------------------------------------------------------ loading


def load_image(path: str | os.PathLike[str]) -> LoadedImage:
    """Decode an image to float32 linear light; BokehkitError for bad input."""
    p = Path(path)
    if not p.exists():
        raise BokehkitError(f"{p}: file not found")
    if not p.is_file():
        raise BokehkitError(f"{p}: not a file")
    try:
        with open(p, "rb") as f:
            head = f.read(16)
    except OSError as exc:
        raise BokehkitError(f"{p}: cannot read file ({exc.strerror or exc})") from exc
    fmt = _sniff(head)
    if fmt is None:
        raise BokehkitError(f"{p}: not a PNG, JPEG, TIFF or WebP image")
    try:
        if fmt == "TIFF":
            raw = _read_tiff(p)
        else:
            raw = _read_pillow(p, fmt)
        return _finish_load(p, raw)
    except BokehkitError:
        raise
    except MemoryError as exc:
        raise BokehkitError(f"{p}: not enough memory to load this image") from exc
    except Exception as exc:
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BokehkitError(f"{p}: cannot read {fmt} image ({msg})") from exc


@dataclass
class _Raw:
    format: str
    pixels: np.ndarray  # H x W x C including alpha
    channels: str
    icc: bytes | None = None
    exif: bytes | None = None
    dpi: tuple[float, float] | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)


def _finish_load(p: Path, raw: _Raw) -> LoadedImage:
    px = raw.pixels
    if px.ndim == 2:
        px = px[:, :, None]
    channels = raw.channels
    has_alpha = channels in ("LA", "RGBA")
    ncol = 1 if channels in ("L", "LA") else 3
    if px.shape[2] != ncol + has_alpha:
        raise BokehkitError(f"{p}: unexpected channel layout {px.shape}")
    dtype = px.dtype.name
    if dtype not in ("uint8", "uint16", "float32"):
        raise BokehkitError(f"{p}: unsupported sample type {dtype}")
    colour = px[:, :, :ncol]
    alpha = np.ascontiguousarray(px[:, :, ncol]) if has_alpha else None
    transfer, use_cms = _transfer_for(raw.icc, channels, dtype, str(p))
    icc, notes, converted = raw.icc, list(raw.notes), False
    if use_cms:
        colour = _cms_to_srgb(colour, icc or b"", str(p))
        icc, converted = srgb_icc_profile(), True
        notes.append("LUT-based ICC profile: converted to sRGB; output carries an sRGB profile")
    encoded = np.ascontiguousarray(colour)
    linear = _decode_to_linear(encoded, transfer)
    h, w = encoded.shape[:2]
    enc = SourceEncoding(
        format=raw.format,
        dtype=dtype,
        channels=channels,
        icc_profile=icc,
        exif=_strip_exif(raw.exif),
        transfer=transfer,
        size=(w, h),
        dpi=raw.dpi,
        converted_to_srgb=converted,
        notes=notes,
        source=str(p),
        **raw.extra,
    )
    return LoadedImage(linear, alpha, encoded, enc)


def _cms_to_srgb(colour: np.ndarray, icc: bytes, name: str) -> np.ndarray:
    """Convert RGB code values through a LUT-based profile to sRGB code values."""
    from PIL import Image

    if colour.dtype == np.uint8:
        return np.asarray(icc_to_srgb_pil(Image.fromarray(colour, "RGB"), icc))
    # 16-bit/float: LittleCMS via Pillow only takes 8-bit RGB, so sample the conversion
    # on a 16^3 lattice of 8-bit codes (step 17 hits 0 and 255) and interpolate it.
    from scipy.ndimage import map_coordinates

    axis = np.arange(0, 256, 17, dtype=np.uint8)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(1, -1, 3)
    conv = np.asarray(icc_to_srgb_pil(Image.fromarray(grid, "RGB"), icc))
    lattice = conv.reshape(16, 16, 16, 3).astype(np.float32) / 255.0
    maxval = _MAXVAL.get(colour.dtype.name, 1.0)
    out = np.empty(colour.shape, colour.dtype)
    h, w = colour.shape[:2]
    for rows in _row_blocks(h, w):
        coords = colour[rows].reshape(-1, 3).T.astype(np.float32) * np.float32(15.0 / maxval)
        np.clip(coords, 0, 15, out=coords)
        for ch in range(3):
            v = map_coordinates(lattice[..., ch], coords, order=1, mode="nearest")
            if colour.dtype == np.float32:
                out[rows, :, ch] = v.reshape(out[rows, :, ch].shape)
            else:
                v = np.rint(v * maxval).reshape(out[rows, :, ch].shape)
                out[rows, :, ch] = v
    log.info("%s: converted from a LUT-based ICC profile to sRGB", name)
    return out


def _png_header(p: Path) -> tuple[int, int, int]:
    with open(p, "rb") as f:
        head = f.read(29)
    if len(head) < 29 or head[12:16] != b"IHDR":
        raise BokehkitError(f"{p}: corrupt PNG (no IHDR)")
    return head[24], head[25], head[28]  # bit depth, colour type, interlace


def _pillow_png16(p: Path, colour_type: int) -> tuple[np.ndarray, str]:
    """16-bit PNG pixels through Pillow's decoder (which unfilters in C).

    Pillow keeps only the high byte of 16-bit RGB(A).  Decoding a second time with the
    little-endian raw mode picks the other byte of each sample, i.e. the low byte.
    16-bit grey+alpha has 4 bytes per pixel, exactly like 8-bit RGBA.
    """

    def decode(rawmode: str | None) -> np.ndarray:
        with open_pillow(p, str(p)) as im:
            if rawmode is not None:
                im.tile = [
                    t._replace(args=rawmode if isinstance(t.args, str) else (rawmode, *t.args[1:]))
                    for t in im.tile
                ]
            im.load()
            return np.asarray(im)

    if colour_type == 0:
        with open_pillow(p, str(p)) as im:
            arr = np.asarray(im)
            if arr.dtype != np.uint16:
                arr = arr.astype(np.uint16)
        return arr, "L"
    if colour_type == 4:
        b = decode("RGBA")
        out = np.empty(b.shape[:2] + (2,), np.uint16)
        out[..., 0] = b[..., 0].astype(np.uint16) << 8 | b[..., 1]
        out[..., 1] = b[..., 2].astype(np.uint16) << 8 | b[..., 3]
        return out, "LA"
    mode = "RGB" if colour_type == 2 else "RGBA"
    hi = decode(None)
    lo = decode(mode + ";16L")
    out = hi.astype(np.uint16)
    out <<= 8
    out |= lo
    return out, mode


def open_pillow(p: str | os.PathLike[str] | Any, what: str):
    """Image.open with the size checked against the pixel limit before anything is decoded
    (Pillow's own bomb check is moved to the same limit)."""
    from PIL import Image

    # Pillow's own check (a warning over its limit, an error over twice that) is set to
    # ours, and stays quiet: the size is checked here, with a message that says what to do.
    Image.MAX_IMAGE_PIXELS = max_pixels()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            im = Image.open(p)
        except Image.DecompressionBombError:
            im = None
    if im is None:  # over twice the limit: Pillow does not say the size, the header does
        check_pixels(*_pil_header_size(p), what)
        raise BokehkitError(f"{what} is over the {max_pixels() / 1e6:g} MP limit")
    try:
        check_pixels(im.size[0], im.size[1], what)
    except BaseException:
        im.close()
        raise
    return im


def _pil_header_size(p) -> tuple[int, int]:
    """The size an image's header declares, read without Pillow's bomb check."""
    from PIL import Image

    saved = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        if hasattr(p, "seek"):
            p.seek(0)
        with Image.open(p) as im:
            return im.size
    finally:
        Image.MAX_IMAGE_PIXELS = saved


def _read_pillow(p: Path, fmt: str) -> _Raw:
    extra: dict[str, Any] = {}
    notes: list[str] = []
    with open_pillow(p, str(p)) as im:
        info = dict(im.info)
        mode = im.mode
        frames = getattr(im, "n_frames", 1)
        if frames > 1:
            kind = "animated PNG" if fmt == "PNG" else f"animated {fmt}"
            notes.append(f"{p.name} is an {kind} of {frames} frames: frame 1 is used")
        if fmt == "PNG":
            depth, ctype, _ = _png_header(p)
        if fmt == "PNG" and depth == 16:
            pixels, channels = _pillow_png16(p, ctype)
        else:
            if mode in ("CMYK", "LAB"):
                raise BokehkitError(f"{p}: {mode} images are not supported; convert to RGB first")
            if mode in ("P", "PA"):
                im = im.convert("RGBA" if "transparency" in info or mode == "PA" else "RGB")
            elif mode == "1":
                im = im.convert("L")
            elif mode.startswith("I;16") and mode != "I;16":
                im = im.convert("I;16")
            elif mode not in ("L", "LA", "RGB", "RGBA", "I;16"):
                raise BokehkitError(f"{p}: unsupported image mode {mode}")
            pixels = np.asarray(im)
            channels = {"I;16": "L"}.get(im.mode, im.mode)
            if fmt == "JPEG":
                from PIL import JpegImagePlugin

                qt = getattr(im, "quantization", None)
                extra["jpeg_qtables"] = dict(qt) if qt else None
                extra["jpeg_quality"] = _guess_jpeg_quality(qt)
                sampling = JpegImagePlugin.get_sampling(im)
                extra["jpeg_subsampling"] = sampling if sampling >= 0 else None
    if fmt == "WEBP":
        extra["webp_lossless"] = _webp_is_lossless(p)
    dpi = info.get("dpi")
    dpi_t = (float(dpi[0]), float(dpi[1])) if dpi else None
    raw = _Raw(fmt, pixels, channels, info.get("icc_profile"), info.get("exif"), dpi_t, extra)
    raw.notes = notes
    return raw


_IJG_LUMA = np.array(
    [16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57,
     69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55,
     64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100,
     103, 99],
    dtype=np.float64,
)  # fmt: skip


def _guess_jpeg_quality(qtables: Any) -> int | None:
    """IJG quality whose luminance table is closest in scale to the file's."""
    if not qtables or 0 not in qtables:
        return None
    q = np.asarray(qtables[0], dtype=np.float64)
    if q.size != 64:
        return None
    scale = 100.0 * q.sum() / _IJG_LUMA.sum()  # IJG scale factor S
    quality = (200.0 - scale) / 2.0 if scale <= 100.0 else 5000.0 / scale
    return int(np.clip(round(quality), 1, 100))


def _webp_is_lossless(p: Path) -> bool | None:
    with open(p, "rb") as f:
        data = f.read(1 << 16)
    pos = 12
    while pos + 8 <= len(data):
        tag = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        if tag == b"VP8L":
            return True
        if tag == b"VP8 ":
            return False
        pos += 8 + size + (size & 1)
    return None


def _read_tiff(p: Path) -> _Raw:
    import tifffile

    with tifffile.TiffFile(p) as tif:
        page = tif.pages.first
        check_pixels(page.imagewidth, page.imagelength, str(p))
        if page.imagedepth > 1 or page.size > 8 * page.imagewidth * page.imagelength:
            raise BokehkitError(f"{p}: a TIFF with {page.shape} samples is not a 2-D photo")
        photometric = int(page.photometric)
        try:
            arr = page.asarray()
        except ValueError as exc:
            if "imagecodecs" in str(exc):
                bits = int(page.bitspersample)
                return _read_tiff_pillow_fallback(p, exc, bits, int(page.samplesperpixel))
            raise
        axes = page.axes
        icc_tag = page.tags.get(34675)
        icc = bytes(icc_tag.value) if icc_tag is not None else None
        extras = tuple(int(e) for e in (page.extrasamples or ()))
        xres, yres, unit = page.tags.get(282), page.tags.get(283), page.tags.get(296)
    if "S" in axes and axes.index("S") < axes.index("Y"):
        arr = np.moveaxis(arr, axes.index("S"), -1)  # planar -> interleaved
    if arr.ndim > 3:
        arr = arr.reshape(arr.shape[-3:])
    if photometric in (5, 8, 9, 10):  # SEPARATED (CMYK), CIELAB, ICCLAB, ITULAB
        raise BokehkitError(f"{p}: CMYK/Lab TIFF images are not supported; convert to RGB first")
    if photometric not in (0, 1, 2):
        raise BokehkitError(f"{p}: unsupported TIFF photometric interpretation {photometric}")
    if arr.dtype == np.bool_:
        arr = arr.astype(np.uint8) * np.uint8(255)
    elif arr.dtype.kind == "f" and arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    elif arr.dtype not in (np.uint8, np.uint16, np.float32):
        raise BokehkitError(f"{p}: unsupported TIFF sample type {arr.dtype}")
    ncol = 3 if photometric == 2 else 1
    nch = 1 if arr.ndim == 2 else arr.shape[2]
    if nch < ncol:
        raise BokehkitError(f"{p}: TIFF has fewer samples than its colour model needs")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    if photometric == 0:  # min-is-white: flip so that the data is ordinary grey
        arr = arr.copy()
        arr[..., 0] = (1.0 - arr[..., 0]) if arr.dtype.kind == "f" else ~arr[..., 0]
    has_alpha = nch > ncol and (not extras or extras[0] in (1, 2))
    if has_alpha and extras and extras[0] == 1:
        log.warning("%s: premultiplied alpha is passed through as is", p)
    arr = arr[:, :, : ncol + has_alpha]
    channels = ("RGB" if ncol == 3 else "L") + ("A" if has_alpha else "")
    if has_alpha and channels == "L":
        channels = "LA"
    dpi = None
    unit_code = int(unit.value) if unit is not None else 2  # TIFF default: inch
    if xres is not None and yres is not None and unit_code in (2, 3):
        scale = 2.54 if unit_code == 3 else 1.0
        try:
            dpi = (_rational(xres.value) * scale, _rational(yres.value) * scale)
        except (TypeError, ZeroDivisionError, ValueError):
            dpi = None
    return _Raw("TIFF", arr, channels, icc, _tiff_exif(p), dpi)


def _read_tiff_pillow_fallback(p: Path, exc: Exception, bits: int, samples: int) -> _Raw:
    """Compressions that tifffile needs 'imagecodecs' for: Pillow (libtiff) for 8-bit."""
    with open_pillow(p, str(p)) as im:
        # Pillow would silently reduce 16-bit colour to 8 bits: refuse rather than degrade.
        exact = bits == 8 or (bits == 16 and samples == 1 and im.mode.startswith("I;16"))
        if not exact or im.mode not in ("L", "LA", "RGB", "RGBA", "I;16"):
            raise BokehkitError(
                f"{p}: this TIFF compression needs the 'imagecodecs' package for "
                f"{im.mode} data (pip install imagecodecs)"
            ) from exc
        info = dict(im.info)
        pixels = np.asarray(im)
        channels = {"I;16": "L"}.get(im.mode, im.mode)
    dpi = info.get("dpi")
    dpi_t = (float(dpi[0]), float(dpi[1])) if dpi else None
    return _Raw("TIFF", pixels, channels, info.get("icc_profile"), _tiff_exif(p), dpi_t)


def _rational(v: Any) -> float:
    if isinstance(v, tuple):
        return float(v[0]) / float(v[1])
    return float(v)


def _tiff_exif(p: Path) -> bytes | None:
    """EXIF of a TIFF as standalone bytes: descriptive IFD0 tags plus EXIF and GPS IFDs."""
    from PIL import Image

    try:
        with open(p, "rb") as f:
            src = Image.Exif()
            src.load_from_fp(f)
            out = Image.Exif()
            for tag in _IFD0_KEEP:
                if tag in src:
                    out[tag] = src[tag]
            for tag in (_EXIF_IFD, _GPS_IFD):
                if tag in src:
                    ifd = dict(src.get_ifd(tag))
                    ifd.pop(_INTEROP_IFD, None)  # its offset would dangle
                    if ifd:
                        out[tag] = ifd
        if not len(out):
            return None
        return _strip_exif(out.tobytes())
    except Exception:  # noqa: BLE001 - EXIF is optional; never fail a load over it
        log.warning("%s: could not read TIFF EXIF metadata", p)
        return None


# ----------------------------------------------------------------------------- encoding


def encode_linear(linear_rgb: np.ndarray, encoding: SourceEncoding) -> np.ndarray:
    """Linear float32 H x W x 3 -> the source's code values, H x W x C (C = 1 or 3).

    Integer output rounds in the code domain (nearest code), so for every code value v,
    ``encode_linear(decode(v)) == v``.  Grey sources get Rec. 709 luminance.
    """
    lin = np.asarray(linear_rgb)
    if lin.ndim != 3 or lin.shape[2] != 3:
        raise ValueError(f"linear_rgb must be H x W x 3, got {lin.shape}")
    h, w = lin.shape[:2]
    grey = encoding.is_grey
    nch = 1 if grey else 3
    dtype = np.dtype(encoding.dtype)
    out = np.empty((h, w, nch), dtype)
    maxval = _MAXVAL.get(dtype.name)
    weights = (0.2126, 0.7152, 0.0722)
    for rows in _row_blocks(h, w):
        if grey:
            # float64 for the sum so that replicated grey comes back bit-exact as float32
            block = lin[rows].astype(np.float64)
            planes = [(block @ np.asarray(weights)).astype(np.float32)]
        else:
            planes = [lin[rows, :, ch] for ch in range(3)]
        for ch, plane in enumerate(planes):
            plane = np.nan_to_num(np.asarray(plane, np.float32), nan=0.0)
            if maxval is not None:
                out[rows, :, ch] = encoding.transfer.encode(plane, ch, maxval)
            elif encoding.transfer.is_identity:
                out[rows, :, ch] = plane
            else:
                out[rows, :, ch] = encoding.transfer.curve(ch).from_linear(plane)
    return out


def _to_dtype(arr: np.ndarray, dst: str) -> np.ndarray:
    """Rescale code values between uint8, uint16 and float (0..1)."""
    src = arr.dtype.name
    if src == dst:
        return arr
    if dst == "float32":
        return arr.astype(np.float32) / np.float32(_MAXVAL[src])
    if src in _MAXVAL:
        if (src, dst) == ("uint8", "uint16"):
            return arr.astype(np.uint16) * np.uint16(257)
        # uint16 -> uint8, rounded: (v * 255 + 32767) // 65535
        return ((arr.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    m = _MAXVAL[dst]
    out = np.empty(arr.shape, dst)
    flat_in, flat_out = arr.reshape(-1), out.reshape(-1)
    step = _BLOCK_PIXELS * 4
    for i in range(0, flat_in.size, step):
        v = np.nan_to_num(flat_in[i : i + step].astype(np.float32), nan=0.0)
        np.clip(v, 0, 1, out=v)
        v *= np.float32(m)
        flat_out[i : i + step] = np.rint(v)
    return out


def _requantise_via_linear(pixels: np.ndarray, transfer: Transfer, dst: str) -> np.ndarray:
    """Code values under ``transfer`` -> sRGB code values of dtype ``dst`` (no profile)."""
    enc = SourceEncoding("PNG", dst, "RGB" if pixels.shape[2] == 3 else "L", None, None, SRGB)
    out = np.empty(pixels.shape, dst)
    h, w = pixels.shape[:2]
    for rows in _row_blocks(h, w):
        lin = _decode_to_linear(np.ascontiguousarray(pixels[rows]), transfer)
        if pixels.shape[2] == 1:
            out[rows] = encode_linear(lin, enc)[..., :1]
        else:
            out[rows] = encode_linear(lin, enc)
    return out


# ------------------------------------------------------------------------------- saving


_FORMAT_DTYPES = {
    "PNG": ("uint8", "uint16"),
    "JPEG": ("uint8",),
    "WEBP": ("uint8",),
    "TIFF": ("uint8", "uint16", "float32"),
}


def save_image(
    path: str | os.PathLike[str],
    encoded_pixels: np.ndarray,
    alpha: np.ndarray | None,
    encoding: SourceEncoding,
    fmt: str | None = None,
) -> None:
    """Write code values (H x W or H x W x C, C = 1 or 3) plus optional alpha atomically.

    The format follows ``fmt`` or the extension.  Data a format cannot hold is converted
    (float -> 16-bit PNG, 16-bit -> 8-bit JPEG/WebP, alpha dropped for JPEG, grey -> RGB
    for WebP); ICC profile and EXIF are kept wherever the format can carry them.
    """
    p = Path(path)
    fmt = (fmt or format_for_path(p)).upper()
    fmt = {"JPG": "JPEG", "TIF": "TIFF"}.get(fmt, fmt)
    if fmt not in _FORMAT_DTYPES:
        raise BokehkitError(f"{p}: unsupported output format {fmt}")
    if not p.parent.is_dir():
        raise BokehkitError(f"{p}: folder {p.parent} does not exist")
    pixels = np.asarray(encoded_pixels)
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    if pixels.ndim != 3 or pixels.shape[2] not in (1, 3):
        raise ValueError(f"encoded_pixels must be H x W x 1 or H x W x 3, got {pixels.shape}")
    if alpha is not None:
        alpha = np.asarray(alpha)
        if alpha.ndim == 3:
            alpha = alpha[:, :, 0]
        if alpha.shape != pixels.shape[:2]:
            raise ValueError("alpha must match the image's height and width")
    if pixels.dtype.name not in ("uint8", "uint16", "float32"):
        pixels = pixels.astype(np.float32)
    icc, exif, transfer = encoding.icc_profile, encoding.exif, encoding.transfer

    # Sample type the output format can hold.
    dst = pixels.dtype.name
    if dst not in _FORMAT_DTYPES[fmt]:
        dst = "uint16" if fmt == "PNG" else "uint8"
        if pixels.dtype == np.float32 and icc is None and transfer.is_identity:
            # Linear float without a profile would be misread as sRGB once quantised.
            pixels = _requantise_via_linear(pixels, transfer, dst)
            transfer = SRGB
        else:
            pixels = _to_dtype(pixels, dst)
    if alpha is not None and fmt == "JPEG":
        log.warning("%s: JPEG has no alpha channel; transparency is dropped", p)
        alpha = None
    if alpha is not None:
        alpha = _to_dtype(alpha, dst)
    if fmt == "WEBP" and pixels.shape[2] == 1:
        if icc is not None:  # a grey profile cannot describe RGB data: re-encode as sRGB
            pixels = _requantise_via_linear(pixels, transfer, dst)
            icc = None
        pixels = np.repeat(pixels, 3, axis=2)

    sweep_stale_temporaries(p)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(p), suffix=".tmp", dir=p.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        if fmt == "TIFF":
            _write_tiff(tmp, pixels, alpha, icc, exif, encoding.dpi)
        elif fmt == "PNG" and dst == "uint16":
            _write_png16(tmp, pixels, alpha, icc, exif, encoding.dpi)
        else:
            _write_pillow(tmp, fmt, pixels, alpha, icc, exif, encoding)
        _match_permissions(tmp, p)
        _fsync(tmp)  # on disk before the name points at it: a crash leaves old or new
        os.replace(tmp, p)
    except BaseException as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, (BokehkitError, KeyboardInterrupt, SystemExit, ValueError)):
            raise
        msg = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BokehkitError(f"{p}: cannot write {fmt} image ({msg})") from exc


def _temp_prefix(p: Path) -> str:
    """Temporary files are named after the process writing them, ``.NAME.<pid>.…tmp``,
    so that one left by a killed process can be told from one being written."""
    return f".{p.name}.{os.getpid()}."


def sweep_stale_temporaries(p: Path) -> None:
    """Remove the temporaries of `p` that killed processes left in its folder."""
    from ..processes import pid_alive

    prefix = f".{p.name}."
    try:
        entries = list(os.scandir(p.parent))
    except OSError:
        return
    for entry in entries:
        name = entry.name
        if not (name.startswith(prefix) and name.endswith(".tmp")):
            continue
        pid = name[len(prefix) :].split(".", 1)[0]
        if pid.isdigit() and int(pid) != os.getpid() and not pid_alive(int(pid)):
            try:
                if entry.is_file(follow_symlinks=False):
                    os.unlink(entry.path)
            except OSError:
                pass


def probe_writable(p: Path) -> None:
    """BokehkitError when no file can be made in `p`'s folder (read-only, no permission,
    no space or inodes left): checked before a render, not after it."""
    try:
        fd, probe = tempfile.mkstemp(prefix=_temp_prefix(p), suffix=".tmp", dir=p.parent)
    except OSError as exc:
        raise BokehkitError(
            f"cannot write in the output folder {p.parent} ({exc.strerror or exc})"
        ) from None
    os.close(fd)
    os.unlink(probe)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _match_permissions(tmp: Path, final: Path) -> None:
    # mkstemp creates 0600; give the result the mode a normal open() would.
    try:
        mode = final.stat().st_mode & 0o777
    except OSError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)


def _write_pillow(
    tmp: Path,
    fmt: str,
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    icc: bytes | None,
    exif: bytes | None,
    encoding: SourceEncoding,
) -> None:
    from PIL import Image

    arr = pixels if alpha is None else np.concatenate([pixels, alpha[:, :, None]], axis=2)
    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[arr.shape[2]]
    img = Image.fromarray(arr[:, :, 0] if mode == "L" else arr, mode)
    kw: dict[str, Any] = {}
    if icc:
        kw["icc_profile"] = icc
    if exif:
        kw["exif"] = _EXIF_PREFIX + exif  # Pillow strips it again where the format wants
    if encoding.dpi and fmt in ("PNG", "JPEG"):
        kw["dpi"] = encoding.dpi
    if fmt == "JPEG":
        if encoding.format == "JPEG" and encoding.jpeg_qtables:
            kw["qtables"] = encoding.jpeg_qtables
            if encoding.jpeg_subsampling is not None:
                kw["subsampling"] = encoding.jpeg_subsampling
        else:
            kw["quality"] = 95
            kw["subsampling"] = 0
    elif fmt == "WEBP":
        lossless = encoding.webp_lossless if encoding.format == "WEBP" else True
        kw.update(lossless=bool(lossless), quality=100 if lossless else 90, exact=True)
    elif fmt == "PNG":
        kw["compress_level"] = 6
    img.save(tmp, format=fmt, **kw)


# PNG writer for 16-bit data (Pillow cannot hold 16-bit RGB).


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def _filter_rows(raw: np.ndarray, bpp: int, ftype: int) -> np.ndarray:
    """Apply one PNG filter to a block of scanlines (uint8 rows x bytes), vectorised.

    Encoding only needs the unfiltered data, so every filter vectorises; the first
    row of the block needs the previous block's last row, passed as raw[0].
    """
    cur = raw[1:].astype(np.int16)
    prev = raw[:-1].astype(np.int16)
    left = np.zeros_like(cur)
    left[:, bpp:] = cur[:, :-bpp]
    if ftype == 0:
        pred = np.zeros_like(cur)
    elif ftype == 1:
        pred = left
    elif ftype == 2:
        pred = prev
    elif ftype == 3:
        pred = (left + prev) >> 1
    else:
        upleft = np.zeros_like(cur)
        upleft[:, bpp:] = prev[:, :-bpp]
        pa = np.abs(prev - upleft)
        pb = np.abs(left - upleft)
        pc = np.abs(left + prev - 2 * upleft)
        pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
    res = ((cur - pred) & 0xFF).astype(np.uint8)
    return np.concatenate([np.full((res.shape[0], 1), ftype, np.uint8), res], axis=1)


def _write_png16(
    tmp: Path,
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    icc: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None,
    png_filter: int = 4,
) -> None:
    h, w, c = pixels.shape
    nch = c + (alpha is not None)
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[nch]
    bpp = 2 * nch
    out = [
        b"\x89PNG\r\n\x1a\n",
        _png_chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, ctype, 0, 0, 0)),
    ]
    if icc:
        out.append(_png_chunk(b"iCCP", b"ICC Profile\x00\x00" + zlib.compress(icc)))
    if dpi:
        ppm = [round(d / 0.0254) for d in dpi]
        out.append(_png_chunk(b"pHYs", struct.pack(">IIB", ppm[0], ppm[1], 1)))
    if exif:
        out.append(_png_chunk(b"eXIf", exif))
    comp = zlib.compressobj(6)
    idat: list[bytes] = []
    prev_row = np.zeros((1, w * bpp), np.uint8)
    for rows in _row_blocks(h, w):
        block = np.empty((rows.stop - rows.start, w, nch), ">u2")
        block[..., :c] = pixels[rows]
        if alpha is not None:
            block[..., c] = alpha[rows]
        raw = block.view(np.uint8).reshape(block.shape[0], w * bpp)
        filtered = _filter_rows(np.concatenate([prev_row, raw]), bpp, png_filter)
        prev_row = raw[-1:]
        idat.append(comp.compress(filtered.tobytes()))
    idat.append(comp.flush())
    data = b"".join(idat)
    for i in range(0, max(len(data), 1), 1 << 24):  # keep IDAT chunks well under 2^31
        out.append(_png_chunk(b"IDAT", data[i : i + (1 << 24)]))
    out.append(_png_chunk(b"IEND", b""))
    with open(tmp, "wb") as f:
        f.writelines(out)


def _write_tiff(
    tmp: Path,
    pixels: np.ndarray,
    alpha: np.ndarray | None,
    icc: bytes | None,
    exif: bytes | None,
    dpi: tuple[float, float] | None,
) -> None:
    import tifffile
    from PIL import Image

    arr = pixels if alpha is None else np.concatenate([pixels, alpha[:, :, None]], axis=2)
    if arr.shape[2] == 1:
        arr = arr[:, :, 0]
    photometric = "rgb" if pixels.shape[2] == 3 else "minisblack"
    extratags: list[tuple] = []
    if icc:
        extratags.append((34675, 7, len(icc), icc, True))
    exif_ifd: dict[int, Any] = {}
    if exif:
        ex = Image.Exif()
        ex.load(exif)
        for tag in _IFD0_KEEP:
            val = ex.get(tag)
            if isinstance(val, str) and val:
                extratags.append((tag, "s", 0, val, True))
            elif tag == 274 and isinstance(val, int):
                extratags.append((tag, "H", 1, val, True))
        exif_ifd = dict(ex.get_ifd(_EXIF_IFD))
        exif_ifd.pop(_INTEROP_IFD, None)
        if exif_ifd:
            # tifffile refuses to write tag 34665 itself: write a placeholder with the
            # neighbouring code (same sort position) and patch code and value afterwards.
            extratags.append((_EXIF_IFD - 1, "I", 1, 0, True))
    kw: dict[str, Any] = {}
    if dpi:
        kw.update(resolution=(float(dpi[0]), float(dpi[1])), resolutionunit="INCH")
    tifffile.imwrite(
        tmp,
        arr,
        photometric=photometric,
        extrasamples=("unassalpha",) if alpha is not None else None,
        compression="zlib",
        predictor=arr.dtype != np.float32,
        software=False,
        metadata=None,
        extratags=sorted(extratags, key=lambda t: t[0]),
        byteorder="<",
        **kw,
    )
    if exif_ifd:
        _append_exif_ifd(tmp, exif_ifd)


def _append_exif_ifd(tmp: Path, exif_ifd: dict[int, Any]) -> None:
    """Append an EXIF IFD to a little-endian classic TIFF and point tag 34665 at it."""
    from PIL import TiffImagePlugin

    with open(tmp, "r+b") as f:
        head = f.read(8)
        (ifd0,) = struct.unpack_from("<I", head, 4)
        f.seek(ifd0)
        (count,) = struct.unpack("<H", f.read(2))
        entries = f.read(12 * count)
        slot = None
        for i in range(count):
            (tag,) = struct.unpack_from("<H", entries, 12 * i)
            if tag == _EXIF_IFD - 1:
                slot = ifd0 + 2 + 12 * i
        if slot is None:
            return
        end = f.seek(0, os.SEEK_END)
        if end % 2:
            f.write(b"\x00")
            end += 1
        ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
        for tag, val in exif_ifd.items():
            ifd[tag] = val
        f.write(ifd.tobytes(end))
        f.seek(slot)
        f.write(struct.pack("<HHII", _EXIF_IFD, 4, 1, end))


# --------------------------------------------------------------------------------- EXIF


def focal_length_35mm(encoding: SourceEncoding) -> float | None:
    """35 mm-equivalent focal length from EXIF, or None if it cannot be derived."""
    if not encoding.exif:
        return None
    from PIL import Image

    try:
        ex = Image.Exif()
        ex.load(encoding.exif)
        ifd = ex.get_ifd(_EXIF_IFD)
    except Exception:  # noqa: BLE001 - unreadable EXIF simply means "unknown"
        return None
    f35 = ifd.get(0xA405)
    if f35 and float(f35) > 0:
        return float(f35)
    focal = ifd.get(0x920A)
    xres, yres, unit = ifd.get(0xA20E), ifd.get(0xA20F), ifd.get(0xA210, 2)
    try:
        if not focal or not xres or float(focal) <= 0 or float(xres) <= 0:
            return None
        yres = yres if yres and float(yres) > 0 else xres
        mm_per_unit = {1: 25.4, 2: 25.4, 3: 10.0, 4: 1.0, 5: 0.001}.get(int(unit))
        if mm_per_unit is None:
            return None
        w = ifd.get(0xA002) or encoding.size[0]
        h = ifd.get(0xA003) or encoding.size[1]
        if not w or not h:
            return None
        sensor_w = float(w) / float(xres) * mm_per_unit
        sensor_h = float(h) / float(yres) * mm_per_unit
        diag = float(np.hypot(sensor_w, sensor_h))
        if diag <= 0:
            return None
        return float(focal) * 43.2666 / diag  # 43.27 mm: the 36 x 24 mm diagonal
    except (TypeError, ValueError, ZeroDivisionError):
        return None

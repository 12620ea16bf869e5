"""TIFF through tifffile (8/16-bit, float32; Pillow as a fallback for what tifffile cannot
read), with ICC profile, EXIF and resolution carried into the result.
"""

from __future__ import annotations

import logging
import os
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BokehkitError
from ..limits import check_pixels
from .encoding import _Raw, open_pillow
from .exif import _EXIF_IFD, _GPS_IFD, _IFD0_KEEP, _INTEROP_IFD, _strip_exif

log = logging.getLogger(__name__)


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

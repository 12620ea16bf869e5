"""EXIF: the TIFF-structured block carried from source to result, and the focal length in it."""

from __future__ import annotations

import numpy as np

from .encoding import SourceEncoding

_EXIF_PREFIX = b"Exif\x00\x00"

# Descriptive IFD0 tags worth carrying into and out of TIFF files.
_IFD0_KEEP = (270, 271, 272, 274, 305, 306, 315, 33432)

_EXIF_IFD, _GPS_IFD, _INTEROP_IFD = 0x8769, 0x8825, 0xA005


def _strip_exif(exif: bytes | None) -> bytes | None:
    if not exif:
        return None
    return exif[6:] if exif.startswith(_EXIF_PREFIX) else exif


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

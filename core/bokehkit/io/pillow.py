"""PNG (8-bit), JPEG and WebP read and written through Pillow, with ICC profile, EXIF,
DPI and the source's JPEG tables and WebP mode kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BokehkitError
from .encoding import SourceEncoding, _Raw, open_pillow
from .exif import _EXIF_PREFIX
from .jpeg import _guess_jpeg_quality
from .png import _pillow_png16, _png_header
from .webp import _webp_is_lossless


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

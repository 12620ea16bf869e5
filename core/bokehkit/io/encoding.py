"""What a decoded image is and how its file stored it (`SourceEncoding`, `LoadedImage`), the
record every reader returns, formats told by extension and by their first bytes, and
Pillow's `Image.open` within the engine's pixel limit.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import BokehkitError
from ..limits import check_pixels, max_pixels
from .colour import Transfer

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


def _row_blocks(height: int, width: int) -> Iterator[slice]:
    step = max(1, _BLOCK_PIXELS // max(1, width))
    for r in range(0, height, step):
        yield slice(r, min(height, r + step))


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

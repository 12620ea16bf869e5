"""BKRAW1 raw pixel buffers (see docs/protocol.md), the engine's numpy side.

A buffer is ``b"BKRAW1\\n" + <one line of JSON header> + b"\\n" + <pixels>``. This module
reads and writes them, and turns an image buffer into a `LoadedImage` (linear light, code
values and an encoding to write the result back the same way) and back.

The format's rules (magic, channels, dtypes, orders, transfers, the header check) are
written once, in the stdlib-only ``plugin/bokehkit_plugin/rawbuffer.py`` that the plug-ins
use too; this module adds the numpy side and the engine's pixel limit.
"""

from __future__ import annotations

import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bokehkit_plugin import rawbuffer as contract
from bokehkit_plugin.rawbuffer import CHANNELS, MAGIC, MAX_HEADER

from ..errors import BokehkitError
from ..limits import check_pixels
from .colour import LINEAR, SRGB, linear_to_srgb, srgb_to_linear
from .image import LoadedImage, SourceEncoding


@dataclass
class RawBuffer:
    """Pixels as H×W×C in the buffer's own dtype and channel order, plus the header."""

    pixels: np.ndarray
    channels: str = "RGBA"
    order: str = "RGBA"
    transfer: str = "srgb"

    @property
    def dtype(self) -> str:
        return self.pixels.dtype.name

    @property
    def size(self) -> tuple[int, int]:
        """(width, height)."""
        return int(self.pixels.shape[1]), int(self.pixels.shape[0])

    def header(self) -> dict:
        w, h = self.size
        return {
            "width": w,
            "height": h,
            "channels": self.channels,
            "order": self.order,
            "dtype": self.dtype,
            "transfer": self.transfer,
            "byteorder": "little",
        }


def parse_header(header: dict, name: str = "buffer") -> tuple[int, int, str, str, str, str, str]:
    """Check a header (the format's rules, then the engine's pixel limit); returns (width,
    height, channels, order, dtype, transfer, byteorder)."""
    try:
        checked = contract.check_header(header, name)
    except contract.BufferError as exc:
        raise BokehkitError(str(exc)) from None
    check_pixels(checked.width, checked.height, name)
    return (
        checked.width, checked.height, checked.channels, checked.order, checked.dtype,
        checked.transfer, checked.byteorder,
    )  # fmt: skip


@dataclass
class _Layout:
    """What a header says: where the pixels start and how they are stored."""

    start: int  # offset of the first pixel byte
    width: int
    height: int
    channels: str
    order: str
    dtype: str
    transfer: str
    stored: np.dtype  # the pixel dtype with the header's byte order

    @property
    def count(self) -> int:
        return self.width * self.height * CHANNELS[self.channels]

    @property
    def nbytes(self) -> int:
        return self.count * self.stored.itemsize

    def check_length(self, pixel_bytes: int, name: str) -> None:
        if pixel_bytes != self.nbytes:
            raise BokehkitError(
                f"{name}: {pixel_bytes} pixel bytes, expected {self.nbytes} for "
                f"{self.width}×{self.height} {self.channels} {self.dtype} (truncated file?)"
            )

    def native(self, pixels: np.ndarray) -> RawBuffer:
        pixels = pixels.reshape(self.height, self.width, CHANNELS[self.channels])
        if pixels.dtype != np.dtype(self.dtype) or not pixels.flags.writeable:
            pixels = pixels.astype(np.dtype(self.dtype), copy=True)  # native, writable
        return RawBuffer(pixels, self.channels, self.order, self.transfer)


def _layout(head: bytes, name: str) -> _Layout:
    """Parse the magic and header at the start of a buffer (`head`: its first bytes)."""
    if head[: len(MAGIC)] != MAGIC:
        raise BokehkitError(f"{name}: not a BKRAW1 buffer")
    end = head[len(MAGIC) : len(MAGIC) + MAX_HEADER].find(b"\n")
    if end < 0:
        raise BokehkitError(f"{name}: BKRAW1 header is not terminated")
    start = len(MAGIC) + end + 1
    try:
        header = json.loads(head[len(MAGIC) : start - 1])
    except (ValueError, RecursionError):
        raise BokehkitError(f"{name}: BKRAW1 header is not JSON") from None
    w, h, channels, order, dtype, transfer, byteorder = parse_header(header, name)
    stored = np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")
    return _Layout(start, w, h, channels, order, dtype, transfer, stored)


def from_bytes(data: bytes | memoryview, name: str = "buffer") -> RawBuffer:
    """Decode a whole buffer held in memory."""
    data = memoryview(data)
    layout = _layout(bytes(data[: len(MAGIC) + MAX_HEADER]), name)
    layout.check_length(len(data) - layout.start, name)
    return layout.native(np.frombuffer(data, layout.stored, layout.count, layout.start))


def read_buffer_from(f, name: str) -> RawBuffer:
    """Read a buffer from an open binary file: only a regular file, only as many bytes as
    its header says (checked against the pixel limit and the file's size first)."""
    info = os.fstat(f.fileno())
    if not stat.S_ISREG(info.st_mode):
        raise BokehkitError(f"{name}: not a regular file")
    layout = _layout(f.read(len(MAGIC) + MAX_HEADER), name)
    layout.check_length(info.st_size - layout.start, name)
    f.seek(layout.start)
    pixels = np.empty(layout.count, layout.stored)
    if f.readinto(memoryview(pixels).cast("B")) != layout.nbytes:
        raise BokehkitError(f"{name}: the file changed while it was read")
    return layout.native(pixels)


def to_bytes(buf: RawBuffer) -> bytes:
    """Encode a buffer (always little-endian)."""
    header = json.dumps(buf.header(), separators=(",", ":")).encode()
    pixels = np.ascontiguousarray(buf.pixels, dtype=np.dtype(buf.dtype).newbyteorder("<"))
    return MAGIC + header + b"\n" + pixels.tobytes()


def read_buffer(path: str | os.PathLike) -> RawBuffer:
    """Read a buffer file; BokehkitError with the file name when it is not a valid one."""
    try:
        # O_NONBLOCK: a FIFO must not hang the open; read_buffer_from refuses it.
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0))
    except OSError as exc:
        raise BokehkitError(f"{path}: cannot read buffer ({exc.strerror or exc})") from None
    with os.fdopen(fd, "rb") as f:
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return read_buffer_from(f, str(path))


def write_buffer(path: str | os.PathLike, buf: RawBuffer) -> None:
    """Write atomically: a temporary name in the same folder, then a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(to_bytes(buf))
            f.flush()
            os.fsync(f.fileno())  # the data is on disk before the name points at it
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# ------------------------------------------------------------------ buffer <-> LoadedImage


def _colour_and_alpha(buf: RawBuffer) -> tuple[np.ndarray, np.ndarray | None]:
    """Split into colour (RGB order, or one grey channel) and alpha."""
    px = buf.pixels
    ncol = 1 if buf.channels in ("Y", "YA") else 3
    colour = px[:, :, :ncol]
    if ncol == 3 and buf.order == "BGRA":
        colour = colour[:, :, ::-1]
    alpha = px[:, :, ncol] if buf.channels in ("RGBA", "YA") else None
    return np.ascontiguousarray(colour), (None if alpha is None else np.ascontiguousarray(alpha))


def _full_scale(dtype: np.dtype) -> float:
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def to_linear(colour: np.ndarray, transfer: str) -> np.ndarray:
    """Code values (H×W×1 or H×W×3, RGB order) -> float32 linear RGB, H×W×3."""
    x = colour.astype(np.float32) / np.float32(_full_scale(colour.dtype))
    linear = srgb_to_linear(x) if transfer == "srgb" else x
    return np.repeat(linear, 3, axis=2) if linear.shape[2] == 1 else linear


def buffer_to_image(buf: RawBuffer, name: str = "image") -> LoadedImage:
    """An image buffer as the pipeline's LoadedImage: linear RGB, alpha kept untouched.

    float16 is rendered as float32 and converted back when the result is written.
    """
    colour, alpha = _colour_and_alpha(buf)
    if colour.dtype == np.float16:
        colour = colour.astype(np.float32)
    linear = to_linear(colour, buf.transfer)
    w, h = buf.size
    grey = buf.channels in ("Y", "YA")
    encoding = SourceEncoding(
        format="BKRAW",
        dtype=colour.dtype.name,
        channels=("L" if grey else "RGB") + ("A" if alpha is not None else ""),
        icc_profile=None,
        exif=None,
        transfer=SRGB if buf.transfer == "srgb" else LINEAR,
        size=(w, h),
        source=name,
    )
    return LoadedImage(linear, alpha, colour, encoding)


def image_to_buffer(encoded: np.ndarray, alpha: np.ndarray | None, like: RawBuffer) -> RawBuffer:
    """Code values (H×W×C, RGB order) and alpha back into `like`'s channels, order and dtype."""
    colour = encoded
    if colour.shape[2] == 3 and like.order == "BGRA":
        colour = colour[:, :, ::-1]
    planes = [colour] if alpha is None else [colour, alpha[:, :, None]]
    pixels = np.concatenate(planes, axis=2).astype(like.pixels.dtype)
    return RawBuffer(pixels, like.channels, like.order, like.transfer)


def mask_from_buffer(buf: RawBuffer, name: str = "mask") -> np.ndarray:
    """A focus mask buffer as H×W float32 coverage in [0, 1] (white = sharp).

    The values are taken as coverage, whatever the transfer says: a mask is paint, not light.
    A YA mask counts only where it is opaque.
    """
    if buf.channels not in ("Y", "YA"):
        raise BokehkitError(f"{name}: a focus mask must have channels Y or YA, not {buf.channels}")
    full = np.float32(_full_scale(buf.pixels.dtype))
    mask = buf.pixels[:, :, 0].astype(np.float32) / full
    if buf.channels == "YA":
        mask *= buf.pixels[:, :, 1].astype(np.float32) / full
    return mask


def depth_from_buffer(buf: RawBuffer, name: str = "depth") -> np.ndarray:
    """A depth buffer's first channel as float32 (8/16-bit scaled to 0…1)."""
    return buf.pixels[:, :, 0].astype(np.float32) / np.float32(_full_scale(buf.pixels.dtype))


def linear_to_rgba8(linear: np.ndarray, alpha: np.ndarray | None = None) -> np.ndarray:
    """Linear RGB -> sRGB RGBA8 for display (previews in the dialog)."""
    srgb = np.clip(linear_to_srgb(np.clip(linear, 0.0, None)), 0.0, 1.0)
    out = np.empty(linear.shape[:2] + (4,), np.uint8)
    out[..., :3] = np.rint(srgb * 255.0)
    if alpha is None:
        out[..., 3] = 255
    else:
        full = _full_scale(alpha.dtype)
        out[..., 3] = np.rint(np.clip(alpha.astype(np.float32) / full, 0, 1) * 255)
    return out

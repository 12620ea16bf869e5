"""BKRAW1 raw pixel buffers (see docs/protocol.md), the engine's numpy side.

A buffer is ``b"BKRAW1\\n" + <one line of JSON header> + b"\\n" + <pixels>``. This module
reads and writes them, and turns an image buffer into a `LoadedImage` (linear light, code
values and an encoding to write the result back the same way) and back.

The plug-ins have their own stdlib-only copy of the format in
``plugin/bokehkit_plugin/rawbuffer.py``; both follow the same header rules.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .colour import LINEAR, SRGB, linear_to_srgb, srgb_to_linear
from .errors import BokehkitError
from .imageio import LoadedImage, SourceEncoding

MAGIC = b"BKRAW1\n"
CHANNELS = {"RGBA": 4, "RGB": 3, "Y": 1, "YA": 2}
DTYPES = ("uint8", "uint16", "float16", "float32")
ORDERS = ("RGBA", "BGRA")
TRANSFERS = ("linear", "srgb")
# Headers are a few hundred bytes; anything longer is not a buffer.
_MAX_HEADER = 4096


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
    """Check a header; returns (width, height, channels, order, dtype, transfer, byteorder)."""
    try:
        w, h = int(header["width"]), int(header["height"])
        channels, dtype = header["channels"], header["dtype"]
    except (KeyError, TypeError, ValueError) as exc:
        raise BokehkitError(f"{name}: header lacks a valid {exc}") from None
    order = header.get("order", "RGBA")
    transfer = header.get("transfer", "srgb")
    byteorder = header.get("byteorder", "little")
    if w <= 0 or h <= 0:
        raise BokehkitError(f"{name}: size {w}×{h} is empty")
    for key, value, allowed in (
        ("channels", channels, tuple(CHANNELS)),
        ("order", order, ORDERS),
        ("dtype", dtype, DTYPES),
        ("transfer", transfer, TRANSFERS),
        ("byteorder", byteorder, ("little", "big")),
    ):
        if value not in allowed:
            raise BokehkitError(f"{name}: {key} {value!r} is not one of {', '.join(allowed)}")
    return w, h, channels, order, dtype, transfer, byteorder


def from_bytes(data: bytes | memoryview, name: str = "buffer") -> RawBuffer:
    """Decode a whole buffer held in memory."""
    data = memoryview(data)
    if bytes(data[: len(MAGIC)]) != MAGIC:
        raise BokehkitError(f"{name}: not a BKRAW1 buffer")
    end = bytes(data[len(MAGIC) : len(MAGIC) + _MAX_HEADER]).find(b"\n")
    if end < 0:
        raise BokehkitError(f"{name}: BKRAW1 header is not terminated")
    start = len(MAGIC) + end + 1
    try:
        header = json.loads(bytes(data[len(MAGIC) : start - 1]))
    except ValueError:
        raise BokehkitError(f"{name}: BKRAW1 header is not JSON") from None
    if not isinstance(header, dict):
        raise BokehkitError(f"{name}: BKRAW1 header is not a JSON object")
    w, h, channels, order, dtype, transfer, byteorder = parse_header(header, name)
    dt = np.dtype(dtype).newbyteorder("<" if byteorder == "little" else ">")
    count = w * h * CHANNELS[channels]
    if len(data) - start != count * dt.itemsize:
        raise BokehkitError(
            f"{name}: {len(data) - start} pixel bytes, expected {count * dt.itemsize} "
            f"for {w}×{h} {channels} {dtype} (truncated file?)"
        )
    pixels = np.frombuffer(data, dt, count, start).reshape(h, w, CHANNELS[channels])
    pixels = pixels.astype(np.dtype(dtype), copy=True)  # native byte order, writable
    return RawBuffer(pixels, channels, order, transfer)


def to_bytes(buf: RawBuffer) -> bytes:
    """Encode a buffer (always little-endian)."""
    header = json.dumps(buf.header(), separators=(",", ":")).encode()
    pixels = np.ascontiguousarray(buf.pixels, dtype=np.dtype(buf.dtype).newbyteorder("<"))
    return MAGIC + header + b"\n" + pixels.tobytes()


def read_buffer(path: str | os.PathLike) -> RawBuffer:
    """Read a buffer file; BokehkitError with the file name when it is not a valid one."""
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise BokehkitError(f"{path}: cannot read buffer ({exc.strerror or exc})") from None
    return from_bytes(data, str(path))


def write_buffer(path: str | os.PathLike, buf: RawBuffer) -> None:
    """Write atomically: a temporary name in the same folder, then a rename."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(to_bytes(buf))
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

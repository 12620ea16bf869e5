"""BKRAW1 raw pixel buffers: the format's rules (written once, here) and the plug-in side's
reader and writer (stdlib only). The engine's numpy side, core/bokehkit/io/rawbuffer.py,
checks headers with `check_header` and the constants below (docs/protocol.md).

``b"BKRAW1\\n" + <one line of JSON header> + b"\\n" + <pixels, row-major, interleaved>``
"""

from __future__ import annotations

import json
import os
import struct
import sys
import tempfile
from dataclasses import dataclass

MAGIC = b"BKRAW1\n"
CHANNELS = {"RGBA": 4, "RGB": 3, "Y": 1, "YA": 2}
SAMPLE_BYTES = {"uint8": 1, "uint16": 2, "float16": 2, "float32": 4}
DTYPES = tuple(SAMPLE_BYTES)
ORDERS = ("RGBA", "BGRA")  # the channel order of colour + alpha (Krita's integers are BGRA)
TRANSFERS = ("linear", "srgb")
BYTEORDERS = ("little", "big")
#: Headers are a few hundred bytes; anything longer is not a buffer.
MAX_HEADER = 4096
_STRUCT = {"uint8": "B", "uint16": "H", "float16": "e", "float32": "f"}


class BufferError(ValueError):
    """A file or byte string that is not a valid BKRAW1 buffer."""


@dataclass(frozen=True)
class Header:
    """A checked BKRAW1 header."""

    width: int
    height: int
    channels: str
    order: str
    dtype: str
    transfer: str
    byteorder: str


def check_header(header: object, name: str = "buffer") -> Header:
    """The header's fields, checked against the format's rules (the size is not limited
    here: the engine applies its own pixel limit); BufferError naming `name` if bad."""
    if not isinstance(header, dict):
        raise BufferError(f"{name}: BKRAW1 header is not a JSON object")
    try:
        width, height = int(header["width"]), int(header["height"])
        channels, dtype = header["channels"], header["dtype"]
    except (KeyError, TypeError, ValueError, OverflowError) as exc:
        raise BufferError(f"{name}: header lacks a valid {exc}") from None
    order = header.get("order", "RGBA")
    transfer = header.get("transfer", "srgb")
    byteorder = header.get("byteorder", "little")
    for key, value, allowed in (
        ("channels", channels, tuple(CHANNELS)),
        ("order", order, ORDERS),
        ("dtype", dtype, DTYPES),
        ("transfer", transfer, TRANSFERS),
        ("byteorder", byteorder, BYTEORDERS),
    ):
        if not isinstance(value, str) or value not in allowed:
            raise BufferError(f"{name}: {key} {value!r} is not one of {', '.join(allowed)}")
    return Header(width, height, channels, order, dtype, transfer, byteorder)


@dataclass
class RawImage:
    """Pixels as the host hands them over: bytes plus what they mean."""

    width: int
    height: int
    data: bytes
    channels: str = "RGBA"
    order: str = "RGBA"  # Krita's integer formats are BGRA
    dtype: str = "uint8"
    transfer: str = "srgb"  # GIMP "RGBA float" is linear, "R'G'B'A u8" sRGB

    def __post_init__(self) -> None:
        if self.channels not in CHANNELS:
            raise BufferError(f"channels {self.channels!r} is not one of {', '.join(CHANNELS)}")
        if self.dtype not in SAMPLE_BYTES:
            raise BufferError(f"dtype {self.dtype!r} is not one of {', '.join(SAMPLE_BYTES)}")
        if self.order not in ORDERS:
            raise BufferError(f"order {self.order!r} must be RGBA or BGRA")
        if self.transfer not in TRANSFERS:
            raise BufferError(f"transfer {self.transfer!r} must be linear or srgb")
        if self.width <= 0 or self.height <= 0:
            raise BufferError(f"size {self.width}×{self.height} is empty")
        if len(self.data) != self.expected_bytes():
            raise BufferError(
                f"{len(self.data)} pixel bytes, expected {self.expected_bytes()} for "
                f"{self.width}×{self.height} {self.channels} {self.dtype}"
            )

    def expected_bytes(self) -> int:
        return self.width * self.height * CHANNELS[self.channels] * SAMPLE_BYTES[self.dtype]

    def header(self) -> dict:
        return {
            "width": self.width,
            "height": self.height,
            "channels": self.channels,
            "order": self.order,
            "dtype": self.dtype,
            "transfer": self.transfer,
            "byteorder": "little",
        }


def to_bytes(image: RawImage) -> bytes:
    """The whole buffer file as bytes (pixels are little-endian)."""
    header = json.dumps(image.header(), separators=(",", ":")).encode("utf-8")
    data = image.data
    if sys.byteorder != "little" and SAMPLE_BYTES[image.dtype] > 1:
        data = _swap(data, image.dtype)
    return MAGIC + header + b"\n" + data


def from_bytes(data: bytes, name: str = "buffer") -> RawImage:
    """Parse a buffer; BufferError naming `name` when it is not a valid one."""
    if not data.startswith(MAGIC):
        raise BufferError(f"{name}: not a BKRAW1 buffer")
    end = data.find(b"\n", len(MAGIC), len(MAGIC) + MAX_HEADER)
    if end < 0:
        raise BufferError(f"{name}: BKRAW1 header is not terminated")
    try:
        header = json.loads(data[len(MAGIC) : end].decode("utf-8"))
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise BufferError(f"{name}: bad BKRAW1 header ({exc})") from None
    h = check_header(header, name)
    pixels = data[end + 1 :]
    if h.byteorder != sys.byteorder and SAMPLE_BYTES[h.dtype] > 1:
        pixels = _swap(pixels, h.dtype)
    try:
        return RawImage(h.width, h.height, pixels, h.channels, h.order, h.dtype, h.transfer)
    except BufferError as exc:
        raise BufferError(f"{name}: {exc}") from None


def write(path: str, image: RawImage) -> None:
    """Write atomically (temporary name, then rename), so a reader never sees half a file."""
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".bkraw-", suffix=".part", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(to_bytes(image))
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read(path: str) -> RawImage:
    with open(path, "rb") as f:
        return from_bytes(f.read(), os.path.basename(path))


def _swap(data: bytes, dtype: str) -> bytes:
    size = SAMPLE_BYTES[dtype]
    out = bytearray(data)
    for k in range(size):
        out[k::size] = data[size - 1 - k :: size]
    return bytes(out)


def _srgb_encode(v: float) -> float:
    if v <= 0.0031308:
        return 12.92 * max(v, 0.0)
    return 1.055 * v ** (1.0 / 2.4) - 0.055


def to_rgba8(image: RawImage) -> bytes:
    """sRGB RGBA8888 bytes for showing the buffer in a preview (not for editing)."""
    n = image.width * image.height
    nch = CHANNELS[image.channels]
    if image.dtype == "uint8" and image.transfer == "srgb" and image.channels == "RGBA":
        if image.order == "RGBA":
            return image.data
        out = bytearray(image.data)
        out[0::4], out[2::4] = image.data[2::4], image.data[0::4]
        return bytes(out)
    samples = struct.unpack(f"<{n * nch}{_STRUCT[image.dtype]}", image.data)
    full = {"uint8": 255.0, "uint16": 65535.0}.get(image.dtype, 1.0)
    lut: dict = {}

    def code(v: float) -> int:
        hit = lut.get(v)
        if hit is None:
            x = v / full
            if image.transfer == "linear":
                x = _srgb_encode(x)
            hit = lut[v] = int(round(min(max(x, 0.0), 1.0) * 255))
        return hit

    out = bytearray(n * 4)
    grey = image.channels in ("Y", "YA")
    has_alpha = image.channels in ("RGBA", "YA")
    bgr = image.order == "BGRA" and not grey
    for i in range(n):
        s = samples[i * nch : (i + 1) * nch]
        if grey:
            r = g = b = code(s[0])
        else:
            r, g, b = code(s[0]), code(s[1]), code(s[2])
            if bgr:
                r, b = b, r
        a = int(round(min(max(s[-1] / full, 0.0), 1.0) * 255)) if has_alpha else 255
        out[i * 4 : i * 4 + 4] = bytes((r, g, b, a))
    return bytes(out)

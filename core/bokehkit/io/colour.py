"""Transfer functions and a small ICC reader.

Rendering happens in linear light.  An image is decoded by applying the tone
reproduction curve (TRC) of its ICC profile per channel; the primaries are left
alone because blurring commutes with the profile's 3x3 matrix, so rendering in the
source's own linear RGB is exact and the profile can be written back unchanged.
Only profiles without usable TRCs (LUT-based RGB) are converted to sRGB through
Pillow's ImageCms (LittleCMS).
"""

from __future__ import annotations

import io
import struct
from abc import ABC, abstractmethod
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BokehkitError

if TYPE_CHECKING:
    from PIL import Image

__all__ = [
    "LINEAR",
    "SRGB",
    "Curve",
    "IccInfo",
    "IdentityCurve",
    "ParametricCurve",
    "SRGBCurve",
    "TableCurve",
    "Transfer",
    "icc_to_srgb_pil",
    "linear_to_srgb",
    "parse_icc",
    "srgb_icc_profile",
    "srgb_to_linear",
]


def _as_float32(x: np.ndarray | float) -> np.ndarray:
    return np.asarray(x, dtype=np.float32)


def srgb_to_linear(x: np.ndarray | float) -> np.ndarray:
    """Exact piecewise sRGB EOTF (IEC 61966-2-1), float32; negatives mirror the curve."""
    x = _as_float32(x)
    a = np.abs(x)
    lo = a <= np.float32(0.04045)
    out = a + np.float32(0.055)
    out /= np.float32(1.055)
    np.power(out, np.float32(2.4), out=out)
    np.divide(a, np.float32(12.92), out=out, where=lo)
    return np.copysign(out, x, out=out)


def linear_to_srgb(y: np.ndarray | float) -> np.ndarray:
    """Exact inverse of :func:`srgb_to_linear`, float32."""
    y = _as_float32(y)
    a = np.abs(y)
    lo = a <= np.float32(0.0031308)
    out = np.power(a, np.float32(1.0 / 2.4))
    out *= np.float32(1.055)
    out -= np.float32(0.055)
    np.multiply(a, np.float32(12.92), out=out, where=lo)
    return np.copysign(out, y, out=out)


class Curve(ABC):
    """One channel's transfer: code value in [0, 1] <-> linear light."""

    is_identity = False

    @abstractmethod
    def to_linear(self, x: np.ndarray) -> np.ndarray: ...

    @abstractmethod
    def from_linear(self, y: np.ndarray) -> np.ndarray: ...

    def key(self) -> tuple:
        """Hashable description, used to spot identical channels and to cache LUTs."""
        return (type(self).__name__, id(self))


class IdentityCurve(Curve):
    is_identity = True

    def to_linear(self, x: np.ndarray) -> np.ndarray:
        return np.array(x, dtype=np.float32)

    def from_linear(self, y: np.ndarray) -> np.ndarray:
        return np.array(y, dtype=np.float32)

    def key(self) -> tuple:
        return ("identity",)


class SRGBCurve(Curve):
    def to_linear(self, x: np.ndarray) -> np.ndarray:
        return srgb_to_linear(x)

    def from_linear(self, y: np.ndarray) -> np.ndarray:
        return linear_to_srgb(y)

    def key(self) -> tuple:
        return ("srgb",)


class ParametricCurve(Curve):
    """ICC 'para' curve (function types 0-4) or a plain gamma, as the general type 4:

    Y = (aX + b)^g + e  for X >= d,   Y = cX + f  otherwise.
    """

    def __init__(self, function_type: int, params: tuple[float, ...]) -> None:
        n = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(function_type)
        if n is None or len(params) < n:
            raise ValueError(f"bad parametric curve type {function_type}")
        p = list(params[:n])
        g = p[0]
        a, b, c, d, e, f = 1.0, 0.0, 0.0, 0.0, 0.0, 0.0
        if function_type == 1:
            a, b = p[1], p[2]
            d = -b / a if a else 0.0
        elif function_type == 2:
            a, b, e = p[1], p[2], p[3]
            d, f = (-b / a if a else 0.0), e
        elif function_type == 3:
            a, b, c, d = p[1:5]
        elif function_type == 4:
            a, b, c, d, e, f = p[1:7]
        if g <= 0 or a <= 0:
            raise ValueError("degenerate parametric curve")
        self.function_type = function_type
        self.g, self.a, self.b, self.c, self.d, self.e, self.f = g, a, b, c, d, e, f

    def key(self) -> tuple:
        return ("para", self.g, self.a, self.b, self.c, self.d, self.e, self.f)

    def to_linear(self, x: np.ndarray) -> np.ndarray:
        x = _as_float32(x)
        ax = np.abs(x)
        t = ax * np.float32(self.a)
        t += np.float32(self.b)
        np.maximum(t, 0, out=t)
        np.power(t, np.float32(self.g), out=t)
        t += np.float32(self.e)
        lo = ax < np.float32(self.d)
        if lo.any():
            t[lo] = ax[lo] * np.float32(self.c) + np.float32(self.f)
        return np.copysign(t, x, out=t)

    def from_linear(self, y: np.ndarray) -> np.ndarray:
        y = _as_float32(y)
        ay = np.abs(y)
        # Y at the segment boundary, taken from the power branch (continuous curves agree).
        yd = max(self.a * self.d + self.b, 0.0) ** self.g + self.e
        t = ay - np.float32(self.e)
        np.maximum(t, 0, out=t)
        np.power(t, np.float32(1.0 / self.g), out=t)
        t -= np.float32(self.b)
        t /= np.float32(self.a)
        lo = ay < np.float32(yd)
        if lo.any():
            t[lo] = (ay[lo] - np.float32(self.f)) / np.float32(self.c) if self.c else self.d
        return np.copysign(t, y, out=t)


class TableCurve(Curve):
    """ICC 'curv' table: equally spaced samples, linear interpolation both ways."""

    def __init__(self, table: np.ndarray) -> None:
        tab = np.asarray(table, dtype=np.float64)
        if tab.size < 2:
            raise ValueError("table needs at least two entries")
        if tab[-1] < tab[0]:  # decreasing tables exist in the wild; invert via a flip
            raise ValueError("decreasing TRC tables are not supported")
        self.table = tab
        self.grid = np.linspace(0.0, 1.0, tab.size)
        mono = np.maximum.accumulate(tab)  # force monotone so the inverse is a function
        uniq, first = np.unique(mono, return_index=True)
        self._inv_x, self._inv_y = uniq, self.grid[first]

    def key(self) -> tuple:
        return ("table", self.table.tobytes())

    def to_linear(self, x: np.ndarray) -> np.ndarray:
        x = _as_float32(x)
        return np.interp(x, self.grid, self.table).astype(np.float32)

    def from_linear(self, y: np.ndarray) -> np.ndarray:
        y = _as_float32(y)
        return np.interp(y, self._inv_x, self._inv_y).astype(np.float32)


@dataclass(frozen=True, eq=False)
class Transfer:
    """Per-channel transfer of an image: one curve (shared) or one per colour channel.

    ``to_linear``/``from_linear`` take code values scaled to [0, 1] (float32), channels
    on the last axis.  ``decode_lut``/``encode`` serve integer data exactly.
    """

    curves: tuple[Curve, ...]
    name: str = "custom"

    def __post_init__(self) -> None:
        if not self.curves:
            raise ValueError("Transfer needs at least one curve")
        if len({c.key() for c in self.curves}) == 1 and len(self.curves) > 1:
            object.__setattr__(self, "curves", self.curves[:1])

    @property
    def is_identity(self) -> bool:
        return all(c.is_identity for c in self.curves)

    def curve(self, channel: int) -> Curve:
        return self.curves[channel if len(self.curves) > 1 else 0]

    def _apply(self, x: np.ndarray, inverse: bool) -> np.ndarray:
        x = _as_float32(x)
        if len(self.curves) == 1:
            c = self.curves[0]
            return c.from_linear(x) if inverse else c.to_linear(x)
        if x.ndim == 0 or x.shape[-1] != len(self.curves):
            raise ValueError(f"expected {len(self.curves)} channels on the last axis")
        out = np.empty(x.shape, np.float32)
        for i, c in enumerate(self.curves):
            out[..., i] = c.from_linear(x[..., i]) if inverse else c.to_linear(x[..., i])
        return out

    def to_linear(self, x: np.ndarray) -> np.ndarray:
        """Code values in [0, 1] -> linear light (float32)."""
        return self._apply(x, inverse=False)

    def from_linear(self, y: np.ndarray) -> np.ndarray:
        """Linear light -> code values in [0, 1] (float32)."""
        return self._apply(y, inverse=True)

    def decode_lut(self, channel: int, maxval: int) -> np.ndarray:
        """float32 table: integer code -> linear light, for codes 0..maxval."""
        return _decode_lut(self.curve(channel), maxval)

    def encode(self, y: np.ndarray, channel: int, maxval: int) -> np.ndarray:
        """Linear light -> nearest integer code 0..maxval (int64) for one channel.

        Rounds in the code domain, i.e. round(from_linear(y) * maxval), and maps every
        ``decode_lut`` entry back to its own code, so integer round trips are exact.
        """
        thr, codes = _encoder(self.curve(channel), maxval)
        buckets = _bucket_table(thr, (self.curve(channel).key(), maxval))
        if buckets is not None and isinstance(y, np.ndarray) and y.dtype == np.float32:
            base, steps, padded = buckets
            idx = base[y.view(np.uint32) >> _BUCKET_SHIFT]
            for _ in range(steps):
                idx += y >= padded[idx]
        else:
            idx = np.searchsorted(thr, y, side="right")
        return idx if codes is None else codes[idx]


_LUT_CACHE: dict[tuple, object] = {}


def _decode_lut(curve: Curve, maxval: int) -> np.ndarray:
    key = (curve.key(), maxval, "dec")
    lut = _LUT_CACHE.get(key)
    if lut is None:
        codes = np.arange(maxval + 1, dtype=np.float64) / maxval
        lut = curve.to_linear(codes.astype(np.float32)).astype(np.float32)
        lut.setflags(write=False)
        _LUT_CACHE[key] = lut
    return lut  # type: ignore[return-value]


#: float32 values are bucketed by their top 16 bits (sign, exponent, 7 mantissa bits):
#: within a bucket a value differs from the bucket's start by less than 1/128.
_BUCKET_SHIFT = 16
#: Most thresholds one bucket may hold for the bucketed encoder (8-bit sRGB holds 1).
_MAX_BUCKET_STEPS = 2


def _bucket_table(thr: np.ndarray, key: tuple) -> tuple[np.ndarray, int, np.ndarray] | None:
    """For `encode`, a faster exact search than `searchsorted` (which took a second for a
    12 MP photo): each float32 bucket's first code, then at most `steps` comparisons against
    the next thresholds. (first codes, steps, thresholds + NaN); None where buckets hold too
    many thresholds (deep integer formats)."""
    key = key + ("buckets",)
    if key in _LUT_CACHE:
        return _LUT_CACHE[key]  # type: ignore[return-value]
    count = 1 << (32 - _BUCKET_SHIFT)
    starts = (np.arange(count, dtype=np.uint64) << _BUCKET_SHIFT).astype(np.uint32)
    ends = starts | np.uint32((1 << _BUCKET_SHIFT) - 1)
    base = np.searchsorted(thr, starts.view(np.float32), side="right")
    top = np.searchsorted(thr, ends.view(np.float32), side="right")
    negative = np.arange(count) >= count // 2  # sign bit set: below every threshold
    base[negative], top[negative] = 0, 0
    steps = int((top - base).max())
    table = None
    if steps <= _MAX_BUCKET_STEPS:
        padded = np.append(thr, np.float32(np.nan)).astype(np.float32)  # y ≥ NaN is false
        table = (base.astype(np.intp), steps, padded)
    _LUT_CACHE[key] = table
    return table


def _above(lower: np.ndarray, thr: np.ndarray) -> np.ndarray:
    """Thresholds nudged so each lies strictly above the value below it, then sorted."""
    thr = np.maximum(thr, np.nextafter(lower, np.float32(np.inf)))
    return np.maximum.accumulate(thr)


def _encoder(curve: Curve, maxval: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(thresholds, code map) for :meth:`Transfer.encode`, cached per curve and depth."""
    key = (curve.key(), maxval, "enc")
    hit = _LUT_CACHE.get(key)
    if hit is not None:
        return hit  # type: ignore[return-value]
    lut = _decode_lut(curve, maxval)
    mids = (np.arange(maxval, dtype=np.float64) + 0.5) / maxval
    thr = curve.to_linear(mids.astype(np.float32)).astype(np.float32)
    # Float rounding must never put a code's own value above its upper midpoint.
    thr = _above(lut[:-1], thr)
    codes: np.ndarray | None = None
    if not np.array_equal(np.searchsorted(thr, lut, side="right"), np.arange(maxval + 1)):
        # Not monotone (e.g. a parametric curve with a small jump at its breakpoint):
        # fall back to the nearest code in linear light among the sorted table values.
        codes = np.argsort(lut, kind="stable")
        s = lut[codes].astype(np.float64)
        thr = _above(lut[codes][:-1], ((s[:-1] + s[1:]) / 2).astype(np.float32))
    thr.setflags(write=False)
    _LUT_CACHE[key] = (thr, codes)
    return thr, codes


LINEAR = Transfer((IdentityCurve(),), "linear")
SRGB = Transfer((SRGBCurve(),), "sRGB")


# --------------------------------------------------------------------------- ICC


@dataclass(frozen=True)
class IccInfo:
    """What we need from an ICC profile's header and TRC tags."""

    colour_space: str  # 'RGB', 'GRAY', 'CMYK', 'Lab', ... (trailing blanks stripped)
    version: tuple[int, int, int]
    device_class: str
    transfer: Transfer | None  # None: no usable TRC (LUT-based profile)
    tags: tuple[str, ...]


def _s15f16(raw: bytes) -> tuple[float, ...]:
    return tuple(v / 65536.0 for v in struct.unpack(f">{len(raw) // 4}i", raw))


def _parse_curve(data: bytes, offset: int, size: int) -> Curve:
    if offset + 12 > len(data) or offset + size > len(data):
        raise ValueError("TRC tag runs past the end of the profile")
    sig = data[offset : offset + 4]
    if sig == b"curv":
        (count,) = struct.unpack_from(">I", data, offset + 8)
        if count == 0:
            return IdentityCurve()
        if count == 1:
            (gamma,) = struct.unpack_from(">H", data, offset + 12)
            return ParametricCurve(0, (gamma / 256.0,))  # u8Fixed8Number
        end = offset + 12 + 2 * count
        if end > len(data):
            raise ValueError("curv table runs past the end of the profile")
        tab = np.frombuffer(data, ">u2", count, offset + 12).astype(np.float64) / 65535.0
        return TableCurve(tab)
    if sig == b"para":
        (ftype,) = struct.unpack_from(">H", data, offset + 8)
        n = {0: 1, 1: 3, 2: 4, 3: 5, 4: 7}.get(ftype)
        if n is None:
            raise ValueError(f"unknown parametric function type {ftype}")
        params = _s15f16(data[offset + 12 : offset + 12 + 4 * n])
        if len(params) < n:
            raise ValueError("para tag truncated")
        return ParametricCurve(ftype, params)
    raise ValueError(f"unsupported TRC tag type {sig!r}")


def parse_icc(data: bytes) -> IccInfo:
    """Read header and TRC tags of an ICC v2/v4 profile.  Raises ValueError if malformed."""
    if len(data) < 132 or data[36:40] != b"acsp":
        raise ValueError("not an ICC profile")
    major, minor_bug = data[8], data[9]
    version = (major, minor_bug >> 4, minor_bug & 0x0F)
    device_class = data[12:16].decode("latin-1").strip()
    space = data[16:20].decode("latin-1").strip()
    (count,) = struct.unpack_from(">I", data, 128)
    if 132 + 12 * count > len(data):
        raise ValueError("ICC tag table runs past the end of the profile")
    table: dict[bytes, tuple[int, int]] = {}
    for i in range(count):
        sig, off, size = struct.unpack_from(">4sII", data, 132 + 12 * i)
        table[sig] = (off, size)
    transfer: Transfer | None = None
    try:
        if space == "RGB" and all(t in table for t in (b"rTRC", b"gTRC", b"bTRC")):
            curves = tuple(_parse_curve(data, *table[t]) for t in (b"rTRC", b"gTRC", b"bTRC"))
            transfer = Transfer(curves, "ICC RGB TRC")
        elif space == "GRAY" and b"kTRC" in table:
            transfer = Transfer((_parse_curve(data, *table[b"kTRC"]),), "ICC grey TRC")
    except ValueError:
        transfer = None  # unusable TRC: the caller falls back to a colour-managed conversion
    tags = tuple(t.decode("latin-1") for t in table)
    return IccInfo(space, version, device_class, transfer, tags)


@lru_cache(maxsize=1)
def srgb_icc_profile() -> bytes:
    """An sRGB ICC profile (LittleCMS built-in), embedded when we had to convert to sRGB."""
    from PIL import ImageCms

    return ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()


def icc_to_srgb_pil(image: Image.Image, icc: bytes) -> Image.Image:
    """Convert an 8-bit PIL 'RGB' image from profile ``icc`` to sRGB (relative colorimetric).

    Used only for profiles without usable TRCs; alpha must be split off by the caller.
    """
    from PIL import ImageCms

    try:
        src = ImageCms.ImageCmsProfile(io.BytesIO(icc))
        dst = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB"))
        return ImageCms.profileToProfile(
            image,
            src,
            dst,
            renderingIntent=ImageCms.Intent.RELATIVE_COLORIMETRIC,
            outputMode="RGB",
        )
    except (ImageCms.PyCMSError, OSError, ValueError) as exc:
        raise BokehkitError(f"cannot apply the embedded ICC profile: {exc}") from exc

"""PNG beyond Pillow: 16-bit colour read through Pillow's decoder twice (high bytes, then
low bytes), and a small numpy + zlib encoder that writes it.
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import BokehkitError
from .encoding import _row_blocks, open_pillow


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

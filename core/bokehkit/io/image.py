"""Image input/output that preserves the source's encoding.

``load_image`` decodes PNG, JPEG, TIFF and WebP (8/16-bit integer, 32-bit float; grey,
grey+alpha, RGB, RGBA) to float32 linear light and remembers everything needed to write
the result back like the source: dtype, channels, ICC profile, EXIF, transfer curve.
``encode_linear`` turns linear light back into the source's code values and
``save_image`` writes them atomically in the format named by the output's extension.

One format a file: ``pillow.py`` (PNG 8-bit, JPEG, WebP through Pillow, with ``jpeg.py``
and ``webp.py`` for what Pillow does not say), ``png.py`` (16-bit PNG, which Pillow cannot
hold in colour), ``tiff.py`` (tifffile), ``exif.py``; ``encoding.py`` has the types and
the sniffing. This module decodes to and encodes from linear light and writes atomically.
"""

from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path

import numpy as np

from ..errors import BokehkitError
from .colour import LINEAR, SRGB, Transfer, icc_to_srgb_pil, parse_icc, srgb_icc_profile
from .encoding import (
    _BLOCK_PIXELS,
    _MAXVAL,
    LoadedImage,
    SourceEncoding,
    _Raw,
    _row_blocks,
    _sniff,
    format_for_path,
)
from .exif import _strip_exif, focal_length_35mm
from .pillow import _read_pillow, _write_pillow
from .png import _write_png16
from .tiff import _read_tiff, _write_tiff

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


# ----------------------------------------------------------------------------- helpers


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
    """Decode an image to linear light, remembering how to write a result back like it.

    Parameters
    ----------
    path : path
        A PNG, JPEG, TIFF or WebP file (told by its first bytes, not its name): 8/16-bit
        integer or 32-bit float; grey, grey + alpha, RGB or RGBA; within the pixel limit
        (limits.py).

    Returns
    -------
    LoadedImage
        ``linear_rgb`` (H×W×3 float32, in the file's own primaries, ICC transfer curve
        undone), ``alpha`` (untouched), the code values and the `SourceEncoding` (format,
        dtype, channels, ICC profile, EXIF).

    Raises
    ------
    BokehkitError
        A missing, unreadable or unsupported file, or one over the pixel limit, in one line.
    """
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
    """Write code values plus optional alpha atomically (a temporary file, then a rename).

    Data a format cannot hold is converted (float -> 16-bit PNG, 16-bit -> 8-bit JPEG/WebP,
    alpha dropped for JPEG, grey -> RGB for WebP); ICC profile and EXIF are kept wherever
    the format can carry them.

    Parameters
    ----------
    path : path
        The file to write; its folder must exist.
    encoded_pixels : numpy.ndarray
        H×W or H×W×C (C = 1 or 3) code values, as `encode_linear` gives them.
    alpha : numpy.ndarray or None
        H×W alpha, written as it is (converted to the output's sample type).
    encoding : SourceEncoding
        The source's encoding (ICC profile, EXIF, DPI, JPEG tables, WebP mode).
    fmt : str, optional
        "PNG", "JPEG", "TIFF" or "WEBP"; default: from the extension.

    Raises
    ------
    BokehkitError
        An unknown format, a missing folder or a failed write; the target is untouched.
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

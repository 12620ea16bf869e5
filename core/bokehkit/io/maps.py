"""Reading single-channel maps (depth, disparity, masks) from PNG, JPEG, TIFF or .npy files."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import BokehkitError
from ..limits import check_pixels


def read_map(path: str | Path, what: str) -> np.ndarray:
    """Read a single-channel map as float32. Integer images keep their code values (0…255 or
    0…65535) so the caller can tell the bit depth from `max_code`; colour images give their
    first channel."""
    path = Path(path)
    if not path.is_file():
        raise BokehkitError(f"{what} file not found: {path}")
    suffix = path.suffix.lower()
    try:
        if suffix == ".npy":
            data = _read_npy(path, what)
        elif suffix in (".tif", ".tiff"):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                page = tif.pages.first
                check_pixels(page.imagewidth, page.imagelength, f"{what} {path}")
                data = page.asarray()
        else:
            from .encoding import open_pillow

            with open_pillow(path, f"{what} {path}") as im:
                if im.mode in ("I;16", "I;16B", "I;16L", "I", "F", "L"):
                    data = np.asarray(im)
                elif im.mode in ("LA", "PA", "P", "1"):
                    data = np.asarray(im.convert("L"))
                else:
                    data = np.asarray(im.convert("RGB"))
    except BokehkitError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is a bad file for the user
        raise BokehkitError(f"cannot read {what} {path}: {exc}") from None
    data = np.asarray(data)
    if data.ndim == 3:
        data = data[..., 0]
    if data.ndim != 2 or data.size == 0:
        raise BokehkitError(f"{what} {path} is not a 2-D map (shape {data.shape})")
    return data.astype(np.float32, copy=False) if data.dtype != np.float32 else data


def _read_npy(path: Path, what: str) -> np.ndarray:
    """A .npy array, its shape checked against the pixel limit before the data is read."""
    with open(path, "rb") as f:
        version = np.lib.format.read_magic(f)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(f)
        else:
            shape, _, dtype = np.lib.format.read_array_header_2_0(f)
        if dtype.hasobject:
            raise BokehkitError(f"{what} {path} holds Python objects, not numbers")
        if len(shape) not in (2, 3) or (len(shape) == 3 and shape[2] > 4):
            raise BokehkitError(f"{what} {path} is not a 2-D map (shape {shape})")
        check_pixels(shape[1], shape[0], f"{what} {path}")
        need = int(np.prod(shape)) * dtype.itemsize
        if os.fstat(f.fileno()).st_size - f.tell() < need:
            raise BokehkitError(f"{what} {path} is shorter than its header says (truncated?)")
    return np.load(path, allow_pickle=False)


def max_code(data: np.ndarray) -> float:
    """The full-scale value of an integer-coded map: 255, 65535, or 1 for float data."""
    peak = float(np.nanmax(data)) if data.size else 0.0
    if peak > 255.0:
        return 65535.0
    if peak > 1.0:
        return 255.0
    return 1.0


def resize_map(data: np.ndarray, width: int, height: int) -> np.ndarray:
    """Bilinear resize of a float map to (height, width)."""
    if data.shape == (height, width):
        return data
    from PIL import Image

    im = Image.fromarray(np.ascontiguousarray(data, dtype=np.float32), mode="F")
    return np.asarray(im.resize((width, height), Image.Resampling.BILINEAR), dtype=np.float32)

"""``bokehkit render --engine magicbokeh --reference``: the official MagicBokeh pipeline on
files, read and written as the official code does (8-bit sRGB through Pillow). The renderer
(render/magicbokeh.py) works on arrays only; this module does the file I/O."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import BokehkitError
from ..io.image import format_for_path
from ..io.maps import max_code, read_map
from ..magicbokeh import bundle
from ..progress import Progress
from ..render.magicbokeh import bundle_folder, choose_device


def _read_u8(path: Path, mode: str, what: str) -> np.ndarray:
    """A file as the official code reads it: ``PIL.Image.open(p).convert(mode)``."""
    from PIL import Image

    if not path.is_file():
        raise BokehkitError(f"{what} file not found: {path}")
    try:
        with Image.open(path) as im:
            return np.asarray(im.convert(mode), dtype=np.uint8)
    except (OSError, ValueError) as exc:
        raise BokehkitError(f"{path}: cannot read the {what} ({exc})") from None


def _read_rgb_u8(path: Path) -> np.ndarray:
    return _read_u8(path, "RGB", "image")


def _read_mask_u8(path: Path) -> np.ndarray:
    return _read_u8(path, "L", "focus mask")


def render_reference_file(
    input_path: str | Path,
    output_path: str | Path,
    *,
    depth_path: str | Path | None,
    focus_mask_path: str | Path | None,
    strength: float | None = None,
    model: str = bundle.MODEL_ID,
    store: str | Path | None = None,
    device: str = "cpu",
    seed: int | None = None,
    save_float: str | Path | None = None,
    progress: Progress | None = None,
    tile: int = 512,
    stride: int = 256,
) -> np.ndarray:
    """``bokehkit render IN --engine magicbokeh --reference``: the official pipeline on
    files. Depth: a disparity map in [0, 1] (.npy as the official ``prepare_data.py``
    writes it, or an image scaled by its full code); focus mask: white = in focus; K
    (`strength`) defaults to 32. Writes `output_path` (8 bits) and, with `save_float`, the
    result as float32 H×W×3 in [0, 1]. Returns that float result."""
    import torch

    from ..magicbokeh.network import load_network
    from ..magicbokeh.reference import render_reference

    progress = progress or Progress()
    input_path, output_path = Path(input_path), Path(output_path)
    if depth_path is None or focus_mask_path is None:
        raise BokehkitError("--reference needs --depth FILE and --focus-mask FILE")
    k = 32.0 if strength is None else float(strength)
    if k < 0:
        raise BokehkitError(f"--strength must be ≥ 0, not {k:g}")
    if input_path.resolve() == output_path.resolve():
        raise BokehkitError("the output would overwrite the input photo: choose another name")
    if not output_path.parent.is_dir():
        raise BokehkitError(f"output folder {output_path.parent} does not exist")
    format_for_path(output_path)  # an unknown extension fails now, not after the render
    if save_float is not None and Path(save_float).suffix.lower() != ".npy":
        raise BokehkitError(f"--save-float {save_float}: give a .npy file name")
    torch_device = choose_device(device)
    folder = bundle_folder(model, store)
    ok, reason = bundle.status(folder)
    if not ok:
        raise BokehkitError(f"engine magicbokeh: {reason}")

    progress.update(0.0, "reading the photo")
    image = _read_rgb_u8(input_path).astype(np.float32) / np.float32(255)
    h, w = image.shape[:2]
    depth = read_map(depth_path, "depth")
    if depth.ndim != 2 or depth.shape != (h, w):
        raise BokehkitError(f"depth {depth_path} is {depth.shape}, the image {h}×{w}")
    depth = depth / np.float32(max_code(depth)) if depth.dtype.kind in "ui" else depth
    mask = _read_mask_u8(Path(focus_mask_path))
    if mask.shape != (h, w):
        raise BokehkitError(f"focus mask {focus_mask_path} is {mask.shape}, the image {h}×{w}")

    progress.update(0.02, "loading MagicBokeh")
    # contiguous weights: the official summation order (86 dB against the official code;
    # channels-last convolutions drop that to 77 dB)
    net = load_network(folder, torch.float32, torch_device, channels_last=False)
    out = render_reference(
        image, depth, mask, k, net, seed=seed, progress=progress.span(0.05, 0.97),
        tile=tile, stride=stride,
    )  # fmt: skip
    progress.update(0.98, "writing the result")
    _save_u8(output_path, out)
    if save_float is not None:
        np.save(save_float, out.astype(np.float32))
    progress.update(1.0, "done")
    return out


def _save_u8(path: Path, srgb01: np.ndarray) -> None:
    """Write 8-bit sRGB atomically (the reference output is already on 1/255 steps)."""
    from PIL import Image

    fmt = format_for_path(path)
    pixels = np.clip(np.round(srgb01 * 255), 0, 255).astype(np.uint8)
    tmp = path.with_name(f".{path.name}.part")
    try:
        Image.fromarray(pixels, "RGB").save(tmp, format=fmt)
        os.replace(tmp, path)
    except OSError as exc:
        raise BokehkitError(f"{path}: cannot write ({exc})") from None
    finally:
        tmp.unlink(missing_ok=True)

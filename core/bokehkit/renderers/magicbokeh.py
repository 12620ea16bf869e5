"""The `magicbokeh` engine: MagicBokeh (CVPR 2026) one-step diffusion bokeh.

Its weights are our bundle in the model store (`bokehkit.magicbokeh.bundle`), written by
``bokehkit models import magicbokeh --sd21 DIR --checkpoint lora.pkl``. Without a complete
bundle the engine refuses, naming the missing files and that command; it never falls back
to another renderer.

So far only the reference mode exists: `render_reference_file` (``bokehkit render IN
--engine magicbokeh --reference ...``) runs the official ``inference.py`` pipeline in fp32
(`bokehkit.magicbokeh.reference`). The default (fast) mode through the render pipeline is
not implemented yet, so `MagicBokehRenderer` and `model_status` still say so.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch  # noqa: F401  (the engine needs torch; importing it here tells the server)

from ..errors import BokehkitError
from ..magicbokeh import bundle
from ..models.store import ModelStore
from ..progress import Progress
from .base import RenderJob

# Set when the default (fast) mode lands in the render pipeline (issue 3); until then the
# pipeline, the server and the plug-ins say the engine is not ready. Reference mode
# (`render_reference_file`) works without it.
NETWORK_READY = False
NOT_READY = (
    "only reference mode is implemented so far: bokehkit render IN --engine magicbokeh "
    "--reference --depth D.npy --focus-mask M.png"
)
DEVICES = ("cpu", "cuda", "mps")


def bundle_folder(name: str = bundle.MODEL_ID, store: str | Path | None = None) -> Path:
    return ModelStore(store).root / name


def model_status(name: str = bundle.MODEL_ID, store: str | Path | None = None) -> tuple[bool, str]:
    """(available, reason): whether `bokehkit render --engine magicbokeh` can run."""
    ok, reason = bundle.status(bundle_folder(name, store))
    if not ok:
        return False, reason
    if not NETWORK_READY:
        return False, NOT_READY
    return True, ""


class MagicBokehRenderer:
    name = "magicbokeh"

    def __init__(self, model: str = bundle.MODEL_ID, store: str | Path | None = None, **_):
        self.folder = bundle_folder(model, store)
        ok, reason = model_status(model, store)
        if not ok:
            raise BokehkitError(f"engine magicbokeh: {reason}")

    def render(self, job: RenderJob, progress: Progress) -> np.ndarray:  # pragma: no cover
        raise BokehkitError(f"engine magicbokeh: {NOT_READY}")


def _device(name: str) -> torch.device:
    if name not in DEVICES:
        raise BokehkitError(f"--device {name!r}: choose one of {', '.join(DEVICES)}")
    if name == "cuda" and not torch.cuda.is_available():
        raise BokehkitError("--device cuda: no CUDA device is available to torch here")
    if name == "mps" and not torch.backends.mps.is_available():
        raise BokehkitError("--device mps: Apple MPS is not available to torch here")
    return torch.device(name)


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
    from ..magicbokeh.network import load_network
    from ..magicbokeh.reference import render_reference
    from ..maps import max_code, read_map

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
    from ..imageio import format_for_path

    format_for_path(output_path)  # an unknown extension fails now, not after the render
    if save_float is not None and Path(save_float).suffix.lower() != ".npy":
        raise BokehkitError(f"--save-float {save_float}: give a .npy file name")
    torch_device = _device(device)
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
    net = load_network(folder, torch.float32, torch_device)
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
    import os

    from PIL import Image

    from ..imageio import format_for_path

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

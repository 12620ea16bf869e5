"""Depth from one photo: pre-processing, torch or ONNX Runtime, and the DepthMap.

Pre-processing follows the official `infer_image` (`image2tensor`): RGB in [0, 1] as the
camera encoded it (sRGB), resized keeping the aspect ratio so that the short side is at
least 518 px and both sides are multiples of 14 (`specs.network_input_size`), normalised
with ImageNet's mean and std. The official code resizes the 8-bit sRGB photo with OpenCV's
bicubic filter; here the pipeline's linear-light photo is resized first, with PIL's bicubic
filter (antialiased: a 24 MP photo reduced ×10 does not alias) in linear light, then encoded
to sRGB. The network's output, relative disparity at the network's size, is normalised
between its 0.5 and 99.5 percentiles to [0, 1] (1 = near, as `depth.load_depth` does for a
relative map) and resized bilinearly to the photo.

Backends: "torch" (our `network.DepthAnythingV2`), "onnx" (ONNX Runtime on a file exported
once from it, `export_onnx`, kept in the store beside the checkpoint), "auto": ONNX Runtime,
exporting the file on first use where torch and onnxscript are installed (10 to 60 s), else
torch. On two CPU cores ONNX Runtime is 1.5× faster than torch for small and base, on par
for large (benchmarks/models_speed.py).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from ... import onnxtools
from ...errors import BokehkitError
from ...io.colour import linear_to_srgb
from ...io.maps import resize_map
from ...progress import Progress
from ..depth import ROBUST_PERCENTILES, DepthMap
from . import specs
from .specs import MEAN, STD, DepthNet

BACKENDS = ("auto", "torch", "onnx")
INPUT_NAME, OUTPUT_NAME = "image", "disparity"


# ---------------------------------------------------------------------------- pre/post
def prepare_input(linear_rgb: np.ndarray, short_side: int = specs.INPUT_SIZE) -> np.ndarray:
    """H×W×C linear light → 1×3×h×w float32, the network's input (see the module doc)."""
    img = np.asarray(linear_rgb, np.float32)
    if img.ndim == 2:
        img = img[..., None]
    if img.shape[2] == 1:
        img = np.repeat(img, 3, axis=2)
    img = img[..., :3]
    h, w = img.shape[:2]
    nw, nh = specs.network_input_size(w, h, short_side)
    planes = [
        np.asarray(
            Image.fromarray(np.ascontiguousarray(np.clip(img[..., c], 0.0, 1.0)), "F").resize(
                (nw, nh), Image.Resampling.BICUBIC
            )
        )
        for c in range(3)
    ]
    srgb = linear_to_srgb(np.clip(np.stack(planes, axis=0), 0.0, 1.0))
    mean = np.asarray(MEAN, np.float32)[:, None, None]
    std = np.asarray(STD, np.float32)[:, None, None]
    return ((srgb - mean) / std).astype(np.float32)[None]


def normalise_disparity(disparity: np.ndarray) -> np.ndarray:
    """Relative disparity → [0, 1], 1 = near, robust to a few outliers."""
    d = np.asarray(disparity, np.float32)
    if not np.all(np.isfinite(d)):
        raise BokehkitError("the depth network gave non-finite values (damaged model file?)")
    lo, hi = np.percentile(d, ROBUST_PERCENTILES)
    if hi - lo < 1e-12:
        return np.zeros_like(d)  # a flat scene: everything on one plane
    return np.clip((d - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)


# ---------------------------------------------------------------------------- backends
def export_onnx(model, dest: str | Path, opset: int = 18) -> Path:
    """Export a DepthAnythingV2 to ONNX: input "image" N×3×H×W (H, W free multiples of 14),
    output "disparity" N×H×W; written atomically."""
    import torch

    from .specs import PATCH

    example = torch.zeros(1, 3, 3 * PATCH, 4 * PATCH)
    gh = torch.export.Dim("grid_h", min=2, max=1024)
    gw = torch.export.Dim("grid_w", min=2, max=1024)
    shapes = {"x": {2: PATCH * gh, 3: PATCH * gw}}
    return onnxtools.export_onnx(model, example, dest, INPUT_NAME, OUTPUT_NAME, shapes, opset)


def onnx_session(path: str | Path, threads: int | None = None):
    return onnxtools.session(path, threads)


def run_onnx(path: str | Path, x: np.ndarray) -> np.ndarray:
    sess = onnx_session(path)
    return sess.run([OUTPUT_NAME], {INPUT_NAME: np.ascontiguousarray(x, np.float32)})[0]


def run_torch(model, x: np.ndarray) -> np.ndarray:
    import torch

    with torch.inference_mode():
        return model(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()


def onnx_path(net: DepthNet, checkpoint: Path) -> Path:
    return checkpoint.with_name(f"{net.model_id}.onnx")


def _have(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def network(net: DepthNet, checkpoint: str | Path, backend: str = "auto", export: bool = False):
    """A function N×3×h×w → N×h×w (relative disparity) and the backend's name.

    `checkpoint` is the official-layout .pth (or an ONNX file, run with ONNX Runtime).
    "auto" uses the ONNX file beside the checkpoint when it is newer than it; with
    `export`, it is made first (needs torch and onnxscript)."""
    from .checkpoint import load_network

    if backend not in BACKENDS:
        raise BokehkitError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    checkpoint = Path(checkpoint)
    if checkpoint.suffix == ".onnx":
        return (lambda x: run_onnx(checkpoint, x)), "onnxruntime"
    onnx_file = onnx_path(net, checkpoint)
    fresh = onnx_file.is_file() and onnx_file.stat().st_mtime >= checkpoint.stat().st_mtime
    if not _have("torch") and not fresh:
        raise BokehkitError(
            f"{net.model_id} needs torch to read its checkpoint (once, to export it to ONNX "
            "for ONNX Runtime): pip install -r requirements/torch-cpu.txt"
        )
    if not fresh and (backend == "onnx" or (backend == "auto" and export)):
        if not _have("onnxscript"):
            if backend == "onnx":
                raise BokehkitError("the ONNX export needs onnxscript (requirements/torch-cpu)")
        else:
            export_onnx(load_network(net, checkpoint), onnx_file)
            fresh = True
    if backend == "onnx" or (backend == "auto" and fresh):
        return (lambda x: run_onnx(onnx_file, x)), "onnxruntime"
    model = load_network(net, checkpoint)
    return (lambda x: run_torch(model, x)), "torch"


# ---------------------------------------------------------------------------- the API
def resolve_model(model_id: str | None, store=None) -> tuple[DepthNet, Path]:
    """The network and its installed checkpoint; None = the best one installed.
    BokehkitError with the exact install command when it is not installed."""
    from ...store import ModelStore

    st = store if hasattr(store, "require") else ModelStore(store)
    if model_id is None:
        for mid in specs.PREFERENCE:
            if mid in st.manifest.ids and st.is_installed(mid):
                model_id = mid
                break
        else:
            model_id = specs.PREFERENCE[-1]  # the one to suggest: small, Apache-2.0
    net = specs.net(model_id)
    if model_id not in st.manifest.ids:
        raise BokehkitError(
            f"depth model {model_id} is not in this bokehkit's model manifest; "
            "pass the checkpoint file itself (weights=…)"
        )
    return net, st.require(model_id)  # raises "… run: bokehkit models install ID"


def installed_depth_model(store=None) -> str | None:
    """The id of the best depth model installed, or None (never downloads)."""
    from ...store import ModelStore

    st = store if hasattr(store, "require") else ModelStore(store)
    for mid in specs.PREFERENCE:
        if mid in st.manifest.ids and st.is_installed(mid):
            return mid
    return None


def estimate_depth(
    linear_rgb: np.ndarray,
    model_id: str | None = None,
    progress: Progress | None = None,
    *,
    store=None,
    weights: str | Path | None = None,
    backend: str = "auto",
    short_side: int = specs.INPUT_SIZE,
) -> DepthMap:
    """Relative disparity (H×W float32 in [0, 1], 1 = near) of a linear-light photo.

    `model_id`: one of `specs.NETS` (None: the best installed); its checkpoint comes from
    the model store, or from `weights` (an official-layout .pth, or an exported .onnx).
    `short_side`: the network's short side in px (518 as trained; more gives finer detail
    at quadratic cost)."""
    progress = progress or Progress()
    if weights is not None:
        net = specs.net(model_id or "depth-anything-v2-small")
        checkpoint = Path(weights)
        if not checkpoint.is_file():
            raise BokehkitError(f"depth model file {checkpoint} does not exist")
    else:
        net, checkpoint = resolve_model(model_id, store)
    if short_side < 2 * specs.PATCH:
        raise BokehkitError(f"the depth network's input must be at least 28 px, not {short_side}")
    h, w = np.asarray(linear_rgb).shape[:2]
    progress.update(0.0, f"depth: loading {net.model_id}")
    run, used = network(net, checkpoint, backend, export=True)
    x = prepare_input(linear_rgb, short_side)
    progress.update(0.1, f"depth: {net.model_id} at {x.shape[3]}×{x.shape[2]} ({used})")
    disparity = run(x)[0]
    progress.update(0.9, "depth: resizing to the photo")
    inv = resize_map(normalise_disparity(disparity), w, h)
    inv = np.clip(inv, 0.0, 1.0).astype(np.float32)
    progress.update(1.0, "depth: done")
    source = f"estimated by {net.name} ({used}, {x.shape[3]}×{x.shape[2]}; {net.licence})"
    return DepthMap(inv, False, source)

"""Real-ESRGAN x4plus as bokehkit's upscaler "realesrgan" (×2 and ×4).

The network was trained on sRGB-encoded images in [0, 1], so the linear-light image the
pipeline hands over is clipped to [0, 1] and encoded with the sRGB curve, enlarged ×4 tile by
tile (`tiling.run_tiled`: 256 px windows, neighbours overlapping by 32 px: 10 dropped at each
inner edge, 12 blended), and decoded back to linear light. What lies outside [0, 1] (lights
brighter than white that highlight recovery made) is enlarged bilinearly and added back, so
no energy is lost. ×2 is the ×4 result reduced by an antialiased Lanczos-3 filter in
linear light, window by window.

`detail` (0 to 1) mixes the network's picture with a Lanczos-3 upscale of the same input:
Lanczos + detail·(Real-ESRGAN − Lanczos), 1 the network alone, 0 Lanczos alone (the network
is not run). The mix is made in sRGB, the space the network reads and writes: there its
difference from Lanczos is the detail it drew, an equal step reads as an equal change of
tone in shadows and highlights, and a mean of two images does not lighten fine dark detail
as a mean of linear light would (it also measured higher). The default, `DETAIL` = 0.25,
had the best mean PSNR on the benchmark's tuning photos and beat Lanczos on all held-out
ones (docs/benchmarks-sr.md); Real-ESRGAN alone paints over texture, redraws small faces and
loses to Lanczos on PSNR.

With a sharpness map (the pipeline's: 0 where the renderer will blur by a pixel or more),
windows with nothing sharp in them get the classical upscale instead: their detail would be
blurred away, and the network is slow: about 350 s per input megapixel with ONNX Runtime on
two CPU cores.

Backends: torch (our RRDBNet with the converted weights), or ONNX Runtime with an ONNX file
exported from it once (`export_onnx`, kept in the store beside the weights); "auto" takes
ONNX Runtime, faster and steadier than torch on CPU (docs/benchmarks.md, models_speed).
"""

from __future__ import annotations

import functools
import json
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from .. import onnxtools
from ..errors import BokehkitError
from ..io.colour import linear_to_srgb, srgb_to_linear
from ..progress import Progress
from .lanczos import resize_plane, upscale_linear
from .tiling import run_tiled

MODEL_ID = "realesrgan-x4plus"
WEIGHTS = "realesrgan-x4plus.safetensors"
ONNX = "realesrgan-x4plus.onnx"
SCALE = 4
TILE = 256
PAD = 10
BLEND = 12
#: Windows whose sharpness never reaches this get the classical upscale.
SHARP_THRESHOLD = 0.02
BACKENDS = ("auto", "torch", "onnx")
#: The share of the network's own picture in the result (see the module's docstring).
DETAIL = 0.25

_lock = threading.Lock()
_cache: dict[tuple, object] = {}


# ---------------------------------------------------------------------------- the weights
def _store(store):
    from ..store import ModelStore

    return store if hasattr(store, "require") else ModelStore(store)


def prepare(store=None, log: Callable[[str], None] | None = None) -> Path:
    """The converted weights (safetensors) of the installed model, converting the ncnn files
    on first use. BokehkitError with the install command if the model is not installed."""
    from . import ncnn_convert

    st = _store(store)
    st.require(MODEL_ID)  # raises "… run: bokehkit models install realesrgan-x4plus"
    folder = st.model_dir(MODEL_ID)
    param, binf = folder / "realesrgan-x4plus.param", folder / "realesrgan-x4plus.bin"
    dest = folder / WEIGHTS
    want = {f.name: f.sha256 for f in st.spec(MODEL_ID).files}
    if dest.is_file():
        try:
            meta = ncnn_convert.read_metadata(dest)
            if (
                meta.get("converter") == ncnn_convert.CONVERTER_VERSION
                and meta.get("source_param_sha256") == want[param.name]
                and meta.get("source_bin_sha256") == want[binf.name]
            ):
                return dest
        except (OSError, ValueError, BokehkitError):
            pass
    with _lock:
        if log is not None:
            log(f"{MODEL_ID}: converting the ncnn weights into {dest.name} (once)")
        ncnn_convert.convert_files(param, binf, dest)
        meta = ncnn_convert.read_metadata(dest)
        if (meta["source_param_sha256"], meta["source_bin_sha256"]) != (
            want[param.name],
            want[binf.name],
        ):
            dest.unlink(missing_ok=True)
            raise BokehkitError(
                f"the installed {MODEL_ID} files are damaged (SHA-256 differs); run: "
                f"bokehkit models install --force {MODEL_ID}"
            )
    return dest


def load_torch(weights: Path, device: str = "cpu"):
    """Our RRDBNet with converted weights (cached per file)."""
    from safetensors.torch import load_file

    from . import ncnn_convert
    from .rrdbnet import RRDBNet

    weights = Path(weights)
    key = ("torch", str(weights), weights.stat().st_mtime_ns, device)
    with _lock:
        net = _cache.get(key)
        if net is None:
            meta = ncnn_convert.read_metadata(weights)
            config = {
                k: v
                for k, v in json.loads(meta.get("config", "{}")).items()
                if k in ("num_in_ch", "num_out_ch", "num_feat", "num_block", "num_grow_ch")
            }
            net = RRDBNet(**config)
            net.load_state_dict(load_file(str(weights)), strict=True)
            net = net.eval().to(device)
            for p in net.parameters():
                p.requires_grad_(False)
            _cache.clear()
            _cache[key] = net
    return net


def export_onnx(net, dest: Path, opset: int = 18) -> Path:
    """Export an RRDBNet to ONNX (input "input" and output "output", N×3×H×W with free H,
    W), written atomically."""
    import torch

    example = torch.rand(1, 3, 32, 32)
    h = torch.export.Dim("height", min=1, max=8192)
    w = torch.export.Dim("width", min=1, max=8192)
    shapes = {"x": {2: h, 3: w}}
    return onnxtools.export_onnx(net, example, dest, "input", "output", shapes, opset)


def onnx_session(path: Path, threads: int | None = None):
    return onnxtools.session(path, threads)


NEEDS_TORCH = (
    "Real-ESRGAN needs torch once, to build its ONNX file: "
    "pip install -r requirements/torch-cpu.txt"
)


def _have_torch() -> bool:
    import importlib.util

    return importlib.util.find_spec("torch") is not None


def _onnx_fresh(weights: Path, onnx_file: Path) -> bool:
    """The ONNX file exists and was made from these weights (not older than them)."""
    return (
        weights.is_file()
        and onnx_file.is_file()
        and onnx_file.stat().st_mtime >= weights.stat().st_mtime
    )


def status(store=None) -> tuple[bool, str]:
    """(available, reason): whether `network` can run here, without loading anything; the
    engine's ping tells the plug-ins."""
    import importlib.util

    from ..store import install_command

    st = _store(store)
    if st.is_damaged(MODEL_ID):
        return False, f"its model is damaged; run: bokehkit models verify {MODEL_ID}"
    if not st.is_installed(MODEL_ID):
        return False, f"its model is not installed; run: {install_command(MODEL_ID)}"
    if _have_torch():
        return True, ""
    folder = st.model_dir(MODEL_ID)
    if _onnx_fresh(folder / WEIGHTS, folder / ONNX) and importlib.util.find_spec("onnxruntime"):
        return True, ""
    return False, NEEDS_TORCH


def network(store=None, backend: str = "auto") -> Callable[[np.ndarray], np.ndarray]:
    """A function: N×3×H×W float32 in [0, 1] (sRGB) → N×3×4H×4W, from the installed model.

    "auto": ONNX Runtime (faster and steadier than torch on CPU), exporting the ONNX file
    from the converted weights on first use (about 20 s) where torch is there; torch where
    the export cannot be made."""
    if backend not in BACKENDS:
        raise BokehkitError(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    st = _store(store)
    weights = prepare(st)
    onnx_file = st.model_dir(MODEL_ID) / ONNX
    fresh = _onnx_fresh(weights, onnx_file)
    if backend in ("auto", "onnx") and not fresh:
        if not _have_torch():
            raise BokehkitError(NEEDS_TORCH)
        try:
            export_onnx(load_torch(weights), onnx_file)
            fresh = True
        except ImportError as exc:  # no onnxscript/onnx: run it in torch
            if backend == "onnx":
                raise BokehkitError(f"cannot export Real-ESRGAN to ONNX: {exc}") from None
    if backend == "onnx" or (backend == "auto" and fresh):
        sess = onnx_session(onnx_file)
        return lambda x: sess.run(["output"], {"input": np.ascontiguousarray(x, np.float32)})[0]
    import torch

    net = load_torch(weights)

    def run(x: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return net(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()

    return run


def finish_install(store=None, log: Callable[[str], None] = print) -> list[Path]:
    """What `bokehkit models install realesrgan-x4plus` can run after placing the ncnn files,
    so that the first render does not wait: convert them and, where torch is there, export
    the ONNX file (about 20 s on two cores). Safe to run again; returns the files made."""
    st = _store(store)
    weights = prepare(st, log)
    onnx_file = st.model_dir(MODEL_ID) / ONNX
    fresh = onnx_file.is_file() and onnx_file.stat().st_mtime >= weights.stat().st_mtime
    if not fresh and _have_torch():
        log(f"{MODEL_ID}: exporting the ONNX file for onnxruntime (once)")
        network(st, "auto")
    elif not fresh:  # the light engine: the files are in place, but it cannot run them yet
        log(f"{MODEL_ID}: installed, but this engine cannot run it yet: {NEEDS_TORCH}, then "
            f"run bokehkit models install {MODEL_ID} again (or use the full engine)")  # fmt: skip
    return [weights] + ([onnx_file] if onnx_file.is_file() else [])


# ---------------------------------------------------------------------------- the upscaler
def downscale_half(linear: np.ndarray) -> np.ndarray:
    """H×W×C → H/2×W/2×C with PIL's antialiased Lanczos-3 (in the values given)."""
    h, w, c = linear.shape
    out = np.empty((h // 2, w // 2, c), np.float32)
    for ch in range(c):
        im = Image.fromarray(np.ascontiguousarray(linear[..., ch], np.float32), mode="F")
        out[..., ch] = np.asarray(im.resize((w // 2, h // 2), Image.Resampling.LANCZOS))
    return out


def check_detail(detail: float | None) -> float:
    """`detail` as a float in [0, 1] (None: the default, `DETAIL`); BokehkitError otherwise."""
    if detail is None:
        return DETAIL
    ok = isinstance(detail, (int, float, np.integer, np.floating)) and not isinstance(detail, bool)
    if not ok or not 0.0 <= float(detail) <= 1.0:  # NaN fails the comparison too
        raise BokehkitError(
            f"Real-ESRGAN detail must be a number from 0 (a Lanczos upscale) to 1 (the "
            f"network alone), not {detail!r}"
        )
    return float(detail)


def lanczos_srgb(srgb01: np.ndarray, factor: int) -> np.ndarray:
    """×`factor` of an sRGB H×W×3 image in [0, 1] with the classical upscaler's Lanczos-3
    (`lanczos.resize_plane`), clipped to [0, 1]: the `detail` = 0 end of the mix."""

    h, w, c = srgb01.shape
    out = np.empty((h * factor, w * factor, c), np.float32)
    for ch in range(c):
        out[..., ch] = resize_plane(srgb01[..., ch], w * factor, h * factor)
    return np.clip(out, 0.0, 1.0, out=out)


def mix_detail(lanczos01: np.ndarray, model01: np.ndarray, detail: float) -> np.ndarray:
    """Lanczos + detail·(model − Lanczos), both sRGB in [0, 1] (float32)."""
    lanczos01 = np.asarray(lanczos01, np.float32)
    return lanczos01 + np.float32(detail) * (np.asarray(model01, np.float32) - lanczos01)


def sr_srgb(
    srgb01: np.ndarray,
    net: Callable[[np.ndarray], np.ndarray],
    tile: int = TILE,
    pad: int = PAD,
    blend: int = BLEND,
    progress: Progress | None = None,
) -> np.ndarray:
    """×4 of an sRGB H×W×3 image in [0, 1] through `net`, tiled; output clipped to [0, 1]."""

    def one(window: np.ndarray) -> np.ndarray:
        x = window.transpose(2, 0, 1)[None]
        return np.clip(net(x)[0].transpose(1, 2, 0), 0.0, 1.0)

    return run_tiled(srgb01, one, SCALE, tile, pad, blend, progress, "super-resolution")


def upscale_realesrgan(
    linear_rgb: np.ndarray,
    factor: int,
    sharpness: np.ndarray | None = None,
    progress: Progress | None = None,
    *,
    detail: float | None = None,
    store=None,
    backend: str = "auto",
    tile: int = TILE,
    pad: int = PAD,
    blend: int = BLEND,
    net: Callable[[np.ndarray], np.ndarray] | None = None,
) -> np.ndarray:
    """The "realesrgan" upscaler: linear H×W×3 (or ×1, ×4: extra channels go classical)
    float32 → ×`factor` (1, 2 or 4). `detail` in [0, 1]: how much of the network's picture
    is kept over a Lanczos upscale (None: `DETAIL`). `net` overrides the installed model
    (tests)."""

    detail = check_detail(detail)
    if factor == 1:
        return linear_rgb
    if factor not in (2, 4):
        raise BokehkitError(f"Real-ESRGAN enlarges ×2 or ×4, not ×{factor}")
    if linear_rgb.ndim == 2 or linear_rgb.shape[2] != 3:
        again = functools.partial(
            upscale_realesrgan, factor=factor, sharpness=sharpness, progress=progress,
            detail=detail, store=store, backend=backend, tile=tile, pad=pad, blend=blend,
            net=net,
        )  # fmt: skip
        if linear_rgb.ndim == 2:
            return again(linear_rgb[..., None])[..., 0]
        if linear_rgb.shape[2] == 1:  # grey: as RGB, then back
            return again(np.repeat(linear_rgb, 3, 2)).mean(axis=2, keepdims=True)
        rest = upscale_linear(np.ascontiguousarray(linear_rgb[..., 3:]), factor, sharpness)
        return np.concatenate([again(linear_rgb[..., :3]), rest], axis=2)
    linear_rgb = np.asarray(linear_rgb, np.float32)
    inside = np.clip(linear_rgb, 0.0, 1.0)
    srgb = linear_to_srgb(inside)
    if detail == 0.0:  # Lanczos alone: the network is not needed
        out = srgb_to_linear(lanczos_srgb(srgb, factor))
        return _add_outside(out, linear_rgb - inside, factor)
    if net is None:
        net = network(store, backend)

    def learned(window: np.ndarray) -> np.ndarray:
        x = window.transpose(2, 0, 1)[None]
        y = np.clip(net(x)[0].transpose(1, 2, 0), 0.0, 1.0)
        lin = srgb_to_linear(y)
        return lin if factor == 4 else downscale_half(lin)

    def classical(window: np.ndarray) -> np.ndarray:
        return upscale_linear(srgb_to_linear(window), factor)

    skip = None
    if sharpness is not None:
        sharp = np.asarray(sharpness, np.float32)

        def skip(rows: slice, cols: slice):
            return classical if sharp[rows, cols].max(initial=0.0) < SHARP_THRESHOLD else None

    # Windows are run at ×4 and reduced to ×2 one by one: context pad·2 ≥ Lanczos' reach.
    out = run_tiled(srgb, learned, factor, tile, pad, blend, progress, "super-resolution", skip)
    if detail < 1.0:  # channel by channel: one plane of temporaries at the output size
        for ch in range(3):
            base = lanczos_srgb(srgb[..., ch : ch + 1], factor)[..., 0]
            mixed = mix_detail(base, linear_to_srgb(out[..., ch]), detail)
            out[..., ch] = srgb_to_linear(mixed)
    return _add_outside(out, linear_rgb - inside, factor)


def _add_outside(out: np.ndarray, outside: np.ndarray, factor: int) -> np.ndarray:
    """Add the light outside [0, 1], enlarged bilinearly: that keeps its energy (clamping
    and sharpening would not)."""

    if np.any(outside):
        h, w = outside.shape[:2]
        for ch in range(outside.shape[2]):
            if np.any(outside[..., ch]):
                out[..., ch] += resize_plane(
                    outside[..., ch], w * factor, h * factor, Image.Resampling.BILINEAR
                )
    return out

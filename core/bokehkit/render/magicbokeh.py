"""The `magicbokeh` engine: MagicBokeh (CVPR 2026) one-step diffusion bokeh.

Its weights are our bundle in the model store (`bokehkit.magicbokeh.bundle`), written by
``bokehkit models import magicbokeh --sd21 DIR --checkpoint lora.pkl``. Without a complete
bundle the engine refuses, naming the missing files and that command; it never falls back
to another renderer.

Two modes:
- the default, `MagicBokehRenderer` behind the render pipeline (`bokehkit render IN
  --engine magicbokeh`, the engine server, the plug-ins): the pipeline's depth, focus and
  lens give each pixel its blur radius in output pixels, and the defocus map the network
  takes is that radius / 32 (see `defocus_from_coc`); joint super-resolution comes from
  the pipeline bringing the photo to the output size first. It runs the fast tiling
  (`bokehkit.magicbokeh.fast`) on the device and precision `choose_device` /
  `choose_dtype` pick, over torch or, with ``runtime="onnx"``, over onnxruntime from the
  bundle's ONNX export (``bokehkit models export-onnx magicbokeh``; see
  `bokehkit.magicbokeh.onnx_stages`). `choose_runtime`: "auto" is torch where it is
  installed, else ONNX (the light engine). torch is imported only on the torch path, so
  this module and the ONNX path work without it.
- reference mode (``--reference``, commands/reference.py reads and writes its files): the official
  ``inference.py`` pipeline in fp32 on files (`bokehkit.magicbokeh.reference`).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import BokehkitError
from ..io.colour import linear_to_srgb, srgb_to_linear
from ..magicbokeh import bundle
from ..magicbokeh.inputs import MAX_DEFOCUS
from ..progress import Progress
from ..store.store import ModelStore
from .base import Renderer, RenderJob

if TYPE_CHECKING:
    import torch

RUNTIMES = ("auto", "torch", "onnx")
DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
#: The defocus map is |d − f|·K/32 with K the blur radius in pixels per unit of relative
#: disparity (BokehMe's K, which MagicBokeh's K follows [inferred: the paper states no
#: unit]); so defocus = radius / 32 px, and the trained range (defocus ≤ 1, K ≤ 32) caps
#: the radius the network renders at 32 px.
RADIUS_PER_UNIT_DEFOCUS_PX = 32.0
MAX_RADIUS_PX = RADIUS_PER_UNIT_DEFOCUS_PX * MAX_DEFOCUS


def bundle_folder(name: str = bundle.MODEL_ID, store: str | Path | None = None) -> Path:
    return ModelStore(store).root / name


def torch_available() -> bool:
    """Whether torch is installed, without importing it (a second of start-up that the
    engine's first ping, and so the plug-ins' first preview, would wait for)."""
    import importlib.util

    try:
        return importlib.util.find_spec("torch") is not None
    except (ImportError, ValueError):
        return False


def choose_runtime(name: str = "auto") -> str:
    """`auto`: torch where it is installed, else ONNX Runtime (the light engine)."""
    if name not in RUNTIMES:
        raise BokehkitError(f"--runtime {name!r}: choose one of {', '.join(RUNTIMES)}")
    if name == "auto":
        return "torch" if torch_available() else "onnx"
    if name == "torch" and not torch_available():
        raise BokehkitError(
            "--runtime torch: torch is not installed in this engine; use --runtime onnx "
            "(after exporting the model on a full install: bokehkit models export-onnx "
            "magicbokeh)"
        )
    return name


def model_status(
    name: str = bundle.MODEL_ID, store: str | Path | None = None, runtime: str = "auto"
) -> tuple[bool, str]:
    """(available, reason): whether `bokehkit render --engine magicbokeh` can run; over
    ONNX (`auto` without torch) that needs the bundle's ONNX export."""
    try:
        chosen = choose_runtime(runtime)
    except BokehkitError as exc:
        return False, str(exc)
    folder = bundle_folder(name, store)
    if chosen == "torch":
        return bundle.status(folder)
    from ..magicbokeh.onnx_stages import export_status

    ok, reason = export_status(folder)
    if not ok and runtime == "auto":
        reason = f"torch is not installed in this engine, so MagicBokeh runs over ONNX: {reason}"
    return ok, reason


def defocus_from_coc(signed_coc_px: np.ndarray) -> np.ndarray:
    """The network's defocus map from blur radii in output pixels, capped at the trained
    range."""
    return np.minimum(np.abs(signed_coc_px) / np.float32(RADIUS_PER_UNIT_DEFOCUS_PX),
                      np.float32(MAX_DEFOCUS)).astype(np.float32)  # fmt: skip


def _cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX: where bf16 convolutions run faster than fp32 (measured 2.5×
    with channels-last on an AVX512-BF16 EPYC; emulated bf16 elsewhere is slower)."""
    if not sys.platform.startswith("linux"):
        return False
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        pass
    return False


def choose_device(name: str = "auto") -> torch.device:
    """`auto`: CUDA, else Apple MPS, else the CPU; a named device must be available."""
    import torch

    if name not in DEVICES:
        raise BokehkitError(f"--device {name!r}: choose one of {', '.join(DEVICES)}")
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise BokehkitError("--device cuda: no CUDA device is available to torch here")
    if name == "mps" and not torch.backends.mps.is_available():
        raise BokehkitError("--device mps: Apple MPS is not available to torch here")
    return torch.device(name)


def choose_dtype(device: torch.device, precision: str = "auto") -> torch.dtype:
    """`auto`: fp16 on CUDA and MPS; on the CPU bf16 where it is native, else fp32."""
    import torch

    if precision not in PRECISIONS:
        raise BokehkitError(f"--precision {precision!r}: choose one of {', '.join(PRECISIONS)}")
    kind = device.type
    if precision == "auto":
        if kind in ("cuda", "mps"):
            return torch.float16
        return torch.bfloat16 if _cpu_has_native_bf16() else torch.float32
    if precision == "fp16" and kind == "cpu":
        raise BokehkitError("--precision fp16 is for GPUs; on the CPU use fp32 or bf16")
    if precision == "bf16" and kind == "cuda" and not torch.cuda.is_bf16_supported():
        raise BokehkitError("--precision bf16: this CUDA device has no bf16; use fp16")
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def check_onnx_options(device: str = "auto", precision: str = "auto") -> None:
    """The ONNX runtime runs fp32 on the CPU: refuse asking for anything else."""
    if device not in ("auto", "cpu"):
        raise BokehkitError(
            f"--device {device}: the ONNX runtime runs on the CPU; use --device cpu (or auto), "
            "or --runtime torch"
        )
    if precision not in ("auto", "fp32"):
        raise BokehkitError(
            f"--precision {precision}: the ONNX export is fp32; use --precision fp32 (or "
            "auto), or --runtime torch"
        )


#: The network of the last render (see MagicBokehRenderer._network).
_LOADED: dict = {}


class MagicBokehRenderer(Renderer):
    """The default (fast) mode behind the render pipeline. Trained on the display-referred
    photo and the depth as they are, with its own DAdepth: the pipeline adds no highlight
    recovery, grain or depth-edge snapping, and prefers DAdepth; radii up to 32 px (the
    range it was trained on)."""

    name = "magicbokeh"
    max_radius_px = MAX_RADIUS_PX
    preferred_depth_models = ("dadepth",)
    recovers_highlights = False
    adds_grain = False
    snaps_depth_edges = False

    def __init__(
        self,
        model: str = bundle.MODEL_ID,
        store: str | Path | None = None,
        device: str = "auto",
        precision: str = "auto",
        runtime: str = "auto",
        **_,
    ):
        self.folder = bundle_folder(model, store)
        self.runtime = choose_runtime(runtime)
        ok, reason = model_status(model, store, runtime)
        if not ok:
            raise BokehkitError(f"engine magicbokeh: {reason}")
        if self.runtime == "onnx":
            check_onnx_options(device, precision)
            self.device = self.dtype = None
        else:
            self.device = choose_device(device)
            self.dtype = choose_dtype(self.device, precision)

    def describe(self) -> str:
        if self.runtime == "onnx":
            return "MagicBokeh on cpu (ONNX Runtime), float32"
        return f"MagicBokeh on {self.device.type}, {str(self.dtype).removeprefix('torch.')}"

    def _network(self):
        """The loaded network, kept for the next render with the same bundle, runtime,
        device and precision: the engine server renders preview after preview, and the
        real weights take seconds to load. One is kept at a time."""
        stamps = tuple(
            p.stat().st_mtime_ns if p.exists() else 0
            for p in (self.folder / bundle.MANIFEST, self.folder / "onnx" / "export.json")
        )  # a new import or export is loaded afresh
        key = (str(self.folder), stamps, self.runtime, str(self.device), str(self.dtype))
        if _LOADED.get("key") != key:
            _LOADED.clear()  # drop the old one before loading another
            if self.runtime == "onnx":
                from ..magicbokeh.onnx_stages import OnnxStages

                net = OnnxStages(self.folder)
            else:
                from ..magicbokeh.network import load_network

                net = load_network(self.folder, self.dtype, self.device)
            _LOADED.update(key=key, net=net)
        return _LOADED["net"]

    def render(self, job: RenderJob, progress: Progress) -> np.ndarray:
        from ..magicbokeh.fast import render_defocus

        progress.update(0.0, "loading MagicBokeh")
        net = self._network()
        # The network sees display-referred sRGB in [0, 1], as it was trained.
        srgb = linear_to_srgb(np.clip(job.linear_rgb, 0.0, 1.0))
        defocus = defocus_from_coc(job.signed_coc_px)
        out = render_defocus(srgb, defocus, net, progress.span(0.05, 1.0))
        return srgb_to_linear(out)

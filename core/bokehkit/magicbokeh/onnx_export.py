"""``bokehkit models export-onnx magicbokeh``: the network's three stages as ONNX files.

The light engine has no torch; it runs MagicBokeh's default mode over onnxruntime
(`onnx_stages.OnnxStages`, the file layout is described there). Here, on a full install,
the bundle's network is loaded in fp32 with contiguous weights and each stage is exported
with torch's dynamo exporter (``torch.export`` + onnxscript; the one `onnxtools` uses for
depth and SR; it handles diffusers' UNet with symbolic sizes), batch 1, height and width
dynamic:

- encode: image sides any multiple of 8 px (the fast driver's VAE tiles are);
- denoise: latent sides any multiple of 8 (= 64 px, as the fast driver's latent tiles
  are). The focus-masked attention's biases are computed in the graph: the network's own
  `FocusMasks` picks a level by token count, which is a Python decision a graph cannot
  keep, so for the export each masked layer is told its level once (found by running the
  network on one small tile) and the level's labels are the pixel labels sliced every
  8·2^level pixels, which is what nearest downsampling gives when the sides divide;
- decode: latent sides any size.

After writing, each stage is run through onnxruntime once against torch on a small
random tile; the measured differences are printed and kept in the export's manifest,
and an export that is far off is refused.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..errors import BokehkitError
from ..onnxtools import quiet_export
from ..store.download import file_sha256
from . import bundle
from .network import MASK_BIAS, MagicBokehNetwork, load_network
from .onnx_stages import (
    EXPORT_DIR,
    EXPORT_FORMAT,
    EXPORT_MANIFEST,
    EXPORT_VERSION,
    STAGES,
    bundle_manifest_sha256,
    export_status,
    open_session,
)

OPSET = 18
#: refuse an export whose stage differs from torch by more than this × max(1, max |torch|)
#: on the check tile (fp32 summation-order noise is ~1e-6 of that; a wrong graph is ~1)
CHECK_TOLERANCE = 1e-2


# ---------------------------------------------------------------------- graph-friendly masks


class _LevelLabels:
    """Stands in for the network's `FocusMasks` during the export: `set` keeps the pixel
    labels, `bias(level)` slices them down to an attention level, once per level."""

    def __init__(self) -> None:
        self.labels: torch.Tensor | None = None
        self.cache: dict[int, torch.Tensor] = {}

    def set(self, in_focus: torch.Tensor | None, latent_hw=None) -> None:
        self.labels = None if in_focus is None else in_focus.float()
        self.cache = {}

    def bias(self, level: int, dtype: torch.dtype) -> torch.Tensor:
        if level not in self.cache:
            step = 8 * 2**level  # pixels per token at this level
            lab = self.labels[:, :, ::step, ::step].flatten(1)  # (B, N)
            differ = lab[:, :, None] != lab[:, None, :]
            self.cache[level] = (differ.to(dtype) * MASK_BIAS).unsqueeze(1)  # (B, 1, N, N)
        return self.cache[level]


class _LayerMask:
    """One masked layer's view of `_LevelLabels`: the processor's ``masks`` object."""

    def __init__(self, labels: _LevelLabels, level: int):
        self.labels, self.level = labels, level

    def bias(self, n_tokens: int, dtype: torch.dtype, device) -> torch.Tensor:
        return self.labels.bias(self.level, dtype)


class _TokenProbe:
    def __init__(self) -> None:
        self.n_tokens: int | None = None

    def bias(self, n_tokens: int, dtype: torch.dtype, device) -> None:
        self.n_tokens = n_tokens
        return None


def _processors(net: MagicBokehNetwork) -> dict[str, object]:
    modules = dict(net.unet.named_modules())
    return {name: modules[name].processor for name in net.bokeh_layers}


def attention_levels(net: MagicBokehNetwork) -> dict[str, int]:
    """Each masked layer's level (0 = the latent, k = latent / 2^k), from its token
    count on one 8×8-latent tile."""
    procs = _processors(net)
    saved = {name: p.masks for name, p in procs.items()}
    probes = {name: _TokenProbe() for name in procs}
    try:
        for name, p in procs.items():
            p.masks = probes[name]
        with torch.inference_mode():
            net.denoise(torch.zeros(1, 4, 8, 8), torch.zeros(1, 1, 64, 64))
    finally:
        for name, p in procs.items():
            p.masks = saved[name]
    by_tokens = {64: 0, 16: 1, 4: 2, 1: 3}
    levels = {name: by_tokens.get(probe.n_tokens) for name, probe in probes.items()}
    odd = {n: probes[n].n_tokens for n, level in levels.items() if level is None}
    if odd:
        raise BokehkitError(f"ONNX export: masked attention layers at unexpected sizes: {odd}")
    return levels


@contextlib.contextmanager
def graph_masks(net: MagicBokehNetwork):
    """The network with its masked attention reading level biases computed from the
    in-focus labels by tensor operations only (for tracing), restored afterwards."""
    levels = attention_levels(net)
    procs = _processors(net)
    saved_masks = {name: p.masks for name, p in procs.items()}
    saved_focus = net.focus_masks
    labels = _LevelLabels()
    try:
        net.focus_masks = labels
        for name, p in procs.items():
            p.masks = _LayerMask(labels, levels[name])
        yield net
    finally:
        net.focus_masks = saved_focus
        for name, p in procs.items():
            p.masks = saved_masks[name]


# ---------------------------------------------------------------------- the stage modules


class _Encode(nn.Module):
    def __init__(self, net: MagicBokehNetwork):
        super().__init__()
        self.net = net

    def forward(self, image_m11: torch.Tensor) -> torch.Tensor:
        return self.net.encode(image_m11)


class _Denoise(nn.Module):
    def __init__(self, net: MagicBokehNetwork):
        super().__init__()
        self.net = net

    def forward(
        self, latent: torch.Tensor, defocus: torch.Tensor, in_focus: torch.Tensor
    ) -> torch.Tensor:
        return self.net.denoise(latent, defocus, in_focus)


class _Decode(nn.Module):
    def __init__(self, net: MagicBokehNetwork):
        super().__init__()
        self.net = net

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return self.net.decode(x0)


def _examples(g: torch.Generator, lh: int, lw: int) -> dict[str, tuple[torch.Tensor, ...]]:
    """Inputs of each stage for an lh×lw-latent tile: image in [−1, 1], latents ~N(0, 1),
    defocus in [0, 0.4] (about a quarter in focus)."""
    image = torch.rand(1, 3, 8 * lh, 8 * lw, generator=g) * 2 - 1
    latent = torch.randn(1, 4, lh, lw, generator=g)
    defocus = torch.rand(1, 1, 8 * lh, 8 * lw, generator=g) * 0.4
    in_focus = (defocus <= 0.1).float()
    return {"encode": (image,), "denoise": (latent, defocus, in_focus), "decode": (latent,)}


def _dynamic_shapes(stage: str) -> dict:
    h = torch.export.Dim(f"{stage}_h", min=1)
    w = torch.export.Dim(f"{stage}_w", min=1)
    if stage == "encode":
        return {"image_m11": {2: 8 * h, 3: 8 * w}}
    if stage == "denoise":  # latent sides multiples of 8; labels and defocus 8× that
        pixels = {2: 64 * h, 3: 64 * w}
        return {"latent": {2: 8 * h, 3: 8 * w}, "defocus": pixels, "in_focus": pixels}
    return {"x0": {2: h, 3: w}}


def _export(module: nn.Module, args: tuple, dest: Path, stage: str) -> None:
    """The dynamo exporter, weights as external data next to `dest`; quiet."""
    _, inputs, output = STAGES[stage]
    quiet_export(module, args, dest, list(inputs), [output], _dynamic_shapes(stage), OPSET,
                 external_data=True)  # fmt: skip


def export_network(net: MagicBokehNetwork, dest: Path, log: Callable[[str], None]) -> None:
    """Write the three stage files of `net` (fp32, CPU) into the folder `dest`."""
    examples = _examples(torch.Generator().manual_seed(0), 16, 24)  # h ≠ w, neither 1
    modules = {"encode": _Encode(net), "denoise": _Denoise(net), "decode": _Decode(net)}
    with graph_masks(net), torch.no_grad():
        for stage, (file, _, _) in STAGES.items():
            log(f"exporting {stage} → {file}")
            _export(modules[stage], examples[stage], dest / file, stage)


def check_export(net: MagicBokehNetwork, where: Path, lh: int = 8, lw: int = 16) -> dict:
    """Max |onnxruntime − torch| of each stage on one random lh×lw-latent tile; raises
    when a stage is beyond `CHECK_TOLERANCE`."""
    errors = {}
    examples = _examples(torch.Generator().manual_seed(1), lh, lw)
    for stage, (file, inputs, _) in STAGES.items():
        args = examples[stage]
        with torch.inference_mode():
            want = getattr(net, stage)(*args).float().numpy()
        sess = open_session(where / file)
        got = sess.run(None, {n: a.numpy() for n, a in zip(inputs, args, strict=True)})[0]
        del sess
        err = float(np.max(np.abs(got - want))) if got.shape == want.shape else float("inf")
        errors[stage] = err
        if not err <= CHECK_TOLERANCE * max(1.0, float(np.max(np.abs(want)))):
            raise BokehkitError(
                f"ONNX export: {stage} differs from torch by {err:.3g} (shape {got.shape} "
                f"vs {want.shape}); not written. Please report this with your torch and "
                "onnxscript versions"
            )
    return errors


def _file_entries(where: Path) -> dict:
    return {
        p.name: {"sha256": file_sha256(p), "size": p.stat().st_size}
        for p in sorted(where.iterdir())
        if p.is_file() and p.name != EXPORT_MANIFEST
    }


def export_magicbokeh_onnx(
    folder: str | Path, force: bool = False, log: Callable[[str], None] = print
) -> Path:
    """Export the bundle in `folder` to ``folder/onnx`` (see `onnx_stages`); an up-to-date
    export is kept unless `force`. Returns the export folder."""
    folder = Path(folder)
    ok, reason = bundle.status(folder)
    if not ok:
        raise BokehkitError(reason)
    target = folder / EXPORT_DIR
    if not force and export_status(folder)[0]:
        log(f"{target}: the ONNX export is up to date (--force exports again)")
        return target
    source_sha = bundle_manifest_sha256(folder)
    log("loading MagicBokeh (fp32)")
    net = load_network(folder, torch.float32, "cpu", channels_last=False)
    tmp = folder / f".{EXPORT_DIR}.{os.getpid()}.part"
    old = folder / f".{EXPORT_DIR}.{os.getpid()}.old"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        export_network(net, tmp, log)
        log("checking the export against torch")
        errors = check_export(net, tmp)
        log("max |onnxruntime − torch|: " + ", ".join(f"{k} {v:.2g}" for k, v in errors.items()))
        manifest = {
            "format": EXPORT_FORMAT,
            "version": EXPORT_VERSION,
            "bundle_manifest_sha256": source_sha,
            "precision": "fp32",
            "opset": OPSET,
            "exporter": f"torch {torch.__version__} (dynamo)",
            "check_max_abs_error": errors,
            "files": _file_entries(tmp),
        }
        (tmp / EXPORT_MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if target.exists():
            os.replace(target, old)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    log(f"{target}: ONNX export written")
    return target

"""Loading Depth-Anything-V2 checkpoints into our network, with strict key matching.

The official files (`depth_anything_v2_vit{s,b,l}.pth`) are plain state dicts saved with
`torch.save`. MagicBokeh's `DAdepth.pth` is a DDP training checkpoint: its weights are under
"model" (a bare state dict is accepted too, as its `prepare_data.py` does) with a "module."
prefix on every key. Files are read with `weights_only=True`: tensors and plain containers
only, never arbitrary pickled code.
"""

from __future__ import annotations

import threading
from pathlib import Path

from ...errors import BokehkitError
from .specs import NETS, POS_GRID, DepthNet

_lock = threading.Lock()
_cache: dict[tuple, object] = {}


def read_state_dict(path: str | Path) -> dict:
    """The network's tensors from a checkpoint file, keys as the official code names them."""
    import pickle

    import torch

    path = Path(path)
    try:
        try:  # memory-mapped: a 1.3 GB file is not copied twice
            obj = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
        except RuntimeError:  # the legacy (pre-zip) format cannot be mapped
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError) as exc:
        raise BokehkitError(
            f"cannot read {path} as a torch checkpoint ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0][:120]})"
        ) from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]  # a training checkpoint (DAdepth.pth)
    if not isinstance(obj, dict) or not obj:
        raise BokehkitError(f"{path} holds no state dict")
    out = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            continue
        out[key.removeprefix("module.")] = value
    return out


def shape_of(state: dict) -> tuple[int, int]:
    """(width, blocks) of the ViT in a state dict."""
    try:
        pos = state["pretrained.pos_embed"]
    except KeyError:
        raise BokehkitError("not a Depth-Anything-V2 checkpoint: no pretrained.pos_embed") from None
    if int(pos.shape[1]) != POS_GRID * POS_GRID + 1:
        raise BokehkitError(f"position embeddings for {int(pos.shape[1]) - 1} patches, not 37×37")
    blocks = len({k.split(".")[2] for k in state if k.startswith("pretrained.blocks.")})
    return int(pos.shape[-1]), blocks


def describe(width: int, blocks: int) -> str:
    for n in NETS.values():
        if (n.embed_dim, n.depth) == (width, blocks):
            return f"a Depth-Anything-V2 {n.encoder} network"
    return f"a ViT of width {width} with {blocks} blocks"


def build(net: DepthNet):
    from .network import DepthAnythingV2

    return DepthAnythingV2(**net.config)


def load_network(net: DepthNet, path: str | Path, device: str = "cpu"):
    """Our DepthAnythingV2 with the file's weights, eval mode, no gradients; cached per file."""
    path = Path(path)
    key = (net.model_id, str(path), path.stat().st_mtime_ns, device)
    with _lock:
        model = _cache.get(key)
        if model is not None:
            return model
    state = read_state_dict(path)
    width, blocks = shape_of(state)
    if (width, blocks) != (net.embed_dim, net.depth):
        raise BokehkitError(
            f"{path.name} holds {describe(width, blocks)}, but {net.model_id} is "
            f"{describe(net.embed_dim, net.depth)}"
        )
    model = build(net)
    ours = set(model.state_dict())
    missing, unexpected = sorted(ours - set(state)), sorted(set(state) - ours)
    if missing or unexpected:
        raise BokehkitError(
            f"{path.name} does not match {net.name}: {len(missing)} weights missing "
            f"({', '.join(missing[:3])}{'…' if len(missing) > 3 else ''}), {len(unexpected)} "
            f"unexpected ({', '.join(unexpected[:3])}{'…' if len(unexpected) > 3 else ''})"
        )
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:  # shapes
        raise BokehkitError(f"{path.name}: {str(exc).splitlines()[-1].strip()[:200]}") from None
    model = model.eval().to(device)
    for p in model.parameters():
        p.requires_grad_(False)
    with _lock:
        _cache.clear()
        _cache[key] = model
    return model

"""The depth networks bokehkit knows, as data (no torch needed to read them).

Depth-Anything-V2 (Yang et al., 2024; github.com/DepthAnything/Depth-Anything-V2) is a
DINOv2 ViT encoder (patch 14, layer scale, no register tokens, pretrained at 518×518, so a
37×37 grid of position embeddings) with a DPT head that reads four of its blocks. The sizes
and the blocks each reads are the official `model_configs` and `intermediate_layer_idx`.
MagicBokeh's degradation-aware depth (`DAdepth.pth`, HF LinxiaoShi/Magicbokeh) is the Large
network with other weights: its repository's `depth_anything_v2/` is upstream's, used with
encoder 'vitl'.

Licences (the official README's LICENSE section, checked at upstream a561b84, 2026-03-24):
Small is Apache-2.0; Base, Large (and Giant) are CC-BY-NC-4.0, non-commercial. The code of
the official repository is Apache-2.0. DAdepth is fine-tuned from Large, so CC-BY-NC-4.0
binds it too; MagicBokeh's repository has no LICENSE file.
"""

from __future__ import annotations

from dataclasses import dataclass

PATCH = 14
#: The short side the networks were trained at (37 patches), and the official default.
INPUT_SIZE = 518
#: The pretrained grid of position embeddings (518 / 14).
POS_GRID = 37
#: ImageNet statistics, applied to sRGB-encoded values in [0, 1] (the official transform).
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class DepthNet:
    """One checkpoint: its network's shape and where the weights come from."""

    model_id: str
    name: str
    encoder: str  # the official name: vits, vitb, vitl
    embed_dim: int
    depth: int  # transformer blocks
    num_heads: int
    features: int  # DPT head width
    out_channels: tuple[int, int, int, int]
    layers: tuple[int, int, int, int]  # blocks the head reads
    file: str  # the file name in the model store
    licence: str
    commercial_use: bool

    @property
    def config(self) -> dict:
        """Constructor arguments of `network.DepthAnythingV2`."""
        return {
            "embed_dim": self.embed_dim,
            "depth": self.depth,
            "num_heads": self.num_heads,
            "features": self.features,
            "out_channels": self.out_channels,
            "layers": self.layers,
        }


_S = {"embed_dim": 384, "depth": 12, "num_heads": 6, "features": 64}
_B = {"embed_dim": 768, "depth": 12, "num_heads": 12, "features": 128}
_L = {"embed_dim": 1024, "depth": 24, "num_heads": 16, "features": 256}
_NC = "CC-BY-NC-4.0 (non-commercial use only)"

NETS: dict[str, DepthNet] = {
    n.model_id: n
    for n in (
        DepthNet(
            "depth-anything-v2-small", "Depth-Anything-V2 Small (ViT-S, 24.8M)", "vits",
            **_S, out_channels=(48, 96, 192, 384), layers=(2, 5, 8, 11),
            file="depth_anything_v2_vits.pth", licence="Apache-2.0", commercial_use=True,
        ),
        DepthNet(
            "depth-anything-v2-base", "Depth-Anything-V2 Base (ViT-B, 97.5M)", "vitb",
            **_B, out_channels=(96, 192, 384, 768), layers=(2, 5, 8, 11),
            file="depth_anything_v2_vitb.pth", licence=_NC, commercial_use=False,
        ),
        DepthNet(
            "depth-anything-v2-large", "Depth-Anything-V2 Large (ViT-L, 335.3M)", "vitl",
            **_L, out_channels=(256, 512, 1024, 1024), layers=(4, 11, 17, 23),
            file="depth_anything_v2_vitl.pth", licence=_NC, commercial_use=False,
        ),
        DepthNet(
            "dadepth", "MagicBokeh degradation-aware depth (DA-V2 Large weights, fine-tuned)",
            "vitl", **_L, out_channels=(256, 512, 1024, 1024), layers=(4, 11, 17, 23),
            file="DAdepth.pth", licence=_NC + ", as Depth-Anything-V2 Large it is tuned from",
            commercial_use=False,
        ),
    )
}  # fmt: skip

#: Tried in this order when the caller does not name a model (best first).
PREFERENCE = ("depth-anything-v2-large", "dadepth", "depth-anything-v2-base",
              "depth-anything-v2-small")  # fmt: skip


def net(model_id: str) -> DepthNet:
    from ...errors import BokehkitError

    try:
        return NETS[model_id]
    except KeyError:
        raise BokehkitError(f"unknown depth model {model_id!r}; known: {', '.join(NETS)}") from None


def network_input_size(width: int, height: int, short_side: int = INPUT_SIZE) -> tuple[int, int]:
    """(width, height) the network sees: the official `Resize(keep_aspect_ratio=True,
    ensure_multiple_of=14, resize_method='lower_bound')`: scaled so the short side is at
    least `short_side`, each side rounded to a multiple of 14, never below `short_side`."""
    scale = max(short_side / width, short_side / height)

    def fit(x: float) -> int:
        y = int(round(x / PATCH) * PATCH)
        if y < short_side:
            y = int(-(-x // PATCH) * PATCH)  # ceil
        return y

    return fit(scale * width), fit(scale * height)

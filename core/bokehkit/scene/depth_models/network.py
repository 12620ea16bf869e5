"""Depth-Anything-V2 in torch: a DINOv2 ViT encoder and a DPT head.

Written for bokehkit from the architecture of the official code (Apache-2.0,
github.com/DepthAnything/Depth-Anything-V2, `depth_anything_v2/dpt.py`, `dinov2.py`,
`dinov2_layers/`, `util/blocks.py`). Module names follow it exactly, so the official
checkpoints load with strict key matching: ``pretrained.cls_token``, ``pretrained.pos_embed``,
``pretrained.mask_token``, ``pretrained.patch_embed.proj``, ``pretrained.blocks.N.{norm1,
attn.qkv, attn.proj, ls1.gamma, norm2, mlp.fc1, mlp.fc2, ls2.gamma}``, ``pretrained.norm``,
``depth_head.projects.i``, ``depth_head.resize_layers.{0,1,3}``,
``depth_head.scratch.layerK_rn``, ``depth_head.scratch.refinenetK.{out_conv, resConfUnit1,
resConfUnit2}.{conv1, conv2}``, ``depth_head.scratch.output_conv1``,
``depth_head.scratch.output_conv2.{0,2}``.

What differs from the official code, none of it in the result beyond float rounding:
attention is `scaled_dot_product_attention` (the same softmax(q·kᵀ/√d)·v, faster on CPU and
without the N×N matrix in memory); the resampling of the 37×37 position embeddings to the
input's grid is written as two small matrix products that reproduce torch's bicubic
`interpolate(scale_factor=(g + 0.1) / 37)` exactly, so the ONNX export keeps free height and
width; only inference is supported (no drop-path, no masks, no xFormers).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .specs import PATCH, POS_GRID

#: DINOv2's work-around offset for the position-embedding resampling (interpolate_offset).
POS_OFFSET = 0.1
#: torch's bicubic kernel parameter.
CUBIC_A = -0.75


# ---------------------------------------------------------------------------- encoder
class PatchEmbed(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.proj = nn.Conv2d(3, dim, kernel_size=PATCH, stride=PATCH)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x).flatten(2).transpose(1, 2)  # B × (gh·gw) × D


class Attention(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=True)
        self.proj = nn.Linear(dim, dim, bias=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)
        x = F.scaled_dot_product_attention(q, k, v)
        return self.proj(x.transpose(1, 2).reshape(b, n, c))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class LayerScale(nn.Module):
    def __init__(self, dim: int) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma


class Block(nn.Module):
    def __init__(self, dim: int, num_heads: int) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.ls1 = LayerScale(dim)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, 4 * dim)
        self.ls2 = LayerScale(dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.ls1(self.attn(self.norm1(x)))
        return x + self.ls2(self.mlp(self.norm2(x)))


def bicubic_matrix(out_size: torch.Tensor | int, in_size: int) -> torch.Tensor:
    """out×in weights of torch's bicubic resampling (align_corners=False, borders clamped)
    with the scale DINOv2 asks for: scale_factor = (out + 0.1) / in, so source coordinates
    step by in / (out + 0.1). Built from tensor ops only, so it exports with a free size."""
    step = in_size / (out_size + POS_OFFSET)
    dst = torch.arange(out_size, dtype=torch.float32)
    src = (dst + 0.5) * step - 0.5
    base = torch.floor(src)
    t = src - base
    a = CUBIC_A

    def near(x):  # |x| <= 1
        return ((a + 2) * x - (a + 3)) * x * x + 1

    def far(x):  # 1 < |x| < 2
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a

    weights = (far(t + 1), near(t), near(1 - t), far(2 - t))
    cols = torch.arange(in_size, dtype=torch.float32)
    m = torch.zeros_like(src)[:, None] * cols[None, :]
    for k, w in enumerate(weights):
        idx = torch.clamp(base + (k - 1), 0, in_size - 1)
        m = m + w[:, None] * (idx[:, None] == cols[None, :]).to(torch.float32)
    return m


class DinoVisionTransformer(nn.Module):
    def __init__(self, embed_dim: int, depth: int, num_heads: int) -> None:
        super().__init__()
        self.embed_dim = embed_dim
        self.patch_embed = PatchEmbed(embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, POS_GRID * POS_GRID + 1, embed_dim))
        # Unused at inference, but in every official checkpoint (DINOv2's masked training).
        self.mask_token = nn.Parameter(torch.zeros(1, embed_dim))
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)

    def position_embedding(self, grid_h, grid_w) -> torch.Tensor:
        """1 × (1 + gh·gw) × D: the class token's embedding and the 37×37 grid resampled."""
        cls_pos = self.pos_embed[:, :1]
        grid = self.pos_embed[0, 1:].reshape(POS_GRID, POS_GRID, self.embed_dim)
        rows = bicubic_matrix(grid_h, POS_GRID)  # gh × 37
        cols = bicubic_matrix(grid_w, POS_GRID)  # gw × 37
        # out[i, j] = Σ_p Σ_q rows[i, p] · cols[j, q] · grid[p, q]
        g = torch.einsum("ip,pqd->iqd", rows, grid)
        g = torch.einsum("jq,iqd->ijd", cols, g)
        return torch.cat([cls_pos, g.reshape(1, -1, self.embed_dim)], dim=1)

    def intermediate(self, x: torch.Tensor, layers: tuple[int, ...]) -> list[torch.Tensor]:
        """The normalised patch tokens (class token dropped) after each block in `layers`."""
        grid_h, grid_w = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        tokens = self.patch_embed(x)
        tokens = torch.cat([self.cls_token.expand(tokens.shape[0], -1, -1), tokens], dim=1)
        tokens = tokens + self.position_embedding(grid_h, grid_w)
        out = []
        for i, blk in enumerate(self.blocks):
            tokens = blk(tokens)
            if i in layers:
                out.append(self.norm(tokens)[:, 1:])
        return out


# ---------------------------------------------------------------------------- DPT head
class ResidualConvUnit(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(F.relu(x))
        out = self.conv2(F.relu(out))
        return out + x


class FeatureFusionBlock(nn.Module):
    def __init__(self, features: int) -> None:
        super().__init__()
        self.out_conv = nn.Conv2d(features, features, 1)
        self.resConfUnit1 = ResidualConvUnit(features)  # noqa: N815 - the official name
        self.resConfUnit2 = ResidualConvUnit(features)  # noqa: N815

    def forward(self, x, skip=None, size=None):
        if skip is not None:
            x = x + self.resConfUnit1(skip)
        x = self.resConfUnit2(x)
        if size is None:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=True)
        else:
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return self.out_conv(x)


class DPTHead(nn.Module):
    def __init__(self, in_channels: int, features: int, out_channels) -> None:
        super().__init__()
        c = list(out_channels)
        self.projects = nn.ModuleList(nn.Conv2d(in_channels, oc, 1) for oc in c)
        self.resize_layers = nn.ModuleList(
            [
                nn.ConvTranspose2d(c[0], c[0], kernel_size=4, stride=4),
                nn.ConvTranspose2d(c[1], c[1], kernel_size=2, stride=2),
                nn.Identity(),
                nn.Conv2d(c[3], c[3], kernel_size=3, stride=2, padding=1),
            ]
        )
        scratch = nn.Module()
        for k in range(4):
            setattr(scratch, f"layer{k + 1}_rn", nn.Conv2d(c[k], features, 3, padding=1,
                                                           bias=False))  # fmt: skip
        for k in range(4):
            setattr(scratch, f"refinenet{k + 1}", FeatureFusionBlock(features))
        scratch.output_conv1 = nn.Conv2d(features, features // 2, 3, padding=1)
        scratch.output_conv2 = nn.Sequential(
            nn.Conv2d(features // 2, 32, 3, padding=1),
            nn.ReLU(True),
            nn.Conv2d(32, 1, 1),
            nn.ReLU(True),
            nn.Identity(),
        )
        self.scratch = scratch

    def forward(self, feats: list[torch.Tensor], grid_h, grid_w) -> torch.Tensor:
        maps = []
        for i, x in enumerate(feats):
            x = x.permute(0, 2, 1).reshape(x.shape[0], x.shape[-1], grid_h, grid_w)
            maps.append(self.resize_layers[i](self.projects[i](x)))
        s = self.scratch
        l1, l2, l3, l4 = (getattr(s, f"layer{k + 1}_rn")(m) for k, m in enumerate(maps))
        p4 = s.refinenet4(l4, size=l3.shape[2:])
        p3 = s.refinenet3(p4, l3, size=l2.shape[2:])
        p2 = s.refinenet2(p3, l2, size=l1.shape[2:])
        p1 = s.refinenet1(p2, l1)
        out = s.output_conv1(p1)
        out = F.interpolate(out, (grid_h * PATCH, grid_w * PATCH), mode="bilinear",
                            align_corners=True)  # fmt: skip
        return s.output_conv2(out)


class DepthAnythingV2(nn.Module):
    """N×3×H×W (H, W multiples of 14; ImageNet-normalised sRGB) → N×H×W relative
    disparity (≥ 0, larger = nearer, affine-invariant: no scale, no offset)."""

    def __init__(self, embed_dim, depth, num_heads, features, out_channels, layers) -> None:
        super().__init__()
        self.layers = tuple(layers)
        self.pretrained = DinoVisionTransformer(embed_dim, depth, num_heads)
        self.depth_head = DPTHead(embed_dim, features, out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grid_h, grid_w = x.shape[-2] // PATCH, x.shape[-1] // PATCH
        feats = self.pretrained.intermediate(x, self.layers)
        depth = self.depth_head(feats, grid_h, grid_w)
        return F.relu(depth).squeeze(1)

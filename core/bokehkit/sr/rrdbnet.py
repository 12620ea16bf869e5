"""RRDBNet (ESRGAN's generator, as Real-ESRGAN x4plus uses it) in torch.

The ×4 layout of Real-ESRGAN x4plus: no pixel-unshuffle in front; a 3×3 convolution to
`num_feat` features, `num_block` residual-in-residual dense blocks (RRDB), a 3×3 convolution
added back onto the first features (the long skip), then twice (nearest ×2, 3×3 convolution,
LeakyReLU 0.2), a 3×3 "HR" convolution with LeakyReLU and a last 3×3 convolution to RGB.

A dense block (RDB) has five 3×3 convolutions; the k-th sees the block's input concatenated
with the k−1 outputs before it (each `num_grow_ch` wide) and all but the last are followed by
LeakyReLU 0.2. The block returns 0.2·conv5 + input; an RRDB chains three of them and again
returns 0.2·out + input. Parameter names follow the published checkpoints
(``conv_first``, ``body.N.rdbK.convJ``, ``conv_body``, ``conv_up1``, ``conv_up2``,
``conv_hr``, ``conv_last``), so a state dict of the official x4plus `.pth` loads as well.

Only this package imports torch; the rest of bokehkit stays light.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

from .layout import conv_order, has_activation  # noqa: F401  (re-exported)

#: The configuration of Real-ESRGAN x4plus.
X4PLUS = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 64, "num_block": 23, "num_grow_ch": 32}
SLOPE = 0.2
RESIDUAL_SCALE = 0.2


class DenseBlock(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        for k in range(1, 6):
            out_ch = num_feat if k == 5 else num_grow_ch
            in_ch = num_feat + (k - 1) * num_grow_ch
            setattr(self, f"conv{k}", nn.Conv2d(in_ch, out_ch, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feats = [x]
        for k in range(1, 5):
            conv = getattr(self, f"conv{k}")
            feats.append(F.leaky_relu(conv(torch.cat(feats, 1)), SLOPE))
        return self.conv5(torch.cat(feats, 1)) * RESIDUAL_SCALE + x


class RRDB(nn.Module):
    def __init__(self, num_feat: int, num_grow_ch: int) -> None:
        super().__init__()
        self.rdb1 = DenseBlock(num_feat, num_grow_ch)
        self.rdb2 = DenseBlock(num_feat, num_grow_ch)
        self.rdb3 = DenseBlock(num_feat, num_grow_ch)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rdb3(self.rdb2(self.rdb1(x))) * RESIDUAL_SCALE + x


class RRDBNet(nn.Module):
    """×4 RRDBNet: (N, 3, H, W) in [0, 1] → (N, 3, 4H, 4W)."""

    scale = 4

    def __init__(
        self,
        num_in_ch: int = 3,
        num_out_ch: int = 3,
        num_feat: int = 64,
        num_block: int = 23,
        num_grow_ch: int = 32,
    ) -> None:
        super().__init__()
        self.config = {
            "num_in_ch": num_in_ch,
            "num_out_ch": num_out_ch,
            "num_feat": num_feat,
            "num_block": num_block,
            "num_grow_ch": num_grow_ch,
        }
        self.conv_first = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1)
        self.body = nn.Sequential(*[RRDB(num_feat, num_grow_ch) for _ in range(num_block)])
        self.conv_body = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up1 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_up2 = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_hr = nn.Conv2d(num_feat, num_feat, 3, 1, 1)
        self.conv_last = nn.Conv2d(num_feat, num_out_ch, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        feat = self.conv_first(x)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            feat = F.interpolate(feat, scale_factor=2.0, mode="nearest")
            feat = F.leaky_relu(conv(feat), SLOPE)
        return self.conv_last(F.leaky_relu(self.conv_hr(feat), SLOPE))

    @property
    def receptive_radius(self) -> int:
        """Input pixels on each side that can reach an output pixel (3×3 convolutions: one
        per layer at the input's size, a fraction of one after each ×2)."""
        lr_layers = 2 + 15 * self.config["num_block"]  # conv_first, the RDBs, conv_body
        return lr_layers + 2  # conv_up1 at ×2 (½ px), three at ×4 (¾ px): rounded up

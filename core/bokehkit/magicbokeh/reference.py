"""Reference mode: the official ``inference.py`` pipeline, step for step, in fp32.

1. depth in [0, 1] → ``uint8`` by truncation (``(d·255).astype(uint8)``, in float32);
2. focal value = the lower median (``torch.median``) of that depth where the mask is
   non-zero, /255 (0 for an empty mask, as the official code);
3. defocus = ``|depth/255 − focus|·K/32``; in focus where defocus ≤ 0.1;
4. pixel tiles of 512 at stride 256, plus the official extra row/column/corner of tiles
   flush with the bottom/right edges; each tile goes through the whole network
   (VAE encode → injector + UNet → VAE decode) on its own;
5. tiles blended with separable linear ramps ("tents") of ``tile − stride`` pixels,
   normalised by the summed weights;
6. the official 8-bit steps: the blended image is truncated to 8 bits, AdaIN-matched
   (per-channel mean/std, unbiased variance + 1e-5) to the input, clamped and truncated
   to 8 bits again (the official PNG). ``official_quantisation=False`` skips both
   truncations and returns the float result.

The VAE latent is the posterior mean (deterministic) unless a `seed` is given; then it is
sampled, tile after tile, from one CPU generator seeded with it (the official code samples
but never seeds). Images smaller than one tile (which the official code cannot take) are
mirror-padded to the tile size and cropped back.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ..errors import BokehkitError
from ..progress import Progress
from .inputs import IN_FOCUS_THRESHOLD, checked_inputs, focal_value, pad_to, quantise_depth
from .network import MagicBokehNetwork, load_network

TILE, STRIDE = 512, 256


# ---------------------------------------------------------------------- focus and defocus


def defocus_map(depth_u8: np.ndarray, focus: float, strength_k: float) -> torch.Tensor:
    """``|depth − focus|·K/32`` as a float32 (1, 1, H, W) tensor, in the official op order."""
    depth = torch.from_numpy(np.ascontiguousarray(depth_u8)).float().div(255)[None, None]
    return torch.abs(depth - focus) * (strength_k / 32)


# ---------------------------------------------------------------------- tiling


def tile_positions(h: int, w: int, tile: int = TILE, stride: int = STRIDE) -> list:
    """Top-left corners of the official tiles: the grid, then the edge row, the edge
    column and the corner when the size is not a multiple of the stride."""
    if h < tile or w < tile:
        raise BokehkitError(f"a {w}×{h} image is smaller than one {tile}-pixel tile")
    rows = range(0, h - tile + 1, stride)
    cols = range(0, w - tile + 1, stride)
    pos = [(i, j) for i in rows for j in cols]
    if h % stride or w % stride:
        if h % stride:
            pos += [(h - tile, j) for j in cols]
        if w % stride:
            pos += [(i, w - tile) for i in rows]
        if h % stride and w % stride:
            pos.append((h - tile, w - tile))
    return pos


def tile_weight(position, h: int, w: int, tile: int = TILE, overlap: int = STRIDE):
    """The official blend weight of one tile: ramps up from a start > 0, down before an
    end short of the image edge (float32, tile × tile)."""
    top, left = position
    wh, wv = torch.ones(tile), torch.ones(tile)
    if overlap > 0:
        if top < h - tile:
            wh[-overlap:] = torch.linspace(1, 0, overlap)
        if top > 0:
            wh[:overlap] = torch.linspace(0, 1, overlap)
        if left < w - tile:
            wv[-overlap:] = torch.linspace(1, 0, overlap)
        if left > 0:
            wv[:overlap] = torch.linspace(0, 1, overlap)
    return torch.matmul(wh.unsqueeze(1), wv.unsqueeze(0))


def weight_sum(h: int, w: int, tile: int = TILE, stride: int = STRIDE) -> torch.Tensor:
    """Σ of all tiles' weights over the image (the blend divides by it)."""
    total = torch.zeros(h, w)
    for top, left in tile_positions(h, w, tile, stride):
        total[top : top + tile, left : left + tile] += tile_weight(
            (top, left), h, w, tile, tile - stride
        )
    return total


# ---------------------------------------------------------------------- colour fix


def adain_colour_fix(target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
    """Per-channel mean/std of `target` (1×3×H×W) matched to `source`'s (unbiased
    variance + 1e-5), clamped to [0, 1]: the official ``adain_color_fix``."""

    def mean_std(x: torch.Tensor):
        b, c = x.shape[:2]
        std = (x.reshape(b, c, -1).var(dim=2) + 1e-5).sqrt().reshape(b, c, 1, 1)
        return x.reshape(b, c, -1).mean(dim=2).reshape(b, c, 1, 1), std

    s_mean, s_std = mean_std(source)
    t_mean, t_std = mean_std(target)
    return ((target - t_mean) / t_std * s_std + s_mean).clamp(0.0, 1.0)


def _truncate_u8(x: torch.Tensor) -> torch.Tensor:
    """torchvision ToPILImage on a float tensor: ``x·255`` truncated to uint8, as float."""
    return x.mul(255).to(torch.uint8).float().div(255)


# ---------------------------------------------------------------------- the render


def render_reference(
    image_srgb01: np.ndarray,
    depth01: np.ndarray,
    mask: np.ndarray,
    strength_k: float,
    bundle: MagicBokehNetwork | str | Path,
    seed: int | None = None,
    progress: Progress | None = None,
    tile: int = TILE,
    stride: int = STRIDE,
    official_quantisation: bool = True,
) -> np.ndarray:
    """MagicBokeh as the official ``inference.py`` renders it: H×W×3 float32 in [0, 1].

    `image_srgb01` H×W×3 sRGB in [0, 1] (already at output size); `depth01` H×W relative
    disparity in [0, 1] (1 = near); `mask` H×W, focus where > 0; `strength_k` the official
    K (32 = full strength); `bundle` a loaded network or a bundle folder.
    """
    net = load_network(bundle) if isinstance(bundle, (str, Path)) else bundle
    progress = progress or Progress()
    image = checked_inputs(image_srgb01, depth01, mask, strength_k)
    h, w = image.shape[:2]
    if not 0 < stride <= tile or tile % 8:
        raise BokehkitError(f"tile {tile} / stride {stride}: need 0 < stride ≤ tile, tile % 8 = 0")

    depth_u8 = quantise_depth(depth01)
    focus = focal_value(depth_u8, np.asarray(mask))
    ph, pw = max(h, tile), max(w, tile)
    disp = defocus_map(pad_to(depth_u8, ph, pw), focus, strength_k)
    lq = torch.from_numpy(np.ascontiguousarray(pad_to(image, ph, pw).transpose(2, 0, 1)))[None]

    device = net.alpha_bar_t.device
    generator = None if seed is None else torch.Generator().manual_seed(int(seed))
    positions = tile_positions(ph, pw, tile, stride)
    out = torch.zeros(1, 3, ph, pw)
    wsum = torch.zeros(1, 3, ph, pw)
    n = len(positions)
    with torch.no_grad():
        for k, (top, left) in enumerate(positions):
            progress.update(k / n, f"MagicBokeh tile {k + 1}/{n}")
            sl = (slice(None), slice(None), slice(top, top + tile), slice(left, left + tile))
            img_t, disp_t = lq[sl], disp[sl]
            in_focus = 1 - (disp_t > IN_FOCUS_THRESHOLD).float()
            y = net(
                (img_t * 2 - 1).to(device),
                disp_t.to(device),
                in_focus.to(device),
                generator=generator,
            )
            wt = tile_weight((top, left), ph, pw, tile, tile - stride)
            out[sl] += y.float().cpu() * wt
            wsum[sl] += wt
    progress.update(1.0, "MagicBokeh colour fix")
    covered = wsum > 0
    out[covered] /= wsum[covered]
    return finish(out, lq, h, w, official_quantisation)


def finish(out, lq, h: int, w: int, official_quantisation: bool) -> np.ndarray:
    """Network output in [−1, 1] (padded) → H×W×3 float32 in [0, 1]: cropped, AdaIN colour
    fix against the input `lq`, with the official 8-bit truncations around it if asked."""
    out = out[:, :, :h, :w] * 0.5 + 0.5
    src = lq[:, :, :h, :w]
    if official_quantisation:
        out = _truncate_u8(out)
    fixed = adain_colour_fix(out, src)
    if official_quantisation:
        fixed = _truncate_u8(fixed)
    return np.ascontiguousarray(fixed[0].permute(1, 2, 0).numpy(), dtype=np.float32)

"""Default ("fast") mode: the reference pipeline without its redundant VAE work.

The official code runs VAE encode → injector + UNet → VAE decode on every 512-pixel tile
at stride 256, so each pixel is encoded and decoded about three to four times, and the
VAE is ~77% of the FLOPs (spec §8.2). Here:

1. depth quantisation, focal value, defocus and in-focus labels exactly as the reference
   (its functions);
2. the image is encoded ONCE, in overlapping tiles (``vae_tile`` pixels, ``vae_overlap``
   latents of overlap) whose posterior means are tent-blended in latent space;
3. the injector + UNet run on overlapping LATENT tiles (``latent_tile`` latents = 8× that
   in pixels, ``latent_overlap`` latents of overlap), each with the in-focus labels of its
   own pixel area (the masked attention is per tile, as in the reference); the x0 tiles
   are tent-blended in latent space;
4. the blended latent is decoded ONCE, in overlapping tiles tent-blended in pixel space;
5. the official 8-bit truncations and AdaIN colour fix, as the reference.

Tiles along an axis are split evenly (the fewest tiles of at most the given size with at
least the given overlap), so no edge tile repeats work the way the official extra row
and column do. The image is mirror-padded to a multiple of 64 pixels (8 latents, the
UNet's three downsamplers) and cropped back. The output is not identical to the
reference (different tile borders and GroupNorm statistics); tests measure the PSNR.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from ..errors import BokehkitError
from ..progress import Progress
from . import reference as ref
from .network import IN_FOCUS_THRESHOLD, MagicBokehNetwork, load_network

VAE_TILE = 512  # pixels; 64 latents
VAE_OVERLAP = 8  # latents (64 px): the VAE's receptive field is local, GroupNorm is not
LATENT_TILE = 64  # latents (512 px, the size the network was trained on)
LATENT_OVERLAP = 16  # latents
PAD_MULTIPLE = 64  # pixels


def split_axis(length: int, tile: int, overlap: int, multiple: int = 1) -> tuple[list, int]:
    """Even split of [0, length) into the fewest tiles of size ≤ `tile` overlapping by
    ≥ `overlap`: (starts, size). Sizes are rounded up to `multiple` (capped at length)."""
    if length <= tile:
        return [0], length
    if not 0 <= overlap < tile:
        raise BokehkitError(f"tile overlap {overlap} must be in [0, {tile})")
    n = math.ceil((length - overlap) / (tile - overlap))
    size = math.ceil((length + (n - 1) * overlap) / n)
    size = min(length, math.ceil(size / multiple) * multiple)
    if n == 1:
        return [0], length
    starts = [round(i * (length - size) / (n - 1)) for i in range(n)]
    return starts, size


def _ramp(size: int, first: bool, last: bool, overlap: int) -> torch.Tensor:
    """1 inside, linear ramps of `overlap` samples at the sides that meet another tile."""
    w = torch.ones(size)
    if overlap > 0:
        if not first:
            w[:overlap] = torch.linspace(0, 1, overlap + 2)[1:-1]
        if not last:
            w[-overlap:] = torch.linspace(1, 0, overlap + 2)[1:-1]
    return w


def tiles_2d(h: int, w: int, tile: int, overlap: int, multiple: int = 1) -> list:
    """(top, left, th, tw, weight th×tw) for an even overlapping tiling of h×w."""
    rows, th = split_axis(h, tile, overlap, multiple)
    cols, tw = split_axis(w, tile, overlap, multiple)
    out = []
    for i, top in enumerate(rows):
        wr = _ramp(th, i == 0, i == len(rows) - 1, min(overlap, th // 2))
        for j, left in enumerate(cols):
            wc = _ramp(tw, j == 0, j == len(cols) - 1, min(overlap, tw // 2))
            out.append((top, left, th, tw, wr[:, None] * wc[None, :]))
    return out


def _blend(
    tiles: list,
    src_shape: tuple[int, int],
    fn: Callable[[int, int, int, int], torch.Tensor],
    scale: int,
    channels: int,
    tick: Callable[[str], None],
    what: str,
) -> torch.Tensor:
    """Σ w·fn(tile) / Σ w over a canvas `scale`× the source grid (weights upsampled
    nearest when scale > 1)."""
    h, w = src_shape[0] * scale, src_shape[1] * scale
    out = torch.zeros(1, channels, h, w)
    wsum = torch.zeros(1, 1, h, w)
    for k, (top, left, th, tw, wt) in enumerate(tiles):
        tick(f"{what} {k + 1}/{len(tiles)}")
        y = fn(top, left, th, tw).float().cpu()
        if scale > 1:
            wt = wt.repeat_interleave(scale, 0).repeat_interleave(scale, 1)
        sl = (slice(None), slice(None), slice(top * scale, (top + th) * scale),
              slice(left * scale, (left + tw) * scale))  # fmt: skip
        out[sl] += y * wt
        wsum[sl] += wt
    return out / wsum


def render_fast(
    image_srgb01: np.ndarray,
    depth01: np.ndarray,
    mask: np.ndarray,
    strength_k: float,
    bundle: MagicBokehNetwork | str | Path,
    progress: Progress | None = None,
    vae_tile: int = VAE_TILE,
    vae_overlap: int = VAE_OVERLAP,
    latent_tile: int = LATENT_TILE,
    latent_overlap: int = LATENT_OVERLAP,
    official_quantisation: bool = True,
) -> np.ndarray:
    """MagicBokeh in the default mode: H×W×3 float32 in [0, 1] (arguments as
    `render_reference`; tile sizes in pixels for `vae_tile`, latents for the rest)."""
    net = load_network(bundle) if isinstance(bundle, (str, Path)) else bundle
    progress = progress or Progress()
    image = ref.checked_inputs(image_srgb01, depth01, mask, strength_k)
    h, w = image.shape[:2]
    if vae_tile % 8 or vae_tile < 64 or latent_tile < 8:
        raise BokehkitError(f"vae_tile {vae_tile} (a multiple of 8, ≥ 64) / latent_tile "
                            f"{latent_tile} (≥ 8)")  # fmt: skip

    depth_u8 = ref.quantise_depth(depth01)
    focus = ref.focal_value(depth_u8, np.asarray(mask))
    ph, pw = (math.ceil(max(n, 1) / PAD_MULTIPLE) * PAD_MULTIPLE for n in (h, w))
    disp = ref.defocus_map(ref._pad_to(depth_u8, ph, pw), focus, strength_k)
    in_focus = 1 - (disp > IN_FOCUS_THRESHOLD).float()
    lq = torch.from_numpy(np.ascontiguousarray(ref._pad_to(image, ph, pw).transpose(2, 0, 1)))[None]
    lh, lw = ph // 8, pw // 8
    device, dtype = net.alpha_bar_t.device, net.dtype

    enc = tiles_2d(lh, lw, vae_tile // 8, vae_overlap)
    core = tiles_2d(lh, lw, latent_tile, latent_overlap, multiple=8)
    dec = enc
    total = len(enc) + len(core) + len(dec)
    done = [0]

    def tick(text: str) -> None:
        progress.update(done[0] / total, f"MagicBokeh {text}")
        done[0] += 1

    def px(top, left, th, tw):
        return (slice(None), slice(None), slice(8 * top, 8 * (top + th)),
                slice(8 * left, 8 * (left + tw)))  # fmt: skip

    with torch.no_grad():

        def encode(top, left, th, tw):
            return net.encode((lq[px(top, left, th, tw)] * 2 - 1).to(device, dtype))

        latent = _blend(enc, (lh, lw), encode, 1, 4, tick, "encode tile")

        def denoise(top, left, th, tw):
            z = latent[:, :, top : top + th, left : left + tw].to(device, dtype)
            sl = px(top, left, th, tw)
            return net.denoise(z, disp[sl].to(device, dtype), in_focus[sl].to(device))

        x0 = _blend(core, (lh, lw), denoise, 1, 4, tick, "tile")

        def decode(top, left, th, tw):
            return net.decode(x0[:, :, top : top + th, left : left + tw].to(device, dtype))

        out = _blend(dec, (lh, lw), decode, 8, 3, tick, "decode tile")
    progress.update(1.0, "MagicBokeh colour fix")
    return ref.finish(out, lq, h, w, official_quantisation)

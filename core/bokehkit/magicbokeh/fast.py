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
5. the AdaIN colour fix (with the official 8-bit truncations when reproducing the
   reference's inputs: `render_fast`; without them for the render pipeline:
   `render_defocus`).

Tiles along an axis are split evenly (the fewest tiles of at most the given size with at
least the given overlap), so no edge tile repeats work the way the official extra row
and column do. The image is mirror-padded to a multiple of 64 pixels (8 latents, the
UNet's three downsamplers) and cropped back. The output is not identical to the
reference (different tile borders and GroupNorm statistics); tests measure the PSNR.

The driver works on numpy arrays and never imports torch: the network comes as a
"stages" object (`stages.TorchStages` around the torch network, or the ONNX Runtime
stages of the light engine).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from ..errors import BokehkitError
from ..progress import Progress
from .inputs import (
    IN_FOCUS_THRESHOLD,
    checked_inputs,
    defocus_map,
    finish,
    focal_value,
    pad_to,
    quantise_depth,
)

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


def _ramp(size: int, first: bool, last: bool, overlap: int) -> np.ndarray:
    """1 inside, linear ramps of `overlap` samples at the sides that meet another tile."""
    w = np.ones(size, np.float32)
    if overlap > 0:
        ramp = np.linspace(0, 1, overlap + 2, dtype=np.float32)[1:-1]
        if not first:
            w[:overlap] = ramp
        if not last:
            w[-overlap:] = ramp[::-1]
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
    fn: Callable[[int, int, int, int], np.ndarray],
    scale: int,
    channels: int,
    tick: Callable[[str], None],
    what: str,
) -> np.ndarray:
    """Σ w·fn(tile) / Σ w over a canvas `scale`× the source grid (weights upsampled
    nearest when scale > 1): 1×C×H×W float32."""
    h, w = src_shape[0] * scale, src_shape[1] * scale
    out = np.zeros((1, channels, h, w), np.float32)
    wsum = np.zeros((h, w), np.float32)
    for k, (top, left, th, tw, wt) in enumerate(tiles):
        tick(f"{what} {k + 1}/{len(tiles)}")
        y = fn(top, left, th, tw)
        if scale > 1:
            wt = np.repeat(np.repeat(wt, scale, 0), scale, 1)
        rows = slice(top * scale, (top + th) * scale)
        cols = slice(left * scale, (left + tw) * scale)
        out[:, :, rows, cols] += y * wt
        wsum[rows, cols] += wt
    out /= wsum
    return out


def render_fast(
    image_srgb01: np.ndarray,
    depth01: np.ndarray,
    mask: np.ndarray,
    strength_k: float,
    network,
    progress: Progress | None = None,
    vae_tile: int = VAE_TILE,
    vae_overlap: int = VAE_OVERLAP,
    latent_tile: int = LATENT_TILE,
    latent_overlap: int = LATENT_OVERLAP,
    official_quantisation: bool = True,
) -> np.ndarray:
    """MagicBokeh in the default mode on the reference mode's inputs (8-bit depth, the
    lower-median focal value): H×W×3 float32 in [0, 1]. Arguments as `render_reference`;
    `network` a torch network or a stages object; tile sizes in pixels for `vae_tile`,
    latents for the rest."""
    image = checked_inputs(image_srgb01, depth01, mask, strength_k)
    depth_u8 = quantise_depth(depth01)
    focus = focal_value(depth_u8, np.asarray(mask))
    defocus = defocus_map(depth_u8, focus, strength_k)
    return render_defocus(
        image, defocus, network, progress, vae_tile, vae_overlap, latent_tile,
        latent_overlap, official_quantisation,
    )  # fmt: skip


def render_defocus(
    image_srgb01: np.ndarray,
    defocus: np.ndarray,
    network,
    progress: Progress | None = None,
    vae_tile: int = VAE_TILE,
    vae_overlap: int = VAE_OVERLAP,
    latent_tile: int = LATENT_TILE,
    latent_overlap: int = LATENT_OVERLAP,
    official_quantisation: bool = False,
) -> np.ndarray:
    """MagicBokeh on an sRGB image (H×W×3 in [0, 1]) and its defocus map (H×W,
    |d − f|·K/32 ≥ 0; in focus where ≤ 0.1): H×W×3 float32 in [0, 1]."""
    if getattr(network, "numpy_stages", False):
        stages = network  # e.g. ONNX Runtime's (the light engine: no torch to import)
    else:
        from .stages import TorchStages

        stages = TorchStages(network)
    progress = progress or Progress()
    image = np.asarray(image_srgb01, dtype=np.float32)
    h, w = image.shape[:2]
    if np.shape(defocus) != (h, w):
        raise BokehkitError(f"defocus map is {np.shape(defocus)}, the image {h}×{w}")
    if vae_tile % 8 or vae_tile < 64 or latent_tile < 8:
        raise BokehkitError(f"vae_tile {vae_tile} (a multiple of 8, ≥ 64) / latent_tile "
                            f"{latent_tile} (≥ 8)")  # fmt: skip

    ph, pw = (math.ceil(max(n, 1) / PAD_MULTIPLE) * PAD_MULTIPLE for n in (h, w))
    disp = pad_to(np.asarray(defocus, np.float32), ph, pw)
    in_focus = disp <= np.float32(IN_FOCUS_THRESHOLD)
    lq_m11 = pad_to(image, ph, pw).transpose(2, 0, 1)[None] * np.float32(2) - np.float32(1)
    lh, lw = ph // 8, pw // 8

    enc = tiles_2d(lh, lw, vae_tile // 8, vae_overlap)
    core = tiles_2d(lh, lw, latent_tile, latent_overlap, multiple=8)
    dec = enc
    total = len(enc) + len(core) + len(dec)
    done = [0]

    def tick(text: str) -> None:
        progress.update(done[0] / total, f"MagicBokeh {text}")
        done[0] += 1

    def px(top, left, th, tw):
        return (slice(8 * top, 8 * (top + th)), slice(8 * left, 8 * (left + tw)))

    def encode(top, left, th, tw):
        return stages.encode(lq_m11[(slice(None), slice(None), *px(top, left, th, tw))])

    latent = _blend(enc, (lh, lw), encode, 1, 4, tick, "encode tile")

    def denoise(top, left, th, tw):
        z = latent[:, :, top : top + th, left : left + tw]
        sl = px(top, left, th, tw)
        return stages.denoise(z, disp[sl][None, None], in_focus[sl][None, None])

    x0 = _blend(core, (lh, lw), denoise, 1, 4, tick, "tile")
    latent = None  # not needed by the decoder: free it

    def decode(top, left, th, tw):
        return stages.decode(x0[:, :, top : top + th, left : left + tw])

    out = _blend(dec, (lh, lw), decode, 8, 3, tick, "decode tile")
    progress.update(1.0, "MagicBokeh colour fix")
    out_hw3 = out[0, :, :h, :w].transpose(1, 2, 0)
    return finish(out_hw3, image, official_quantisation)

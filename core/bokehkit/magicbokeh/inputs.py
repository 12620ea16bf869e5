"""What MagicBokeh's two modes share, without torch: the official depth quantisation,
focal value and defocus map, the input checks, padding, and the AdaIN colour fix.

The light engine (no torch) runs the default mode over ONNX Runtime with these; reference
mode keeps torch versions of the defocus map and colour fix so that it follows the
official arithmetic exactly (`reference`).
"""

from __future__ import annotations

import numpy as np

from ..errors import BokehkitError

IN_FOCUS_THRESHOLD = 0.1  # in focus where the (K-scaled) defocus is ≤ this
#: the defocus the network was trained on: |d − f|·K/32 with K ≤ 32 and d, f in [0, 1]
MAX_DEFOCUS = 1.0


def quantise_depth(depth01: np.ndarray) -> np.ndarray:
    """The official 8-bit depth: ``(d·255).astype(uint8)`` on float32 (truncation)."""
    d = np.clip(np.asarray(depth01, dtype=np.float32), 0.0, 1.0)
    return (d * np.float32(255)).astype(np.uint8)


def focal_value(depth_u8: np.ndarray, mask: np.ndarray) -> float:
    """Lower median of the 8-bit depth where ``mask > 0``, /255; 0 for an empty mask."""
    mask = np.asarray(mask)
    if mask.shape != depth_u8.shape:
        raise BokehkitError(f"focus mask is {mask.shape[:2]}, the depth {depth_u8.shape}")
    values = np.sort(depth_u8[mask > 0], kind="stable")
    if values.size == 0:
        return 0.0
    return float(values[(values.size - 1) // 2]) / 255.0


def defocus_map(depth_u8: np.ndarray, focus: float, strength_k: float) -> np.ndarray:
    """``|depth − focus|·K/32`` as float32 H×W (the official arithmetic, in float32)."""
    depth = depth_u8.astype(np.float32) / np.float32(255)
    return np.abs(depth - np.float32(focus)) * np.float32(strength_k / 32)


def checked_inputs(image_srgb01, depth01, mask, strength_k: float) -> np.ndarray:
    """The image as float32 H×W×3, after checking that depth and mask match it and K ≥ 0."""
    image = np.asarray(image_srgb01, dtype=np.float32)
    if image.ndim != 3 or image.shape[2] != 3:
        raise BokehkitError(f"expected an H×W×3 image, got {image.shape}")
    h, w = image.shape[:2]
    if np.shape(depth01)[:2] != (h, w) or np.shape(mask)[:2] != (h, w):
        raise BokehkitError("image, depth and focus mask must have the same size")
    if strength_k < 0:
        raise BokehkitError(f"strength K must be ≥ 0, not {strength_k}")
    return image


def pad_to(a: np.ndarray, h: int, w: int) -> np.ndarray:
    """Mirror-pad the first two axes up to h×w."""
    ph, pw = max(0, h - a.shape[0]), max(0, w - a.shape[1])
    if not (ph or pw):
        return a
    pad = [(0, ph), (0, pw)] + [(0, 0)] * (a.ndim - 2)
    return np.pad(a, pad, mode="symmetric")


def truncate_u8(x: np.ndarray) -> np.ndarray:
    """``x·255`` truncated to 8 bits, as float (torchvision's ToPILImage on a float)."""
    return (x * np.float32(255)).astype(np.uint8).astype(np.float32) / np.float32(255)


def adain_colour_fix(target: np.ndarray, source: np.ndarray) -> np.ndarray:
    """Per-channel mean/std of `target` (H×W×3) matched to `source`'s (unbiased variance
    + 1e-5), clamped to [0, 1]: the official ``adain_color_fix``. Statistics in float64."""

    def mean_std(x: np.ndarray):
        flat = x.reshape(-1, x.shape[-1]).astype(np.float64)
        return flat.mean(axis=0), np.sqrt(flat.var(axis=0, ddof=1) + 1e-5)

    s_mean, s_std = mean_std(source)
    t_mean, t_std = mean_std(target)
    scale = (s_std / t_std).astype(np.float32)
    shift = (s_mean - t_mean * s_std / t_std).astype(np.float32)
    return np.clip(target * scale + shift, 0.0, 1.0)


def finish(out_m11: np.ndarray, image: np.ndarray, official_quantisation: bool) -> np.ndarray:
    """Network output (H×W×3 in [−1, 1], cropped) → float32 in [0, 1]: AdaIN colour fix
    against the input `image`, with the official 8-bit truncations around it if asked."""
    out = out_m11 * np.float32(0.5) + np.float32(0.5)
    if official_quantisation:
        out = truncate_u8(out)
    fixed = adain_colour_fix(out, image)
    if official_quantisation:
        fixed = truncate_u8(fixed)
    return np.ascontiguousarray(fixed, dtype=np.float32)

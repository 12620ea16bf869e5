"""Where the lens is focused: from a painted mask, a point, or a given distance/disparity.

A painted focus mask (white = sharp, soft edges allowed) both sets the focal plane, as the
robust median of the depth under it (MagicBokeh's convention), and keeps the painted pixels
sharp in proportion to the paint, so hair or glass that the depth map gets wrong stays crisp.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BokehkitError
from ..io.maps import max_code, read_map
from .depth import DepthMap

#: A mask whose brightest pixel is below this (of full scale) is empty.
EMPTY_MASK_LEVEL = 1.0 / 255.0
#: A focus point samples the median depth in a window this fraction of the short side.
POINT_WINDOW = 0.02


@dataclass
class Focus:
    inverse_depth: float  # the focal plane, in the depth map's units
    source: str


def load_mask(path: str | Path, width: int, height: int) -> np.ndarray:
    """Read a focus mask as float32 in [0, 1]; it must have the image's size and some paint."""
    data = read_map(path, "focus mask")
    h, w = data.shape
    if (w, h) != (width, height):
        raise BokehkitError(
            f"focus mask {path} is {w}×{h} but the image is {width}×{height}: "
            "paint the mask on the image itself"
        )
    return check_mask(data / max_code(data), str(path))


def check_mask(mask: np.ndarray, name: str = "focus mask") -> np.ndarray:
    mask = np.clip(np.nan_to_num(mask.astype(np.float32, copy=False)), 0.0, 1.0)
    if float(mask.max(initial=0.0)) < EMPTY_MASK_LEVEL:
        raise BokehkitError(f"{name} is empty (all black): paint the subject white")
    return mask


def weighted_median(values: np.ndarray, weights: np.ndarray) -> float:
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order], dtype=np.float64)
    k = int(np.searchsorted(cum, 0.5 * cum[-1]))
    return float(values[order][min(k, len(order) - 1)])


def focus_from_mask(depth: DepthMap, mask: np.ndarray) -> Focus:
    """Median depth under the mask, each pixel weighted by its paint."""
    sel = mask > 0
    value = weighted_median(depth.inverse_depth[sel], mask[sel])
    return Focus(value, "median depth under the focus mask")


def focus_from_point(depth: DepthMap, x: float, y: float) -> Focus:
    h, w = depth.shape
    if not (0 <= x < w and 0 <= y < h):
        raise BokehkitError(f"focus point ({x:g}, {y:g}) is outside the {w}×{h} image")
    r = max(2, int(POINT_WINDOW * min(w, h)))
    xi, yi = int(x), int(y)
    patch = depth.inverse_depth[max(yi - r, 0) : yi + r + 1, max(xi - r, 0) : xi + r + 1]
    return Focus(float(np.median(patch)), f"depth at the focus point ({x:g}, {y:g})")


def focus_from_distance(depth: DepthMap, distance_m: float) -> Focus:
    if not depth.metric:
        raise BokehkitError(
            "--focus-distance needs metric depth (--depth-units m); with a relative map use "
            "--focus-point, a focus mask or --focus-disparity"
        )
    if distance_m <= 0:
        raise BokehkitError(f"focus distance must be positive, not {distance_m:g} m")
    return Focus(1.0 / distance_m, f"focus distance {distance_m:g} m")


def focus_from_disparity(depth: DepthMap, disparity: float) -> Focus:
    if depth.metric:
        return Focus(disparity, f"focus disparity {disparity:g} 1/m")
    if not 0.0 <= disparity <= 1.0:
        raise BokehkitError(f"--focus-disparity must be in [0, 1], not {disparity:g}")
    return Focus(disparity, f"focus disparity {disparity:g}")

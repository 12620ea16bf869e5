"""Depth: what the renderer needs is inverse depth (disparity), in which blur is linear.

A `DepthMap` holds either metric inverse depth 1/z in 1/m, or a relative disparity normalised
to [0, 1] with 1 = near. Files may hold depth or disparity, metric or relative, near bright or
dark: the user says which, nothing is guessed but the robust normalisation of relative maps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import BokehkitError
from ..io.maps import max_code, read_map, resize_map

METRIC_UNITS = {"m": 1.0, "cm": 0.01, "mm": 0.001}
UNITS = ("relative", *METRIC_UNITS)
KINDS = ("disparity", "depth")
#: Relative maps are normalised between these percentiles, so a few outliers don't squash it.
ROBUST_PERCENTILES = (0.5, 99.5)


@dataclass
class DepthMap:
    inverse_depth: np.ndarray  # H×W float32; 1/m if metric, else relative disparity in [0, 1]
    metric: bool
    source: str  # said to the user: where the depth came from

    @property
    def shape(self) -> tuple[int, int]:
        return self.inverse_depth.shape  # type: ignore[return-value]

    def resized(self, width: int, height: int) -> DepthMap:
        return DepthMap(resize_map(self.inverse_depth, width, height), self.metric, self.source)


def load_depth(
    path: str | Path,
    units: str = "relative",
    kind: str = "disparity",
    near: str | None = None,
    range_m: tuple[float, float] | None = None,
) -> DepthMap:
    """Read a depth or disparity map. `near` ('bright' or 'dark') defaults to the usual
    convention of `kind`: disparity maps are bright near, depth maps dark near.

    `range_m` = (near, far) makes a relative map metric: its near end is `near` metres and
    its far end `far` metres, linear in disparity (or in depth, for a depth map), as phones
    store their depth maps (Google's GDepth Near/Far)."""
    if units not in UNITS:
        raise BokehkitError(f"unknown depth units {units!r}: use one of {', '.join(UNITS)}")
    if kind not in KINDS:
        raise BokehkitError(f"unknown depth kind {kind!r}: use disparity or depth")
    if near not in (None, "bright", "dark"):
        raise BokehkitError(f"--depth-near must be 'bright' or 'dark', not {near!r}")
    data = read_map(path, "depth map")
    bad = int(np.count_nonzero(~np.isfinite(data)))
    if bad:
        raise BokehkitError(
            f"depth map {path} has {bad} pixels that are not numbers (NaN or infinite); "
            "fill them or export the map again"
        )
    if units in METRIC_UNITS:
        if kind != "depth":
            raise BokehkitError("metric units need a depth map (--depth-kind depth)")
        depth_m = data * METRIC_UNITS[units]
        nonpositive = int(np.count_nonzero(depth_m <= 0))
        if nonpositive:
            raise BokehkitError(
                f"depth map {path} has {nonpositive} pixels at zero or negative distance; "
                "metric depth must be positive"
            )
        inv = (1.0 / depth_m).astype(np.float32)
        return DepthMap(inv, True, f"{Path(path).name} (metric depth, {units})")

    near = near or ("bright" if kind == "disparity" else "dark")
    if data.dtype != np.float32 or max_code(data) > 1:
        data = data / max_code(data)
    if range_m is not None:
        return _ranged(data, kind, near, range_m, Path(path).name)
    lo, hi = np.percentile(data, ROBUST_PERCENTILES)
    if hi - lo < 1e-6:
        raise BokehkitError(
            f"depth map {path} is flat (all values near {lo:.4g}): it holds no depth"
        )
    norm = np.clip((data - lo) / (hi - lo), 0.0, 1.0).astype(np.float32)
    if near == "dark":
        norm = 1.0 - norm
    if kind == "depth":
        # Relative depth to relative disparity: depth in [1, 10] units (near to far) keeps
        # the ordering and a plausible 1/z falloff without inventing a scale.
        norm = _relative_depth_to_disparity(norm)
    return DepthMap(norm, False, f"{Path(path).name} ({kind}, near {near})")


def _ranged(data, kind, near, range_m, name) -> DepthMap:
    z_near, z_far = (float(v) for v in range_m)
    # A micrometre to a million kilometres: inside that, 1/z fits float32 (and NaN fails).
    if not 1e-6 <= z_near < z_far <= 1e9:
        raise BokehkitError(
            f"depth range must be 0 < near < far metres (1e-6 to 1e9), not {z_near}, {z_far}"
        )
    nearness = np.clip(data if near == "bright" else 1.0 - data, 0.0, 1.0).astype(np.float64)
    if kind == "disparity":
        inv = 1.0 / z_far + nearness * (1.0 / z_near - 1.0 / z_far)
    else:  # z grows from z_near: never rounds to zero however far z_far is
        inv = 1.0 / (z_near + (1.0 - nearness) * (z_far - z_near))
    return DepthMap(inv.astype(np.float32), True, f"{name} ({kind}, {z_near:g}–{z_far:g} m)")


def _relative_depth_to_disparity(nearness: np.ndarray) -> np.ndarray:
    z = 1.0 + 9.0 * (1.0 - nearness)  # 1 (near) … 10 (far)
    return ((1.0 / z - 0.1) / 0.9).astype(np.float32)


def fit_to_image(depth: DepthMap, width: int, height: int) -> DepthMap:
    """Resize a depth map to the image; refuse a map whose shape is not the image's."""
    h, w = depth.shape
    if (w, h) == (width, height):
        return depth
    if abs(w / h - width / height) > 0.02 * (width / height):
        raise BokehkitError(
            f"depth map is {w}×{h} but the image is {width}×{height}: "
            "their aspect ratios differ, so it is not this image's depth"
        )
    return depth.resized(width, height)


#: Without depth or a subject, blur reaches its full strength this far from the focus point.
FALLBACK_FALLOFF = 0.15  # of the image diagonal


def fallback_depth(
    width: int,
    height: int,
    focus_mask: np.ndarray | None = None,
    focus_point: tuple[float, float] | None = None,
) -> DepthMap:
    """A stand-in when no depth is known.

    With a subject (a painted mask or ISNet's matte): two planes, as a portrait lens sees
    them. The subject lies on the focal plane and everything else is one far plane, so the
    background is blurred as much right beside the subject as anywhere (grading the blur by
    the distance from the subject left a sharp halo of background around it). The matte's
    soft rim gets in-between depths, which the colour then settles (`depth_edges`).

    With only a point (or nothing, the image centre): a disc around it on the focal plane
    and the rest receding with distance from it, reaching full blur at `FALLBACK_FALLOFF`
    of the image diagonal: without a subject there is no outline to cut along.
    """
    if focus_mask is not None:
        disparity = np.clip((np.asarray(focus_mask, np.float32) - 0.25) / 0.5, 0.0, 1.0)
        source = "none given: the subject on the focal plane, the rest one far plane"
        return DepthMap(disparity.astype(np.float32), False, source)
    from scipy import ndimage

    x, y = focus_point if focus_point is not None else (width / 2, height / 2)
    radius = 0.05 * np.hypot(width, height)
    yy, xx = np.ogrid[:height, :width]
    inside = (xx - x) ** 2 + (yy - y) ** 2 <= radius**2
    where = "the focus point" if focus_point is not None else "the image centre"
    source = f"none given: {where} on the focal plane, the rest graded away from it"
    # Distance at reduced resolution: it is smooth and this is O(pixels).
    step = max(1, int(max(width, height) // 1024))
    dist = ndimage.distance_transform_edt(~inside[::step, ::step]) * step
    dist = resize_map(dist.astype(np.float32), width, height)
    falloff = FALLBACK_FALLOFF * np.hypot(width, height)
    t = np.clip(dist / falloff, 0.0, 1.0)
    disparity = 1.0 - t * t * (3 - 2 * t)  # smoothstep: gentle start, then full blur
    return DepthMap(disparity.astype(np.float32), False, source)

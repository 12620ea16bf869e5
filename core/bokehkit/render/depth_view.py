"""The depth the engine renders with, as a picture a photographer can check: near warm and
bright, far cool and dark, and the focal plane (where the blur is under a pixel) marked in
green, like Lightroom's "Visualize Depth". Returns linear RGB for the usual write-back."""

from __future__ import annotations

import numpy as np

from ..io.colour import srgb_to_linear

# sRGB colours from the nearest point (0) to the farthest (1): our own ramp, chosen to stay
# ordered in lightness so that it reads in grey too.
RAMP_POSITIONS = np.array([0.0, 0.25, 0.5, 0.75, 1.0], np.float32)
RAMP_SRGB = np.array(
    [
        (255, 236, 120),  # near: pale yellow
        (246, 156, 62),  # orange
        (205, 74, 100),  # red-magenta
        (104, 44, 134),  # purple
        (22, 18, 62),  # far: night blue
    ],
    np.float32,
) / np.float32(255.0)
FOCAL_PLANE_SRGB = np.array((40, 235, 110), np.float32) / np.float32(255.0)
#: Pixels whose blur radius is under this are on the focal plane (drawn green).
IN_FOCUS_PX = 1.0
#: How strongly the green covers the depth colour on the focal plane.
FOCAL_PLANE_OPACITY = 0.75


def nearness(inverse_depth: np.ndarray) -> np.ndarray:
    """0 at the nearest point of the photo, 1 at the farthest (linear in disparity, as blur is)."""
    lo, hi = float(inverse_depth.min()), float(inverse_depth.max())
    if hi - lo < 1e-12:
        return np.zeros(inverse_depth.shape, np.float32)
    return ((hi - inverse_depth) / (hi - lo)).astype(np.float32)


def ramp(position: np.ndarray) -> np.ndarray:
    """sRGB in [0, 1] for positions 0 (near) … 1 (far)."""
    t = np.clip(position, 0.0, 1.0)
    return np.stack(
        [np.interp(t, RAMP_POSITIONS, RAMP_SRGB[:, c]).astype(np.float32) for c in range(3)], -1
    )


def depth_view(inverse_depth: np.ndarray, signed_coc_px: np.ndarray) -> np.ndarray:
    """Linear RGB H×W×3: the depth coloured near to far, the focal plane green."""
    srgb = ramp(nearness(inverse_depth))
    on_plane = (np.abs(signed_coc_px) < IN_FOCUS_PX)[..., None]
    green = srgb + FOCAL_PLANE_OPACITY * (FOCAL_PLANE_SRGB - srgb)
    return srgb_to_linear(np.where(on_plane, green, srgb)).astype(np.float32)

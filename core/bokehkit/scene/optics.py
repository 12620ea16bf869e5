"""Thin-lens optics: from what a photographer sets (f-number, focal length) to blur in pixels.

The model is the one Blender Cycles renders and the bench verifies: a thin lens with an
aperture of diameter f/N focused on a plane at distance d_f, and no focus breathing. A point at
planar depth z then images to a disc of

    CoC diameter [px] = f² / N · W_px / S · |1/z − 1/d_f|          (f, S, z, d_f in metres)

so the blur *radius* is linear in disparity (1/z):

    r_px = K_m · |1/z − 1/d_f|,   K_m = f² · W_px / (2 · N · S)     [px · m]

BokehMe and MagicBokeh use a relative disparity d ∈ [0, 1] and a strength K in pixels of radius
per unit of d: r_px = K · |d − d_f|. When d = (1/z − 1/z_far) / (1/z_near − 1/z_far), the two are
the same with K = K_m · (1/z_near − 1/z_far). Without metric depth we assume disparity 0 is at
infinity and the focal plane is at ``focus_distance_m`` (default 2 m), so
1/z = d / d_f / focus_distance_m and K = K_m / (focus_distance_m · d_f). `strength_k` below
does that mapping; `--strength` on the CLI sets K directly and skips the lens model.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..errors import BokehkitError

DEFAULT_FOCAL_LENGTH_MM = 50.0
#: 35 mm-equivalent focal lengths pair with the 36 mm width of a full-frame sensor.
FULL_FRAME_WIDTH_MM = 36.0
#: Relative depth has no scale: the focal plane is assumed this far away.
DEFAULT_FOCUS_DISTANCE_M = 2.0


@dataclass(frozen=True)
class Lens:
    """What a photographer sets on the lens."""

    f_number: float = 2.0
    focal_length_mm: float = DEFAULT_FOCAL_LENGTH_MM
    sensor_width_mm: float = FULL_FRAME_WIDTH_MM

    def __post_init__(self) -> None:
        if not 0.5 <= self.f_number <= 64:
            raise BokehkitError(f"aperture f/{self.f_number} is out of range (use 0.5 to 64)")
        if not 1 <= self.focal_length_mm <= 2000:
            raise BokehkitError(
                f"focal length {self.focal_length_mm} mm is out of range (use 1 to 2000)"
            )
        if not 1 <= self.sensor_width_mm <= 200:
            raise BokehkitError(
                f"sensor width {self.sensor_width_mm} mm is out of range (use 1 to 200)"
            )

    def k_metric_px_m(self, image_width_px: int) -> float:
        """K_m: blur radius in pixels per unit of metric disparity (1/m)."""
        f_m = self.focal_length_mm / 1000.0
        sensor_m = self.sensor_width_mm / 1000.0
        return f_m * f_m * image_width_px / (2.0 * self.f_number * sensor_m)

    def coc_radius_px(self, depth_m: float, focus_distance_m: float, image_width_px: int) -> float:
        """Blur radius of a point at `depth_m` when focused at `focus_distance_m`."""
        k = self.k_metric_px_m(image_width_px)
        return k * abs(1.0 / depth_m - 1.0 / focus_distance_m)


def strength_k(
    lens: Lens,
    image_width_px: int,
    focus_disparity: float,
    focus_distance_m: float = DEFAULT_FOCUS_DISTANCE_M,
) -> float:
    """K for a relative disparity map whose zero is at infinity (see the module docstring)."""
    if focus_disparity <= 1e-6:
        # Focused at infinity: the scale of relative disparity is unknown; take the nearest
        # point (d = 1) to be at the assumed focus distance instead.
        focus_disparity = 1.0
    return lens.k_metric_px_m(image_width_px) / (focus_distance_m * focus_disparity)


def f_number_for_strength(
    k: float,
    image_width_px: int,
    focal_length_mm: float = DEFAULT_FOCAL_LENGTH_MM,
    sensor_width_mm: float = FULL_FRAME_WIDTH_MM,
    focus_disparity: float = 1.0,
    focus_distance_m: float = DEFAULT_FOCUS_DISTANCE_M,
) -> float:
    """The inverse of `strength_k`: the f-number that gives strength K (for the UI)."""
    km_at_f1 = Lens(1.0, focal_length_mm, sensor_width_mm).k_metric_px_m(image_width_px)
    return km_at_f1 / (k * focus_distance_m * max(focus_disparity, 1e-6))

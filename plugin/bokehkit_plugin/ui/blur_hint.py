"""The blur an aperture gives, for the label next to the f-number (no numpy).

Same thin-lens model as the engine (core/bokehkit/scene/optics.py): K_m = f² W / (2 N S) px·m,
and with a relative depth map the focal plane is taken 2 m away and the far end at
infinity, so the background's disc radius is K_m / 2 m, capped at 10 % of the long side.
"""

from __future__ import annotations

DEFAULT_FOCAL_MM = 50.0
SENSOR_WIDTH_MM = 36.0
FOCUS_DISTANCE_M = 2.0
MAX_COC_FRACTION = 0.1


def background_blur_px(
    f_number: float,
    focal_length_mm: float,
    width_px: int,
    height_px: int,
    sr_factor: int = 1,
    sensor_width_mm: float = SENSOR_WIDTH_MM,
) -> float:
    """Disc radius in output pixels of a background at infinity (0 mm: the 50 mm default)."""
    f_m = (focal_length_mm or DEFAULT_FOCAL_MM) / 1000.0
    k_m = f_m * f_m * width_px / (2.0 * f_number * sensor_width_mm / 1000.0)
    radius = min(k_m / FOCUS_DISTANCE_M, MAX_COC_FRACTION * max(width_px, height_px))
    return radius * sr_factor

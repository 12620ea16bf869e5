"""What every renderer takes and returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from ..progress import Progress
from ..scene.aperture import Aperture


@dataclass
class RenderJob:
    """One defocus render, everything in pixels of the image to render.

    `signed_coc_px` is the blur radius of every pixel, positive in front of the focal plane
    and negative behind it (so it grows from far to near, like disparity).
    """

    linear_rgb: np.ndarray  # H×W×3 float32, linear light
    signed_coc_px: np.ndarray  # H×W float32
    aperture: Aperture = field(default_factory=Aperture)
    #: Relative disparity and focus for renderers that take them (MagicBokeh); optional.
    disparity: np.ndarray | None = None
    focus_disparity: float | None = None
    focus_mask: np.ndarray | None = None


class Renderer(Protocol):
    name: str

    def render(self, job: RenderJob, progress: Progress) -> np.ndarray:
        """Return the defocused image, H×W×3 float32 linear light."""
        ...

"""What every renderer takes and returns, and what it asks of the pipeline."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..progress import Progress
from ..scene.aperture import Aperture
from .light_sprites import Lights


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
    #: Recovered lights to draw after the layers (renderers that `draws_lights`).
    lights: Lights | None = None


class Renderer:
    """A renderer: `render` turns a `RenderJob` into the defocused image. Its class declares
    what it needs from the pipeline (pipeline.py reads these; it never asks for a renderer
    by name)."""

    name: str = ""
    #: Depth models tried first for this renderer, best first, before the general order
    #: (scene/depth_models/specs.py PREFERENCE); () = the general order.
    preferred_depth_models: tuple[str, ...] = ()
    #: The largest blur radius it renders, in output pixels (None: any); larger radii are
    #: rendered at this one and the report says so.
    max_radius_px: float | None = None
    #: Whether clipped highlights get their energy back before it renders
    #: (render/highlights.py).
    recovers_highlights: bool = True
    #: Whether it draws the recovered lights itself, each cut by what stands in front of it
    #: (render/light_sprites.py); otherwise their energy is added to the photo's pixels.
    draws_lights: bool = False
    #: Whether the photo's grain is put back into blurred areas after it renders
    #: (render/grain.py).
    adds_grain: bool = True
    #: Whether blur radii at depth edges are settled by colour first (render/depth_edges.py).
    snaps_depth_edges: bool = True

    def describe(self) -> str | None:
        """What the report says about how it runs (device, precision), or None."""
        return None

    def render(self, job: RenderJob, progress: Progress) -> np.ndarray:
        """Return the defocused image, H×W×3 float32 linear light."""
        raise NotImplementedError

"""The `magicbokeh` engine: MagicBokeh (CVPR 2026) one-step diffusion bokeh.

Its weights are our bundle in the model store (`bokehkit.magicbokeh.bundle`), written by
``bokehkit models import magicbokeh --sd21 DIR --checkpoint lora.pkl``. Without a complete
bundle the engine refuses, naming the missing files and that command; it never falls back
to another renderer.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch  # noqa: F401  (the engine needs torch; importing it here tells the server)

from ..errors import BokehkitError
from ..magicbokeh import bundle
from ..models.store import ModelStore
from ..progress import Progress
from .base import RenderJob

# Set when the network and tiling land (issue 3); until then the engine says so.
NETWORK_READY = False


def bundle_folder(name: str = bundle.MODEL_ID, store: str | Path | None = None) -> Path:
    return ModelStore(store).root / name


def model_status(name: str = bundle.MODEL_ID, store: str | Path | None = None) -> tuple[bool, str]:
    """(available, reason): whether `bokehkit render --engine magicbokeh` can run."""
    ok, reason = bundle.status(bundle_folder(name, store))
    if not ok:
        return False, reason
    if not NETWORK_READY:
        return False, "the MagicBokeh network is not part of this engine build yet"
    return True, ""


class MagicBokehRenderer:
    name = "magicbokeh"

    def __init__(self, model: str = bundle.MODEL_ID, store: str | Path | None = None, **_):
        self.folder = bundle_folder(model, store)
        ok, reason = model_status(model, store)
        if not ok:
            raise BokehkitError(f"engine magicbokeh: {reason}")

    def render(self, job: RenderJob, progress: Progress) -> np.ndarray:  # pragma: no cover
        raise BokehkitError("engine magicbokeh: the network is not implemented yet")

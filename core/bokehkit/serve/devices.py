"""Which devices the engine renders on, for the ping (the plug-ins say "remote: CUDA")."""

from __future__ import annotations

import importlib.util
import sys


def engine_devices() -> list[str]:
    """["CUDA"] / ["MPS"] where the full engine's torch sees a GPU, else ["CPU"]. The light
    engine has no torch and is never made to import it here."""
    if "torch" not in sys.modules and importlib.util.find_spec("torch") is None:
        return ["CPU"]
    try:
        import torch
    except Exception:  # noqa: BLE001 - a broken torch renders nothing on a GPU either
        return ["CPU"]
    if torch.cuda.is_available():
        return ["CUDA"]
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return ["MPS"]
    return ["CPU"]

"""Learned depth: Depth-Anything-V2 (small, base, large) and MagicBokeh's DAdepth.

`estimate_depth(linear_rgb, model_id, progress)` gives a relative `DepthMap` (1 = near) from
an installed checkpoint (`bokehkit models install depth-anything-v2-small`, or `import`);
nothing here downloads anything. The networks run in torch (`network`, our own code with the
official module names, so the official `.pth` files load strictly) or in ONNX Runtime on a
file exported from it. Licences: `specs` (Small Apache-2.0; Base, Large and DAdepth
CC-BY-NC-4.0).

Importing this package imports neither torch nor onnxruntime.
"""

from __future__ import annotations

from .runtime import BACKENDS, estimate_depth, installed_depth_model, resolve_model
from .specs import NETS, PREFERENCE, DepthNet, network_input_size

__all__ = [
    "BACKENDS",
    "NETS",
    "PREFERENCE",
    "DepthNet",
    "estimate_depth",
    "installed_depth_model",
    "network_input_size",
    "resolve_model",
]

"""Model manager: a manifest of the models bokehkit can use, and a store to install them in.

Other code asks for a model with `require(model_id)`, which gives the path of the installed
file or raises BokehkitError saying "run: bokehkit models install ID". Nothing here (or
anywhere in bokehkit) downloads a model except `bokehkit models install`.
"""

from __future__ import annotations

from pathlib import Path

from .manifest import FileSpec, Manifest, ModelSpec, Source, load_manifest
from .store import ENV_STORE, ModelDamaged, ModelStore, default_store, install_command

__all__ = [
    "ENV_STORE",
    "FileSpec",
    "Manifest",
    "ModelDamaged",
    "ModelSpec",
    "ModelStore",
    "Source",
    "default_store",
    "install_command",
    "load_manifest",
    "require",
    "installed_path",
]


def require(model_id: str, store: str | Path | None = None) -> Path:
    """Path of the installed model's file; BokehkitError("… run: bokehkit models install ID")
    if it is not installed."""
    return ModelStore(store).require(model_id)


def installed_path(model_id: str, store: str | Path | None = None) -> Path | None:
    """Like `require`, but None when the model is not installed; a damaged model raises
    ModelDamaged (with the verify command) rather than being used or passed over."""
    s = ModelStore(store)
    if s.is_damaged(model_id):
        s.require(model_id)  # raises ModelDamaged
    return s.file_path(model_id) if s.is_installed(model_id) else None

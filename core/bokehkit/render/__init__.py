"""Renderers behind one interface: `get_renderer(name).render(job, progress)`.

`classical` needs no weights and no torch; `magicbokeh` is imported only when asked for,
so the light engine never pulls torch in.
"""

from __future__ import annotations

from ..errors import BokehkitError
from .base import Renderer, RenderJob

ENGINES = ("classical", "magicbokeh")


def renderer_class(name: str) -> type[Renderer]:
    """The renderer class `name`, whose attributes say what it needs from the pipeline
    (depth preference, largest radius, highlights, grain); nothing is loaded."""
    if name == "classical":
        from .classical import ClassicalRenderer

        return ClassicalRenderer
    if name == "magicbokeh":
        try:
            from .magicbokeh import MagicBokehRenderer  # not in every build
        except ImportError as exc:
            raise BokehkitError(
                "the magicbokeh engine is not installed in this engine build "
                f"({exc.name or exc}); use --engine classical or install the full engine"
            ) from None
        return MagicBokehRenderer
    raise BokehkitError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")


def get_renderer(name: str, **options) -> Renderer:
    """A renderer, ready to render.

    Parameters
    ----------
    name : str
        One of `ENGINES`: ``"classical"`` (no weights, no torch) or ``"magicbokeh"`` (its
        bundle in the model store; torch or its ONNX export).
    **options
        The renderer's own constructor arguments (classical: ``tile_px``, ``threads``;
        magicbokeh: ``model``, ``store``, ``device``, ``precision``, ``runtime``).

    Returns
    -------
    Renderer
        Call ``render(job, progress)`` with a `RenderJob`.

    Raises
    ------
    BokehkitError
        For an unknown name, or a renderer this engine cannot run (not in this build, its
        model not installed), saying what to install.
    """
    return renderer_class(name)(**options)


__all__ = ["ENGINES", "Renderer", "RenderJob", "get_renderer", "renderer_class"]

"""Renderers behind one interface: `get_renderer(name).render(job, progress)`.

`classical` needs no weights and no torch; `magicbokeh` is imported only when asked for,
so the light engine never pulls torch in.
"""

from __future__ import annotations

from ..errors import BokehkitError
from .base import Renderer, RenderJob

ENGINES = ("classical", "magicbokeh")


def get_renderer(name: str, **options) -> Renderer:
    if name == "classical":
        from .classical import ClassicalRenderer

        return ClassicalRenderer(**options)
    if name == "magicbokeh":
        try:
            from .magicbokeh import MagicBokehRenderer  # noqa: F401 (not in every build)
        except ImportError as exc:
            raise BokehkitError(
                "the magicbokeh engine is not installed in this engine build "
                f"({exc.name or exc}); use --engine classical or install the full engine"
            ) from None
        return MagicBokehRenderer(**options)
    raise BokehkitError(f"unknown engine {name!r}: choose one of {', '.join(ENGINES)}")


__all__ = ["ENGINES", "Renderer", "RenderJob", "get_renderer"]

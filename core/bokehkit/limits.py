"""Size limits every reader checks before it decodes, and the memory a render will need.

A small file can declare a huge image (a compressed TIFF, a PNG bomb, a BKRAW header): the
readers compare the declared size with `max_pixels()` before they allocate anything, and a
render compares the memory it will need with what the machine has before it starts, so an
oversized job fails in a second with one line instead of after minutes, or by the OOM killer.
docs/security.md lists these limits.
"""

from __future__ import annotations

import os

from .errors import BokehkitError

#: The largest image (and depth map or mask) read, in pixels: 300 MP, e.g. 20000×15000.
DEFAULT_MAX_PIXELS = 300_000_000
ENV_MAX_PIXELS = "BOKEHKIT_MAX_PIXELS"
#: Overrides the memory a render may use (MB); default: what the machine has available.
ENV_MEMORY_MB = "BOKEHKIT_MEMORY_MB"

# Measured: a 24 MP classical render peaks at 2.6 GiB (docs/benchmarks.md), and the
# enlarged planes of a ×4 render cost about 55 bytes per output pixel.
_BASE_BYTES = 400 << 20
_BYTES_PER_INPUT_PIXEL = 96
_BYTES_PER_OUTPUT_PIXEL = 56


def max_pixels() -> int:
    """The pixel limit: `DEFAULT_MAX_PIXELS`, or $BOKEHKIT_MAX_PIXELS when set."""
    raw = os.environ.get(ENV_MAX_PIXELS, "").strip()
    if not raw:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(float(raw))
    except ValueError:
        raise BokehkitError(f"{ENV_MAX_PIXELS} must be a number of pixels, not {raw!r}") from None
    if value <= 0:
        raise BokehkitError(f"{ENV_MAX_PIXELS} must be positive, not {raw!r}")
    return value


def check_pixels(width: int, height: int, what: str) -> None:
    """BokehkitError when a width×height image is over the limit (or has no pixels)."""
    width, height = int(width), int(height)
    if width <= 0 or height <= 0:
        raise BokehkitError(f"{what}: size {width}×{height} is empty")
    limit = max_pixels()
    if width * height > limit:
        raise BokehkitError(
            f"{what} is {width}×{height} ({width * height / 1e6:.0f} MP), over the "
            f"{limit / 1e6:g} MP limit; set {ENV_MAX_PIXELS} to allow larger images"
        )


def render_bytes(width: int, height: int, factor: int = 1) -> int:
    """About how much memory a render of a width×height image enlarged ×factor needs."""
    pixels = width * height
    return (
        _BASE_BYTES
        + pixels * _BYTES_PER_INPUT_PIXEL
        + pixels * factor**2 * (_BYTES_PER_OUTPUT_PIXEL if factor > 1 else 0)
    )


def available_bytes() -> int | None:
    """Memory this process may still use: $BOKEHKIT_MEMORY_MB, else the kernel's estimate
    of available memory (Linux), else None (unknown: no check)."""
    raw = os.environ.get(ENV_MEMORY_MB, "").strip()
    if raw:
        try:
            return int(float(raw) * (1 << 20))
        except ValueError:
            raise BokehkitError(f"{ENV_MEMORY_MB} must be a number of MB, not {raw!r}") from None
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def check_render_memory(width: int, height: int, factor: int = 1) -> None:
    """BokehkitError before a render that would not fit in the memory available."""
    need = render_bytes(width, height, factor)
    have = available_bytes()
    if have is None or need <= have:
        return
    out = f"{width * factor}×{height * factor}"
    advice = (
        "a lower super-resolution factor or a smaller image"
        if factor > 1
        else ("a smaller image, or close other programs")
    )
    raise BokehkitError(
        f"a {out} result needs about {need / 2**30:.1f} GB of memory and "
        f"{have / 2**30:.1f} GB is available; use {advice}"
    )

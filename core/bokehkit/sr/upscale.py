"""The upscalers `--sr` and the plug-ins choose from, by name: classical (edge-aware
Lanczos, `lanczos.py`) and Real-ESRGAN (`realesrgan.py`), with their options checked before
any work (`get_upscaler`) and the factors and output size this engine allows."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from .lanczos import upscale_linear
from .realesrgan import check_detail
from .realesrgan import upscale_realesrgan as _run_realesrgan

FACTORS = (1, 2, 4)
MAX_OUTPUT_MEGAPIXELS = 200


Upscaler = Callable[[np.ndarray, int, "np.ndarray | None"], np.ndarray]


def upscale_realesrgan(
    linear_rgb: np.ndarray,
    factor: int,
    sharpness: np.ndarray | None = None,
    progress=None,
    *,
    detail: float | None = None,
) -> np.ndarray:
    """Real-ESRGAN x4plus (`bokehkit.sr`; needs `bokehkit models install realesrgan-x4plus`
    and torch or its ONNX export). Imported on first use: torch stays unloaded till then.
    `progress` (a progress.Progress) is told after each tile and may cancel between them.
    `detail` in [0, 1]: 1 the network's picture, 0 a Lanczos upscale, between a mix of the
    two (None: `sr.realesrgan.DETAIL`)."""
    return _run_realesrgan(linear_rgb, factor, sharpness, progress, detail=detail)


def _check_realesrgan(detail: float | None = None) -> None:
    check_detail(detail)


#: Where learned super-resolution plugs in: a name → a function (linear H×W×3 float32,
#: factor, sharpness map at the source size or None, progress or None) → the enlarged image.
#: Its keyword-only arguments are the upscaler's options (`get_upscaler`).
UPSCALERS: dict[str, Upscaler] = {"classical": upscale_linear, "realesrgan": upscale_realesrgan}
#: Checks of an upscaler's option values, run when the options are bound (before any work).
OPTION_CHECKS: dict[str, Callable[..., None]] = {"realesrgan": _check_realesrgan}


def get_upscaler(name: str, **options) -> Upscaler:
    """The upscaler `name`, with its options bound.

    Parameters
    ----------
    name : str
        ``"classical"`` (edge-aware Lanczos, sr/lanczos.py) or ``"realesrgan"``
        (sr/realesrgan.py; its model installed).
    **options
        The upscaler's keyword-only options (realesrgan: ``detail``, 0 = a Lanczos upscale
        to 1 = the network alone).

    Returns
    -------
    Upscaler
        ``upscale(linear_rgb, factor, sharpness=None, progress=None)`` → the enlarged
        H·f×W·f×3 float32 linear image.

    Raises
    ------
    BokehkitError
        A wrong name, option or value, here, before any work.
    """
    import functools
    import inspect

    from ..errors import BokehkitError

    try:
        upscale = UPSCALERS[name]
    except KeyError:
        raise BokehkitError(
            f"unknown upscaler {name!r}: choose one of {', '.join(sorted(UPSCALERS))}"
        ) from None
    if not options:
        return upscale
    params = inspect.signature(upscale).parameters.values()
    known = [p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY]
    unknown = sorted(set(options) - set(known))
    if unknown:
        takes = f"its options are {', '.join(known)}" if known else "it takes none"
        raise BokehkitError(f"the {name} upscaler has no option {unknown[0]!r}: {takes}")
    if name in OPTION_CHECKS:
        OPTION_CHECKS[name](**options)
    return functools.partial(upscale, **options)


def check_factor(factor: int, width: int, height: int) -> None:
    from ..errors import BokehkitError

    if factor not in FACTORS:
        raise BokehkitError(f"super-resolution factor must be 1, 2 or 4, not {factor}")
    mp = width * height * factor * factor / 1e6
    if mp > MAX_OUTPUT_MEGAPIXELS:
        raise BokehkitError(
            f"×{factor} of a {width}×{height} image would be {mp:.0f} megapixels, more than "
            f"the {MAX_OUTPUT_MEGAPIXELS} MP this engine renders; use a smaller factor or crop"
        )

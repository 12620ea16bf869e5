"""Classical super-resolution ×2/×4: the baseline that learned SR plugs in beside.

Lanczos-3 (sharp, but rings at edges), then each output pixel is clamped to the range of the
source pixels around it, which removes the ringing halos while keeping the edge steep
(edge-aware), and the in-focus region gets a gentle unsharp mask so that it stays crisp
after enlargement; blurred regions need no detail.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image
from scipy import ndimage

SHARPEN_AMOUNT = 0.6
FACTORS = (1, 2, 4)
MAX_OUTPUT_MEGAPIXELS = 200


def resize_plane(plane: np.ndarray, width: int, height: int, resample=Image.Resampling.LANCZOS):
    im = Image.fromarray(np.ascontiguousarray(plane, dtype=np.float32), mode="F")
    return np.asarray(im.resize((width, height), resample), dtype=np.float32)


def upscale_linear(
    linear_rgb: np.ndarray, factor: int, sharpness: np.ndarray | None = None, progress=None
) -> np.ndarray:
    """Enlarge H×W×C float32 by `factor`. `sharpness` (H×W in [0, 1], at the source size)
    says where the image is meant to be crisp; without it, everywhere."""
    if factor == 1:
        return linear_rgb
    h, w, c = linear_rgb.shape
    out = np.empty((h * factor, w * factor, c), np.float32)
    if sharpness is not None:
        sharp_up = resize_plane(sharpness, w * factor, h * factor, Image.Resampling.BILINEAR)
    for ch in range(c):
        src = linear_rgb[..., ch]
        up = resize_plane(src, w * factor, h * factor)
        # The 3×3 range of the source around each output pixel bounds it: no overshoot.
        lo = np.repeat(np.repeat(ndimage.minimum_filter(src, 3), factor, 0), factor, 1)
        hi = np.repeat(np.repeat(ndimage.maximum_filter(src, 3), factor, 0), factor, 1)
        soft = ndimage.gaussian_filter(up, 0.5 * factor)
        detail = (up - soft) * SHARPEN_AMOUNT
        if sharpness is not None:
            detail *= sharp_up
        np.clip(up + detail, lo, hi, out=out[..., ch])
    return out


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
    from .realesrgan import upscale_realesrgan as run

    return run(linear_rgb, factor, sharpness, progress, detail=detail)


def _check_realesrgan(detail: float | None = None) -> None:
    from .realesrgan import check_detail

    check_detail(detail)


#: Where learned super-resolution plugs in: a name → a function (linear H×W×3 float32,
#: factor, sharpness map at the source size or None, progress or None) → the enlarged image.
#: Its keyword-only arguments are the upscaler's options (`get_upscaler`).
UPSCALERS: dict[str, Upscaler] = {"classical": upscale_linear, "realesrgan": upscale_realesrgan}
#: Checks of an upscaler's option values, run when the options are bound (before any work).
OPTION_CHECKS: dict[str, Callable[..., None]] = {"realesrgan": _check_realesrgan}


def get_upscaler(name: str, **options) -> Upscaler:
    """The upscaler `name`, with `options` bound (realesrgan: detail, 0 to 1); a wrong name,
    option or value raises BokehkitError here, before any work."""
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

"""The render parameters as data: one schema drives the GIMP arguments, the Qt panel, the
engine request and the engine's check of it (core/bokehkit/serve/server.py validates every
request with `validate`), so a name, label, default or range is written down exactly once.

Standard library only: the plug-ins vendor this package.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any


class ParamError(ValueError):
    """A parameter value the engine would refuse; the message names it and what is allowed."""


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # "float", "int", "choice"
    default: Any
    label: str
    help: str
    minimum: float | None = None
    maximum: float | None = None
    choices: tuple = ()
    choice_labels: tuple = ()  # shown to the user, same order as `choices`
    extra_values: tuple = field(default=())  # allowed outside the range (0 = "auto" etc.)


#: "Auto" focus says what it will focus on: the ping tells whether the engine finds the
#: subject (ISNet) ("subject" available: True/False); None = not known yet.
AUTO_LABELS = {
    None: "Auto (subject, else centre)",
    True: "Auto (the subject)",
    False: "Auto (image centre)",
}

SCHEMA: tuple[Param, ...] = (
    Param(
        "aperture", "float", 2.0, "Aperture (f-number)",
        "Lower numbers blur the background more, as on a real lens.", 0.95, 22.0,
    ),
    Param(
        "focal_length", "float", 0.0, "Focal length (mm, 35 mm equivalent)",
        "0 = from the photo's EXIF, else 50 mm. Longer lenses blur more.", 8.0, 1200.0,
        extra_values=(0.0,),
    ),
    Param(
        "sr_factor", "int", 1, "Super-resolution",
        "Enlarge the result ×2 or ×4; bokeh discs are rendered at the new size.",
        choices=(1, 2, 4), choice_labels=("×1 (off)", "×2", "×4"),
    ),
    Param(
        "focus_source", "choice", "mask", "Focus on",
        "What stays sharp: the painted mask or selection, a point you click, auto (the "
        "subject the engine finds, else the image centre), or a band of depth.",
        choices=("mask", "point", "auto", "range"),
        choice_labels=(
            "Painted mask", "Point (click the preview)", AUTO_LABELS[None], "Depth range",
        ),
    ),
    Param(
        "focus_x", "float", 0.5, "Focus point x",
        "Horizontal position of the focus point, 0 = left edge, 1 = right edge.", 0.0, 1.0,
    ),
    Param(
        "focus_y", "float", 0.5, "Focus point y",
        "Vertical position of the focus point, 0 = top edge, 1 = bottom edge.", 0.0, 1.0,
    ),
    Param(
        "blades", "int", 0, "Aperture blades",
        "0 = round discs; 5 to 9 blades give polygonal bokeh.", 5, 9, extra_values=(0,),
    ),
    Param(
        "blade_rotation", "float", 0.0, "Blade rotation (°)",
        "Turns the polygonal discs.", 0.0, 360.0,
    ),
    Param(
        "highlights", "float", 40.0, "Highlight boost",
        "Clipped small lights get back the energy their size suggests, so they bloom into "
        "bright discs; this is the most a light is brightened (1 = off).", 1.0, 100.0,
    ),
    Param(
        "grain", "float", 1.0, "Grain",
        "The photo's noise put back into blurred areas (1 = match the photo, 0 = none).",
        0.0, 2.0,
    ),
    Param(
        "engine", "choice", "classical", "Engine",
        "classical needs no model; magicbokeh is a learned renderer (needs its model).",
        choices=("classical", "magicbokeh"), choice_labels=("Classical", "MagicBokeh (AI)"),
    ),
    # Last, not beside sr_factor: GIMP's arguments follow this order, and scripts that
    # pass them by position keep working when new ones come at the end.
    Param(
        "upscaler", "choice", "classical", "Upscaler",
        "How super-resolution enlarges: classical (edge-aware Lanczos, fast) or "
        "Real-ESRGAN, a learned upscaler (needs its model; slow on a CPU).",
        choices=("classical", "realesrgan"), choice_labels=("Classical", "Real-ESRGAN (AI)"),
    ),
    Param(
        "sr_detail", "float", 0.25, "AI detail",
        "How much of Real-ESRGAN's own detail is kept: 0 = a Lanczos upscale, 1 = the "
        "network alone: crisper, but it invents detail, e.g. in faces.", 0.0, 1.0,
    ),
    Param(
        "focus_near", "float", 0.3, "Sharp from",
        "With focus on a depth range: where the sharp band starts, 0 = the nearest point of "
        "the photo, 1 = the farthest.", 0.0, 1.0,
    ),
    Param(
        "focus_far", "float", 0.5, "Sharp to",
        "With focus on a depth range: where the sharp band ends, 0 = the nearest point of "
        "the photo, 1 = the farthest.", 0.0, 1.0,
    ),
    Param(
        "output", "choice", "bokeh", "Output",
        "The bokeh, or the depth the engine uses (near warm, far dark, the focal plane "
        "green) as a layer to check and paint Focus/Blur over.",
        choices=("bokeh", "depth"), choice_labels=("Bokeh", "Depth view"),
    ),
)  # fmt: skip

BY_NAME = {p.name: p for p in SCHEMA}


def defaults() -> dict:
    """Every parameter at its default."""
    return {p.name: p.default for p in SCHEMA}


def _check(p: Param, value: Any) -> Any:
    if p.type == "choice":
        if value not in p.choices:
            allowed = ", ".join(map(str, p.choices))
            raise ParamError(f"{p.label}: {value!r} is not one of {allowed}")
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ParamError(f"{p.label}: expected a number, got {value!r}")
    if value != value:  # NaN
        raise ParamError(f"{p.label}: not a number")
    try:
        finite = math.isfinite(value)
    except OverflowError:  # an integer too large for a float (JSON allows 1e400 as digits)
        finite = False
    if not finite:
        raise ParamError(f"{p.label}: {str(value)[:40]} is not a finite number")
    if p.type == "int":
        if value != int(value):
            raise ParamError(f"{p.label}: expected a whole number, got {value!r}")
        value = int(value)
    else:
        value = float(value)
    if value in p.extra_values:
        return value
    if p.choices:
        if value not in p.choices:
            allowed = ", ".join(map(str, p.choices))
            raise ParamError(f"{p.label}: {value!r} is not one of {allowed}")
        return value
    lo, hi = p.minimum, p.maximum
    if (lo is not None and value < lo) or (hi is not None and value > hi):
        extra = "".join(f"{e:g} or " for e in p.extra_values)
        raise ParamError(f"{p.label}: {value:g} is outside {extra}{lo:g}–{hi:g}")
    return value


def validate(params: dict | None) -> dict:
    """Fill in defaults and check every value against the schema.

    Parameters
    ----------
    params : dict or None
        Parameter name → value, as a request's ``"params"`` carries them (docs/protocol.md);
        missing names take their defaults.

    Returns
    -------
    dict
        Every parameter of `SCHEMA`, numbers converted to the parameter's type.

    Raises
    ------
    ParamError
        For an unknown name or a value outside its choices or range, naming the parameter
        by its label and saying what is allowed.
    """
    params = dict(params or {})
    unknown = sorted(set(params) - set(BY_NAME))
    if unknown:
        raise ParamError(f"unknown parameter(s): {', '.join(unknown)}")
    out = defaults()
    for name, value in params.items():
        out[name] = _check(BY_NAME[name], value)
    if out["focus_source"] == "range" and out["focus_near"] > out["focus_far"]:
        raise ParamError(
            f"Depth range: sharp from {out['focus_near']:g} must not lie beyond "
            f"sharp to {out['focus_far']:g} (0 = nearest, 1 = farthest)"
        )
    return out

"""A result remembers how it was made, as Lightroom's edits do: its settings and its source
layer, stored with the result (a GIMP parasite, a Krita document annotation), so that
running the filter on a result reopens those settings and renders again from the untouched
source. Also the result's name, which carries the key settings, and the helper layers a
user paints (Focus, Blur, Depth) that are never rendered themselves."""

from __future__ import annotations

import json

from . import schema

#: The name of the record on a result (GIMP parasite; Krita annotation type).
RECORD_NAME = "bokehkit-settings"
RECORD_VERSION = 1
#: Layers and channels the user paints for the engine, by name (any case): white = sharp,
#: white = more blur, white = near.
FOCUS, BLUR, DEPTH = "focus", "blur", "depth"
HELPER_NAMES = (FOCUS, BLUR, DEPTH)


def is_helper(name: str) -> bool:
    """A Focus, Blur or Depth layer: painted for the engine, never the photo to render."""
    return name.strip().lower() in HELPER_NAMES


def result_name(source_name: str, params: dict) -> str:
    """ "Background bokeh f/1.4 85 mm": the source and the settings one looks for first."""
    if params.get("output") == "depth":
        return f"{source_name} depth view"
    parts = [f"{source_name} bokeh", f"f/{params['aperture']:g}"]
    if params.get("focal_length"):
        parts.append(f"{params['focal_length']:g} mm")
    if params.get("focus_source") == "range":
        parts.append(f"sharp {params['focus_near']:.0%}–{params['focus_far']:.0%}")
    if params.get("sr_factor", 1) > 1:
        parts.append(f"×{params['sr_factor']}")
    return " ".join(parts)


def file_stem(photo_stem: str, params: dict) -> str:
    """A file name (no extension) for a new image made from the photo: its settings, and
    nothing a file system refuses ("IMG_1234 bokeh f1.4 85 mm ×2")."""
    name = result_name(photo_stem or "image", params).replace("f/", "f")
    return "".join("_" if c in '/\\:*?"<>|' else c for c in name)


def make_record(params: dict, source: dict) -> str:
    """The record stored with a result: its params and how to find its source again
    (`source`: the host's ids, e.g. {"tattoo": 3, "name": "Background"})."""
    return json.dumps(
        {"version": RECORD_VERSION, "params": schema.validate(params), "source": source},
        sort_keys=True,
    )


def read_record(text) -> tuple[dict, dict] | None:
    """(params, source) from a stored record; None when it is not one of ours or is
    damaged (a result edited by hand, a newer plug-in's record)."""
    try:
        if isinstance(text, (bytes, bytearray)):
            text = bytes(text).decode("utf-8")
        data = json.loads(text)
        if data.get("version") != RECORD_VERSION or not isinstance(data.get("source"), dict):
            return None
        known = {k: v for k, v in data["params"].items() if k in schema.BY_NAME}
        return schema.validate(known), data["source"]
    except (ValueError, TypeError, AttributeError, UnicodeDecodeError):
        return None

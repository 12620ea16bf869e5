"""The last settings a host used, kept between sessions in the user's bokehkit config folder
(beside engine.json). GIMP keeps its own (procedure configs); Krita's writeSetting only
reaches kritarc when Krita quits cleanly, so the Krita docker keeps them here."""

from __future__ import annotations

import json
import os

from . import schema
from .config import user_config_dir


def path(host: str) -> str:
    return os.path.join(user_config_dir(), f"last-settings-{host}.json")


def load(host: str) -> dict:
    """The saved params (only ones this schema knows, valid), or {} when there are none."""
    try:
        with open(path(host), encoding="utf-8") as f:
            saved = json.load(f)
        known = {k: v for k, v in saved.items() if k in schema.BY_NAME and k != "output"}
        return schema.validate(known)
    except (OSError, ValueError, AttributeError):  # none yet, damaged, or from a newer one
        return {}


def save(host: str, params: dict) -> None:
    """Write atomically (a killed host never leaves half a file); a failure is not worth an
    error: the settings are a convenience."""
    keep = {k: v for k, v in params.items() if k != "output"}  # the depth view is a one-off
    target = path(host)
    try:
        os.makedirs(os.path.dirname(target), exist_ok=True)
        with open(target + ".tmp", "w", encoding="utf-8") as f:
            json.dump(keep, f, sort_keys=True)
        os.replace(target + ".tmp", target)
    except OSError:
        pass

"""`bokehkit install-plugins` and `uninstall-plugins`: the standard-library installer
(plugin/bokehkit_plugin/install.py, also run without the engine as installer/install.py)."""

from __future__ import annotations

import argparse

from bokehkit_plugin.install import add_parsers


def register(sub: argparse._SubParsersAction) -> None:
    """Add `install-plugins` and `uninstall-plugins` to the main parser's sub-commands."""
    add_parsers(sub)

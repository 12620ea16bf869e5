#!/usr/bin/env python3
"""Install (or uninstall) bokehkit's GIMP 3 and Krita plug-ins from a checkout or a release,
without the engine's packages: standard library only. The same code as
`bokehkit install-plugins` / `bokehkit uninstall-plugins` (plugin/bokehkit_plugin/install.py).

    python3 installer/install.py [--gimp|--krita|--all] [--profile DIR] [--dry-run]
    python3 installer/install.py uninstall [--dry-run]
    python3 installer/install.py --list
"""

import sys
from pathlib import Path

# Run from a checkout or a release without the engine installed: the installer and the
# plug-ins' shared code are standard library only, loaded from their folders.
REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "core"), str(REPO / "plugin")]

from bokehkit_plugin.install import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())

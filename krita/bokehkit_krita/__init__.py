"""bokehkit for Krita: a "Bokeh" docker and Tools > Scripts > Bokeh…

Install: <krita resources>/pykrita/bokehkit_krita.desktop + bokehkit_krita/ (with the
vendored bokehkit_plugin package inside), then enable it in Settings > Configure Krita >
Python Plugin Manager and restart Krita.
"""

import sys

# Nothing more is written into the plug-in folder at run time: Krita compiles this file
# itself, but the rest of the package and the vendored client stay without bytecode.
sys.dont_write_bytecode = True

from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita  # noqa: E402

from .docker import DOCKER_ID, BokehDocker  # noqa: E402
from .extension import BokehExtension  # noqa: E402

_app = Krita.instance()
_app.addExtension(BokehExtension(_app))
try:
    _position = DockWidgetFactoryBase.DockPosition.DockRight  # Krita 6 (PyQt6 scoped enums)
except AttributeError:
    _position = DockWidgetFactoryBase.DockRight  # Krita 5
_app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, _position, BokehDocker))

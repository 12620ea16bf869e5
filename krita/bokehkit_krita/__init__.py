"""bokehkit for Krita: a "Bokeh" docker and Tools > Scripts > Bokeh…

Install: <krita resources>/pykrita/bokehkit_krita.desktop + bokehkit_krita/ (with the
vendored bokehkit_plugin package inside), then enable it in Settings > Configure Krita >
Python Plugin Manager and restart Krita.
"""

from krita import DockWidgetFactory, DockWidgetFactoryBase, Krita

from .docker import DOCKER_ID, BokehDocker
from .extension import BokehExtension

_app = Krita.instance()
_app.addExtension(BokehExtension(_app))
try:
    _position = DockWidgetFactoryBase.DockPosition.DockRight  # Krita 6 (PyQt6 scoped enums)
except AttributeError:
    _position = DockWidgetFactoryBase.DockRight  # Krita 5
_app.addDockWidgetFactory(DockWidgetFactory(DOCKER_ID, _position, BokehDocker))

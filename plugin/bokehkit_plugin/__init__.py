"""Host-side code shared by the GIMP 3 and Krita plug-ins (standard library only).

The plug-ins never import numpy or torch: they start the bokehkit engine as a child
process and talk to it through `client.EngineClient` (see docs/protocol.md). `ui/` holds
the Qt panel, used by Krita directly and by the engine when GIMP asks for a dialog.
"""

__version__ = "0.1.0"

"""The menu action (Tools > Scripts > Bokeh…) and the engine's lifetime."""

import os

from krita import Extension, Krita

from . import core
from .docker import DOCKER_ID

ACTION_ID = "bokehkit_bokeh"
FILTER_ACTION_ID = "bokehkit_lens_bokeh"


def find_docker():
    for dock in Krita.instance().dockers():
        if dock.objectName() == DOCKER_ID:
            return dock
    return None


def show_docker():
    dock = find_docker()
    if dock is not None:
        dock.show()
        dock.raise_()
    return dock


class BokehExtension(Extension):
    def __init__(self, parent):
        super().__init__(parent)

    def setup(self):
        notifier = Krita.instance().notifier()
        notifier.applicationClosing.connect(core.shutdown_engines)  # no engine outlives Krita
        if os.environ.get("BOKEHKIT_KRITA_SHOW_DOCKER") == "1":  # test hook (screenshots)
            notifier.windowCreated.connect(show_docker)

    def createActions(self, window):
        action = window.createAction(ACTION_ID, "Bokeh…", "tools/scripts")
        action.setToolTip("Lens bokeh and super-resolution (shows the Bokeh docker)")
        action.triggered.connect(show_docker)
        # also where photographers look for blurs: the Filter menu
        lens = window.createAction(FILTER_ACTION_ID, "Lens Bokeh…", "filter")
        lens.setToolTip("Lens bokeh and super-resolution (shows the Bokeh docker)")
        lens.triggered.connect(show_docker)

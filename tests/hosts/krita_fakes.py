"""Stand-ins for the hosts, shared by every test of the plug-ins' logic: a Krita document
(`Doc` of `Node`s, with a `Selection`) with just the API krita/bokehkit_krita/core.py and
docker.py call, and `load_module` for a plug-in file loaded by path, as the hosts load it."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
#: The fake documents' size in pixels.
W, H = 4, 2
SRGB = "sRGB-elle-V2-srgbtrc.icc"


def load_module(name: str, path: Path):
    """A plug-in file loaded by path under `name` (the hosts do not install them)."""
    spec = importlib.util.spec_from_file_location(name, path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


class Node:
    def __init__(self, name, kind="paintlayer", data=None, depth="U8", profile=SRGB,
                 model="RGBA", children=()):  # fmt: skip
        self._name, self._type, self._depth, self._profile, self._model = (
            name, kind, depth, profile, model)  # fmt: skip
        size = 1 if kind in ("transparencymask", "selectionmask") else 4
        self._data = data if data is not None else bytes(W * H * size)
        self._children, self._parent = list(children), None
        for c in self._children:
            c._parent = self

    def name(self):
        return self._name  # noqa: E704

    def type(self):
        return self._type  # noqa: E704

    def colorModel(self):
        return self._model  # noqa: E704, N802

    def colorDepth(self):
        return self._depth  # noqa: E704, N802

    def colorProfile(self):
        return self._profile  # noqa: E704, N802

    def childNodes(self):
        return list(self._children)  # noqa: E704, N802

    def parentNode(self):
        return self._parent  # noqa: E704, N802

    def pixelData(self, x, y, w, h):  # noqa: N802
        return self._data

    def setPixelData(self, data, x, y, w, h):  # noqa: N802
        self._data = bytes(data)

    def setColorSpace(self, model, depth, profile):  # noqa: N802
        self._model, self._depth, self._profile = model, depth, profile

    def addChildNode(self, node, above):  # noqa: N802
        i = self._children.index(above) + 1 if above is not None else 0
        self._children.insert(i, node)
        node._parent = self

    def uniqueId(self):  # noqa: N802
        return f"{{{id(self)}}}"

    def __eq__(self, other):
        return self is other

    __hash__ = object.__hash__


class Selection:
    def __init__(self, data):
        self._data = data

    def width(self):
        return W  # noqa: E704

    def height(self):
        return H  # noqa: E704

    def pixelData(self, x, y, w, h):
        return self._data  # noqa: E704, N802


class Doc:
    def __init__(self, nodes, selection=None):
        self.root = Node("root", "grouplayer", children=nodes)
        self._sel, self.active = selection, None

    def width(self):
        return W  # noqa: E704

    def height(self):
        return H  # noqa: E704

    def selection(self):
        return self._sel  # noqa: E704

    def rootNode(self):
        return self.root  # noqa: E704, N802

    def createNode(self, name, kind):
        return Node(name, kind)  # noqa: E704, N802

    def setActiveNode(self, node):
        self.active = node  # noqa: E704, N802

    def refreshProjection(self):
        pass  # noqa: E704, N802

    def annotation(self, kind):
        return getattr(self, "_annotations", {}).get(kind, b"")

    def setAnnotation(self, kind, description, data):  # noqa: N802
        self._annotations = {**getattr(self, "_annotations", {}), kind: bytes(data)}

    def fileName(self):
        return ""  # noqa: E704, N802

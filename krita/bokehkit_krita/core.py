"""Krita document I/O for bokehkit: pixels and focus mask out, result in (no widgets).

Used by the docker and the extension, and by the headless test (kritarunner), which loads
this file by path. The engine itself runs in its own process (docs/protocol.md).
"""

from __future__ import annotations

import os
import struct
import sys
from dataclasses import dataclass

_HERE = os.path.dirname(os.path.abspath(__file__))
for _cand in (_HERE, os.path.join(_HERE, "..", "..", "plugin")):  # vendored, else the repo's
    if os.path.isdir(os.path.join(_cand, "bokehkit_plugin")):
        if os.path.abspath(_cand) not in sys.path:
            sys.path.insert(0, os.path.abspath(_cand))
        break

from bokehkit_plugin import client as bk_client  # noqa: E402
from bokehkit_plugin import rawbuffer, schema  # noqa: E402

FOCUS_LAYER = "focus"  # a layer with this name (any case) is a focus mask
DEPTHS = {"U8": "uint8", "U16": "uint16", "F16": "float16", "F32": "float32"}
NO_MASK = (
    'focus on "Painted mask" but there is none: make a selection, add a transparency or '
    'selection mask to the layer, or paint a layer named "Focus" (white = sharp); or focus '
    "on a point or auto"
)

_engines: list = []  # every EngineClient made here, closed when Krita quits


def new_engine():
    engine = bk_client.EngineClient()
    _engines.append(engine)
    return engine


def shutdown_engines() -> None:
    """Stop every engine this plug-in started (Krita's applicationClosing)."""
    while _engines:
        try:
            _engines.pop().close()
        except Exception:  # noqa: BLE001 - quitting anyway
            pass


def pixel_layout(node) -> tuple[str, str, str]:
    """(dtype, channel order, transfer) of a node's pixelData()."""
    if node.colorModel() != "RGBA":
        raise ValueError(
            f"the layer is {node.colorModel()}; bokehkit renders RGB/Alpha layers "
            "(Image > Convert Image Color Space)"
        )
    depth = node.colorDepth()
    if depth not in DEPTHS:
        raise ValueError(f"colour depth {depth} is not supported (8/16-bit integer, 16/32 float)")
    order = "BGRA" if depth in ("U8", "U16") else "RGBA"  # Krita's integer formats are BGRA
    profile = (node.colorProfile() or "").lower()
    transfer = "linear" if ("g10" in profile or "linear" in profile) else "srgb"
    return DEPTHS[depth], order, transfer


def _channel(data: bytes, n_pixels: int, item: int, index: int) -> bytes:
    """One channel of interleaved 4-channel samples of `item` bytes."""
    out = bytearray(n_pixels * item)
    for b in range(item):
        out[b::item] = data[index * item + b :: 4 * item]
    return bytes(out)


def _all_full(alpha: bytes, dtype: str) -> bool:
    if dtype == "uint8":
        return alpha.count(b"\xff") == len(alpha)
    if dtype == "uint16":
        return alpha.count(b"\xff\xff") * 2 == len(alpha)
    item = rawbuffer.SAMPLE_BYTES[dtype]
    fmt = {"float16": "e", "float32": "f"}[dtype]
    return min(struct.unpack(f"<{len(alpha) // item}{fmt}", alpha)) >= 1.0


def _walk(node):
    for child in node.childNodes():
        yield child
        yield from _walk(child)


def find_mask(doc, node):
    """(description, mask RawImage "Y") from, in order: the selection, a transparency or
    selection mask on the layer, a layer named "Focus"; (None, None) if there is none.
    None of them is modified."""
    w, h = doc.width(), doc.height()
    sel = doc.selection()
    if sel is not None and sel.width() > 0 and sel.height() > 0:
        data = bytes(sel.pixelData(0, 0, w, h))
        if data.strip(b"\x00"):
            return "selection", rawbuffer.RawImage(w, h, data, "Y", "RGBA", "uint8", "linear")
    for child in node.childNodes():
        if child.type() in ("transparencymask", "selectionmask"):
            data = bytes(child.pixelData(0, 0, w, h))
            return f"{child.type()} “{child.name()}”", rawbuffer.RawImage(
                w, h, data, "Y", "RGBA", "uint8", "linear"
            )
    for other in _walk(doc.rootNode()):
        if other.name().strip().lower() == FOCUS_LAYER and other.type() == "paintlayer":
            dtype, order, _transfer = pixel_layout(other)
            item = rawbuffer.SAMPLE_BYTES[dtype]
            data = bytes(other.pixelData(0, 0, w, h))
            alpha = _channel(data, w * h, item, 3)
            # painted white on transparency: the alpha; painted grey on an opaque layer:
            # the grey (green channel, the same for greys in either channel order)
            plane = _channel(data, w * h, item, 1) if _all_full(alpha, dtype) else alpha
            return f"layer “{other.name()}”", rawbuffer.RawImage(
                w, h, plane, "Y", "RGBA", dtype, "linear"
            )
    return None, None


@dataclass
class Job:
    doc: object
    node: object
    image: object  # RawImage
    mask: object  # RawImage or None
    mask_name: str | None
    params: dict


def prepare(doc, node, params: dict) -> Job:
    """Read everything the render needs, on the GUI thread. ValueError: a message for the
    user (wrong layer kind, no mask...)."""
    if doc is None or node is None:
        raise ValueError("open an image and select a layer")
    if node.type() != "paintlayer":
        raise ValueError(f"select a paint layer (the active layer is a {node.type()})")
    params = schema.validate(params)
    dtype, order, transfer = pixel_layout(node)
    w, h = doc.width(), doc.height()
    image = rawbuffer.RawImage(
        w, h, bytes(node.pixelData(0, 0, w, h)), "RGBA", order, dtype, transfer
    )
    mask_name, mask = (None, None)
    if params["focus_source"] == "mask":
        mask_name, mask = find_mask(doc, node)
        if mask is None:
            raise ValueError(NO_MASK)
    return Job(doc, node, image, mask, mask_name, params)


def render(engine, job: Job, on_progress=None, cancel_event=None):
    """Any thread: the engine's RenderResult (raises Cancelled / EngineError)."""
    engine.start()
    return engine.render(
        job.image, job.params, mask=job.mask, on_progress=on_progress, cancel_event=cancel_event
    )


def apply(job: Job, result, app=None):
    """On the GUI thread: the result as a new layer above the source, or (SR > 1) a new
    document, which is returned (the caller opens a view on it). The source is untouched."""
    out = result.image
    src = job.image
    if (out.channels, out.order, out.dtype, out.transfer) != (
        src.channels,
        src.order,
        src.dtype,
        src.transfer,
    ):
        raise ValueError(f"the engine returned {out.dtype}/{out.order}, not what was sent")
    node, doc = job.node, job.doc
    name = f"{node.name()} bokeh"
    if job.params["sr_factor"] > 1:
        if app is None:
            from krita import Krita

            app = Krita.instance()
        new = app.createDocument(
            out.width,
            out.height,
            f"{doc.name() or 'image'} bokeh ×{job.params['sr_factor']}",
            "RGBA",
            node.colorDepth(),
            node.colorProfile(),
            doc.resolution(),
        )
        layer = new.createNode(name, "paintlayer")
        new.rootNode().addChildNode(layer, None)
        layer.setPixelData(out.data, 0, 0, out.width, out.height)
        for child in list(new.rootNode().childNodes()):  # the new document's empty layer
            if child != layer:
                child.remove()
        new.refreshProjection()
        return new, layer
    if (out.width, out.height) != (src.width, src.height):
        raise ValueError(
            f"the engine returned {out.width}×{out.height}, expected {src.width}×{src.height}"
        )
    layer = doc.createNode(name, "paintlayer")
    if (layer.colorModel(), layer.colorDepth(), layer.colorProfile()) != (
        node.colorModel(),
        node.colorDepth(),
        node.colorProfile(),
    ):
        layer.setColorSpace(node.colorModel(), node.colorDepth(), node.colorProfile())
    node.parentNode().addChildNode(layer, node)  # above the source
    layer.setPixelData(out.data, 0, 0, out.width, out.height)
    doc.setActiveNode(layer)
    doc.refreshProjection()
    return doc, layer

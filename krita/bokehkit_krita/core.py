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

from bokehkit_plugin import client as bk_client  # noqa: E402 (docker.py uses core.bk_client too)
from bokehkit_plugin import edits, rawbuffer, schema  # noqa: E402
from bokehkit_plugin import remote as bk_remote  # noqa: E402

bk_client.survive_broken_pipes()  # Krita leaves SIGPIPE deadly; imported on its main thread

FOCUS_LAYER = edits.FOCUS  # a layer with this name (any case) is a focus mask
MASK_TYPES = ("transparencymask", "selectionmask", "filtermask", "transformmask", "colorizemask")
DEPTHS = {"U8": "uint8", "U16": "uint16", "F16": "float16", "F32": "float32"}
NO_MASK = (
    'focus on "Painted mask" but there is none: make a selection, add a transparency or '
    'selection mask to the layer, or paint a layer named "Focus" (white = sharp); or focus '
    "on a point or auto"
)

_engines: list = []  # every EngineClient made here, closed when Krita quits


def new_engine():
    engine = bk_remote.make_client()  # a remote engine when install-plugins --remote said so
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
    layer, plane = painted_layer(doc, FOCUS_LAYER)
    if plane is not None:
        return f"layer “{layer.name()}”", plane
    return None, None


def painted_layer(doc, name: str):
    """(layer, Y RawImage) of the paint layer called `name` (any case): white painted on
    transparency gives its alpha, grey painted on an opaque layer its grey. (None, None)
    when there is none; (layer, None) when nothing is painted on it yet."""
    w, h = doc.width(), doc.height()
    for other in _walk(doc.rootNode()):
        if other.name().strip().lower() == name and other.type() == "paintlayer":
            dtype, order, _transfer = pixel_layout(other)
            item = rawbuffer.SAMPLE_BYTES[dtype]
            data = bytes(other.pixelData(0, 0, w, h))
            alpha = _channel(data, w * h, item, 3)
            # the green channel: the same for greys in either channel order
            plane = _channel(data, w * h, item, 1) if _all_full(alpha, dtype) else alpha
            if plane.count(plane[:item]) * item == len(plane):  # one value: nothing painted
                return other, None
            return other, rawbuffer.RawImage(w, h, plane, "Y", "RGBA", dtype, "linear")
    return None, None


def choose_source(doc, active):
    """(the paint layer to render, a note saying why it is not the active one, or "").

    The active layer is often not the photo: the user just painted the Focus layer, or
    selected a mask. Render the layer meant: a mask's own layer; under a Focus, Blur or
    Depth layer, the nearest paint layer below it (else above); never a helper layer."""
    if active is None:
        return None, ""
    if active.type() in MASK_TYPES:
        parent = active.parentNode()
        if parent is not None and parent.type() == "paintlayer":
            return parent, f"rendering “{parent.name()}”, the layer of the {active.type()}"
    if active.type() == "paintlayer" and not edits.is_helper(active.name()):
        return active, ""
    siblings = active.parentNode().childNodes() if active.parentNode() is not None else []
    index = next((i for i, n in enumerate(siblings) if n.uniqueId() == active.uniqueId()), -1)
    below, above = siblings[:index][::-1], siblings[index + 1 :]
    for candidate in [*below, *above, *_walk(doc.rootNode())]:
        if candidate.type() == "paintlayer" and not edits.is_helper(candidate.name()):
            why = (
                "a helper you paint for the engine"
                if edits.is_helper(active.name())
                else f"a {active.type()}"
            )
            return candidate, f"rendering “{candidate.name()}” (“{active.name()}” is {why})"
    return None, ""


# ------------------------------------------------------------------ re-edit records


def _records(doc) -> dict:
    """Every result's record in the document, by the result layer's unique id."""
    import json

    try:
        raw = bytes(doc.annotation(edits.RECORD_NAME) or b"")
        data = json.loads(raw.decode("utf-8")) if raw else {}
    except (ValueError, UnicodeDecodeError):
        return {}
    return data if isinstance(data, dict) else {}


def record_of(doc, node):
    """(params, source layer) when `node` is one of our results and its source is still
    in the document; (params, None) when the source is gone; None otherwise."""
    text = _records(doc).get(_node_id(node))
    if text is None:
        return None
    found = edits.read_record(text)
    if found is None:
        return None
    params, source = found
    for other in _walk(doc.rootNode()):
        if _node_id(other) == source.get("id"):
            return params, other
    return params, None


def save_record(doc, result, params, source) -> None:
    """Remember how `result` was made, in a document annotation (saved in .kra files)."""
    import json

    records = _records(doc)
    records[_node_id(result)] = edits.make_record(
        params, {"id": _node_id(source), "name": source.name()}
    )
    payload = json.dumps(records).encode("utf-8")
    doc.setAnnotation(edits.RECORD_NAME, "bokehkit: how each result was made", payload)


def _node_id(node) -> str:
    uid = node.uniqueId()
    return uid.toString() if hasattr(uid, "toString") else str(uid)


@dataclass
class Job:
    doc: object
    node: object  # the source layer rendered
    image: object  # RawImage
    mask: object  # RawImage or None
    mask_name: str | None
    params: dict
    note: str = ""  # why the source is not the active layer, or that a result is re-edited
    blur: object = None  # the Blur layer (white = more blur), RawImage or None
    depth: object = None  # the Depth layer (white = near), RawImage or None
    depth_photo: str | None = None  # a phone photo whose depth to use
    result: object = None  # re-edit: the earlier result this one follows


def prepare(doc, node, params: dict, depth_photo: str | None = None) -> Job:
    """Read everything the render needs, on the GUI thread, from the layer the user means
    (choose_source), or, when `node` is one of our results, from that result's source
    (re-edit). ValueError: a message for the user (no photo layer, no mask...)."""
    if doc is None or node is None:
        raise ValueError("open an image and select a layer")
    params = schema.validate(params)
    result, note = None, ""
    record = record_of(doc, node)
    if record is not None:
        if record[1] is None:
            raise ValueError(f"the source layer of “{node.name()}” is gone; select the photo layer")
        result, node = node, record[1]
        note = f"re-editing “{result.name()}” from “{node.name()}”"
    else:
        node, note = choose_source(doc, node)
        if node is None:
            raise ValueError("select the photo's paint layer (no paint layer to render)")
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
    blur = painted_layer(doc, edits.BLUR)[1]
    depth = painted_layer(doc, edits.DEPTH)[1]
    return Job(doc, node, image, mask, mask_name, params, note, blur, depth, depth_photo, result)


def render(engine, job: Job, on_progress=None, cancel_event=None):
    """Any thread: the engine's RenderResult (raises Cancelled / EngineError)."""
    engine.start()
    return engine.render(
        job.image,
        job.params,
        mask=job.mask,
        depth=job.depth,
        blur=job.blur,
        depth_photo=job.depth_photo,
        on_progress=on_progress,
        cancel_event=cancel_event,
    )


def check_result(job: Job, result) -> None:
    """ValueError unless the result is what was sent (format) at the expected size; called
    before the document is touched."""
    out, src = result.image, job.image
    if (out.channels, out.order, out.dtype, out.transfer) != (
        src.channels,
        src.order,
        src.dtype,
        src.transfer,
    ):
        raise ValueError(f"the engine returned {out.dtype}/{out.order}, not what was sent")
    factor = job.params["sr_factor"] if _enlarges(job) else 1
    if (out.width, out.height) != (src.width * factor, src.height * factor):
        raise ValueError(
            f"the engine returned {out.width}×{out.height}, expected "
            f"{src.width * factor}×{src.height * factor}"
        )


def _enlarges(job: Job) -> bool:
    return job.params["sr_factor"] > 1 and job.params["output"] == "bokeh"


def apply(job: Job, result, app=None):
    """On the GUI thread: the result as a new layer above the source (a re-edit: above the
    result it follows, which it covers), or (SR > 1) a new document, which is returned (the
    caller opens a view on it). The source is untouched; the result remembers its settings."""
    check_result(job, result)
    out = result.image
    node, doc = job.node, job.doc
    name = edits.result_name(node.name(), job.params)
    if _enlarges(job):
        if app is None:
            from krita import Krita

            app = Krita.instance()
        base = os.path.splitext(os.path.basename(doc.fileName() or ""))[0] or doc.name()
        new = app.createDocument(
            out.width,
            out.height,
            name,
            "RGBA",
            node.colorDepth(),
            node.colorProfile(),
            doc.resolution(),
        )
        layer = new.createNode(name, "paintlayer")
        layer.setPixelData(out.data, 0, 0, out.width, out.height)  # before it is shown
        new.rootNode().addChildNode(layer, None)
        for child in list(new.rootNode().childNodes()):  # the new document's empty layer
            if child.name() != name:
                child.remove()
        # named after the photo, not "Untitled" (saving asks where, starting here)
        folder = os.path.dirname(doc.fileName() or "") or os.path.expanduser("~")
        new.setFileName(os.path.join(folder, edits.file_stem(base, job.params) + ".kra"))
        new.refreshProjection()
        return new, layer
    layer = doc.createNode(name, "paintlayer")
    if (layer.colorModel(), layer.colorDepth(), layer.colorProfile()) != (
        node.colorModel(),
        node.colorDepth(),
        node.colorProfile(),
    ):
        layer.setColorSpace(node.colorModel(), node.colorDepth(), node.colorProfile())
    # pixels first: the layer enters the document complete, in one undo step
    layer.setPixelData(out.data, 0, 0, out.width, out.height)
    above = node
    if job.result is not None and job.result.parentNode() is not None:
        above = job.result  # the new look covers the earlier one: one Ctrl+Z brings it back
    above.parentNode().addChildNode(layer, above)
    save_record(doc, layer, job.params, node)
    doc.setActiveNode(layer)
    doc.refreshProjection()
    return doc, layer

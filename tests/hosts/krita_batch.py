# Run by kritarunner inside the root (tests/hosts/test_hosts_krita.py):
#   QT_QPA_PLATFORM=offscreen PYTHONPATH=/bokehkit/tests/hosts kritarunner -s krita_batch \
#       -f main /job
# Drives the installed plug-in's core (document in, engine, result layer out) the way the
# docker does, for each case: selection | focuslayer | transparencymask | sr2 | f32 |
# cancel | nomask-error | magicbokeh | focusactive | reedit | helpers | range | depthview.
# kritarunner exits 0 even when this raises, so failures end in os._exit(1) and the test
# checks the outputs. Krita 5 runs PyQt5, Krita 6 PyQt6 (it refuses PyQt5 imports).
import importlib.util
import json
import os
import sys
import threading
import time
import traceback

from krita import InfoObject, Krita, Selection

if Krita.instance().version().startswith("5"):
    from PyQt5.QtCore import QByteArray
else:
    from PyQt6.QtCore import QByteArray

PYKRITA = os.path.expanduser("~/.local/share/krita/pykrita")


def log(*a):
    print("[krita_batch]", *a, file=sys.stderr, flush=True)


def load_core():
    """The installed plug-in's core.py, by path: importing the package would register the
    GUI extension and docker, which kritarunner has no window for."""
    path = os.path.join(PYKRITA, "bokehkit_krita", "core.py")
    spec = importlib.util.spec_from_file_location("bokehkit_krita_core", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def run_case(core, job, case, params):
    out = os.path.join(job, case)
    os.makedirs(out, exist_ok=True)
    report = {"case": case}
    app = Krita.instance()
    doc = app.openDocument(os.path.join(job, "in.png"))
    doc.setBatchmode(True)
    w, h = doc.width(), doc.height()
    src = doc.activeNode() or doc.rootNode().childNodes()[-1]
    if case == "f32":  # a 32-bit float linear document: pixels go as RGBA float32
        doc.setColorSpace("RGBA", "F32", "sRGB-elle-V2-g10.icc")
        doc.waitForDone()
        src = doc.activeNode() or doc.rootNode().childNodes()[-1]
        with open(os.path.join(out, "source.f32"), "wb") as f:  # the CLI renders the same
            f.write(bytes(src.pixelData(0, 0, w, h)))
    report["depth"] = [src.colorModel(), src.colorDepth(), src.colorProfile()]
    mask = open(os.path.join(job, "mask.raw"), "rb").read()
    assert len(mask) == w * h
    before = None
    params = dict(params)
    if case in ("selection", "sr2", "cancel", "f32", "magicbokeh"):
        sel = Selection()
        sel.setPixelData(QByteArray(mask), 0, 0, w, h)
        doc.setSelection(sel)
        before = bytes(doc.selection().pixelData(0, 0, w, h))
        if case == "sr2":
            params["sr_factor"] = 2
        if case == "magicbokeh":  # the learned engine (a tiny model in $BOKEHKIT_MODELS)
            params["engine"] = "magicbokeh"
    elif case == "transparencymask":  # a transparency mask on the layer holds the mask
        tmask = doc.createTransparencyMask("Sharp")
        sel = Selection()
        sel.setPixelData(QByteArray(mask), 0, 0, w, h)
        tmask.setSelection(sel)
        src.addChildNode(tmask, None)
        before = bytes(tmask.pixelData(0, 0, w, h))
    elif case in ("focuslayer", "focusactive"):  # white paint whose alpha is the mask
        focus = doc.createNode("Focus", "paintlayer")
        doc.rootNode().addChildNode(focus, src)
        bgra = bytearray(b"\xff" * (4 * w * h))
        bgra[3::4] = mask
        focus.setPixelData(QByteArray(bytes(bgra)), 0, 0, w, h)
        focus.setVisible(case == "focusactive")  # as a user leaves it after painting
        before = bytes(focus.pixelData(0, 0, w, h))
    elif case in ("reedit", "helpers", "range", "depthview"):
        sel = Selection()
        sel.setPixelData(QByteArray(mask), 0, 0, w, h)
        doc.setSelection(sel)
        before = bytes(doc.selection().pixelData(0, 0, w, h))
        if case != "reedit":  # white paint on transparent Depth and Blur layers
            for name in ("Depth", "Blur"):
                plane = open(os.path.join(job, f"{name.lower()}.raw"), "rb").read()
                bgra = bytearray(b"\xff" * (4 * w * h))
                bgra[3::4] = plane
                layer = doc.createNode(name, "paintlayer")
                doc.rootNode().addChildNode(layer, src)
                layer.setPixelData(QByteArray(bytes(bgra)), 0, 0, w, h)
                layer.setVisible(False)
        if case == "range":
            params.update(focus_source="range", focus_near=0.0, focus_far=0.45)
        if case == "depthview":
            params.update(focus_source="point", focus_x=0.5, focus_y=0.5, output="depth")
    active = src
    if case == "focusactive":  # the user just painted Focus: it is the active layer
        active = [n for n in doc.rootNode().childNodes() if n.name() == "Focus"][0]
    doc.setActiveNode(active)
    doc.waitForDone()
    layers = [n.name() for n in doc.rootNode().childNodes()]
    engine = core.new_engine()
    t0 = time.monotonic()
    cancel = threading.Event()
    progress = []

    def on_progress(fraction, text):
        progress.append(fraction)
        if case == "cancel":  # the docker's Stop: cancel once the render is under way
            cancel.set()

    new_doc = layer = None
    try:
        jobspec = core.prepare(doc, active, params)
        report["mask_source"] = jobspec.mask_name
        report["rendered"] = jobspec.node.name()
        report["note"] = jobspec.note
        result = core.render(engine, jobspec, on_progress, cancel)
        new_doc, layer = core.apply(jobspec, result, app)
        if case == "reedit":  # the filter on the result: its source again, f/2.8
            report["first_name"] = layer.name()
            with open(os.path.join(out, "first.raw"), "wb") as f:
                f.write(bytes(layer.pixelData(0, 0, w, h)))
            again = core.prepare(doc, layer, {**params, "aperture": 2.8})
            report["rendered"], report["note"] = again.node.name(), again.note
            result = core.render(engine, again, on_progress, cancel)
            new_doc, layer = core.apply(again, result, app)
            report["record_aperture"] = core.record_of(doc, layer)[0]["aperture"]
        report["status"] = "success"
        report["engine_report"] = result.report
    except core.bk_client.Cancelled:
        report["status"] = "cancelled"
    except (ValueError, core.bk_client.EngineError) as exc:
        report["status"] = "error"
        report["message"] = str(exc)
    finally:
        core.shutdown_engines()
    report["progress_events"] = len(progress)
    report["seconds"] = round(time.monotonic() - t0, 2)
    report["layers_before"] = layers
    report["layers"] = [n.name() for n in doc.rootNode().childNodes()]
    if case in ("selection", "magicbokeh", "reedit", "helpers", "range", "depthview"):
        report["mask_untouched"] = bytes(doc.selection().pixelData(0, 0, w, h)) == before
    elif case in ("focuslayer", "focusactive"):
        focus = [n for n in doc.rootNode().childNodes() if n.name() == "Focus"][0]
        report["mask_untouched"] = bytes(focus.pixelData(0, 0, w, h)) == before
    elif case == "transparencymask":
        tmask = [n for n in src.childNodes() if n.type() == "transparencymask"][0]
        report["mask_untouched"] = bytes(tmask.pixelData(0, 0, w, h)) == before
    if new_doc is not None and new_doc is not doc and layer is not None:  # SR: new document
        new_doc.setBatchmode(True)
        report["new_document_size"] = [new_doc.width(), new_doc.height()]
        report["new_document_layers"] = [n.name() for n in new_doc.rootNode().childNodes()]
        report["new_document_file"] = os.path.basename(new_doc.fileName())
        new_doc.refreshProjection()
        new_doc.waitForDone()
        report["saved"] = bool(new_doc.exportImage(os.path.join(out, "result.png"), InfoObject()))
        new_doc.close()
    elif layer is not None and case == "f32":
        with open(os.path.join(out, "result.f32"), "wb") as f:
            f.write(bytes(layer.pixelData(0, 0, w, h)))
        report["result_depth"] = [layer.colorModel(), layer.colorDepth(), layer.colorProfile()]
    elif layer is not None:
        if case == "reedit":  # the earlier result stays under the new one: hide it too
            report["layers_after"] = [
                n.name() for n in doc.rootNode().childNodes() if n.type() == "paintlayer"
            ]
        for other in doc.rootNode().childNodes():  # export the result layer alone
            if other.name() != layer.name():
                other.setVisible(False)
        doc.refreshProjection()
        doc.waitForDone()
        ok = doc.exportImage(os.path.join(out, "result.png"), InfoObject())
        report["saved"] = bool(ok)
    doc.close()
    with open(os.path.join(out, "report.json"), "w") as f:
        json.dump(report, f, indent=1)
    log(json.dumps(report))


def main(args):
    try:
        job = args[0] if args else "/job"
        Krita.instance().setBatchmode(True)
        core = load_core()
        params = json.loads(os.environ.get("BK_PARAMS", "{}"))
        for case in os.environ["BK_CASES"].split(","):
            run_case(core, job, case, params)
    except BaseException:
        traceback.print_exc()
        sys.stderr.flush()
        os._exit(1)

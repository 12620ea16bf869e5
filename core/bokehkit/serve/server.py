"""`bokehkit serve`: the engine side of the plug-in protocol (docs/protocol.md).

Requests arrive one JSON object per line; a reader thread takes them in so that `cancel`
and `ping` are answered while a render runs, and the calling (main) thread runs renders
and dialogs one at a time, because Qt dialogs must live on the main thread.
"""

from __future__ import annotations

import base64
import contextlib
import importlib
import importlib.util
import logging
import math
import os
import queue
import shutil
import sys
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from bokehkit_plugin import schema

from .. import __version__
from ..errors import BokehkitError
from ..io import rawbuffer as rb
from ..io.image import LoadedImage, encode_linear
from ..pipeline import RenderReport, RenderSettings, encode_result, render_view
from ..progress import Cancelled, Progress
from ..scene.refine import FocusRange, check_focus_range
from ..sr import realesrgan
from . import jobdirs, lifetime, protocol
from .jobdirs import JobFolders

log = logging.getLogger("bokehkit.server")

PREVIEW_MAX_PX = 512
# Progress lines are throttled: a 12 MP render has hundreds of tiles.
PROGRESS_INTERVAL_S = 0.1
#: Events that end a job.
FINAL_EVENTS = ("result", "error", "cancelled", "dialog_result", "dialog_cancelled", "installed")
#: Jobs one client may have queued or running at once.
MAX_PENDING_JOBS = 8


# ------------------------------------------------------------------ request -> render


@dataclass
class Inputs:
    """What one request renders: the image, the buffer format to answer in, mask, depth."""

    image: LoadedImage
    like: rb.RawBuffer
    mask: np.ndarray | None = None
    depth_path: str | None = None
    blur: np.ndarray | None = None  # the Blur refine brush (white = more blur)
    depth_photo: str | None = None  # a phone photo (in the job folder) whose depth to use


def _buffer(request: dict, key: str, folders: JobFolders | None) -> rb.RawBuffer | None:
    """The request's buffer `key`: inline base64, or a file in the request's job folder.
    Without `folders` (an in-process caller, e.g. the tests) the job folder is trusted."""
    ref = request.get(key)
    if ref is None:
        return None
    if request.get("inline"):
        if not isinstance(ref, str):
            raise BokehkitError(f"{key}: an inline buffer is a base64 string")
        try:
            data = base64.b64decode(ref, validate=True)
        except (ValueError, TypeError):
            raise BokehkitError(f"{key}: inline buffer is not valid base64") from None
        return rb.from_bytes(data, key)
    job_dir = request.get("job_dir")
    if not job_dir:
        raise BokehkitError("request has no job_dir for its buffer files")
    if folders is None:
        return rb.read_buffer(Path(job_dir) / str(ref))
    with folders.open(job_dir, ref, key) as f:
        return rb.read_buffer_from(f, key)


def _job_file(request: dict, key: str, folders: JobFolders | None) -> Path:
    """A file the client put into the request's job folder, named by `key`: a plain name,
    never a path."""
    name = request.get(key)
    if not isinstance(name, str) or not name or Path(name).name != name or name.startswith("."):
        raise BokehkitError(f"{key}: a file name in the job folder, not {name!r}")
    job_dir = request.get("job_dir")
    folder = Path(str(job_dir)) if folders is None else folders.folder(job_dir)
    path = folder / name
    if path.is_symlink() or not path.is_file():
        raise BokehkitError(f"{key}: no file {name!r} in the job folder")
    return path


def load_inputs(request: dict, scratch: Path, folders: JobFolders | None = None) -> Inputs:
    """Read the request's buffers; a depth buffer goes to `scratch` as .npy for the pipeline."""
    image_buf = _buffer(request, "image", folders)
    if image_buf is None:
        raise BokehkitError("request has no image")
    inputs = Inputs(rb.buffer_to_image(image_buf), image_buf)
    mask_buf = _buffer(request, "mask", folders)
    if mask_buf is not None:
        inputs.mask = rb.mask_from_buffer(mask_buf)
    blur_buf = _buffer(request, "blur", folders)
    if blur_buf is not None:
        inputs.blur = rb.mask_from_buffer(blur_buf)
    if request.get("depth_photo"):
        inputs.depth_photo = str(_job_file(request, "depth_photo", folders))
    depth_buf = _buffer(request, "depth", folders)
    if depth_buf is not None:
        path = scratch / "depth.npy"
        np.save(path, rb.depth_from_buffer(depth_buf))
        inputs.depth_path = str(path)
    return inputs


def shrink(inputs: Inputs, max_px: int) -> Inputs:
    """A copy whose longest side is at most `max_px`, resampled in linear light."""
    from ..sr.lanczos import resize_plane

    image = inputs.image
    w, h = image.size
    scale = max_px / max(w, h)
    if scale >= 1.0:
        return inputs
    nw, nh = max(1, round(w * scale)), max(1, round(h * scale))
    linear = np.stack([resize_plane(image.linear_rgb[..., c], nw, nh) for c in range(3)], -1)
    np.maximum(linear, 0.0, out=linear)  # Lanczos undershoots at hard edges
    encoding = replace(image.encoding, size=(nw, nh))
    encoded = encode_linear(linear, encoding)
    # Linear light that round-trips through the code values, as a loaded image would have.
    linear = rb.to_linear(encoded, inputs.like.transfer)
    alpha = None
    if image.alpha is not None:
        a = resize_plane(image.alpha.astype(np.float32), nw, nh)
        full = float(np.iinfo(image.alpha.dtype).max) if image.alpha.dtype.kind == "u" else 1.0
        alpha = np.clip(np.rint(a) if full > 1 else a, 0, full).astype(image.alpha.dtype)

    def plane(values: np.ndarray | None) -> np.ndarray | None:
        return None if values is None else np.clip(resize_plane(values, nw, nh), 0.0, 1.0)

    small = LoadedImage(linear, alpha, encoded, encoding)
    return replace(inputs, image=small, mask=plane(inputs.mask), blur=plane(inputs.blur))


def _num(params: dict, name: str, default: float) -> float:
    """A number outside the render parameters (e.g. preview_max_px); NaN and infinities are
    refused."""
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BokehkitError(f"parameter {name} must be a number, not {value!r}")
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number):
        raise BokehkitError(f"parameter {name} must be a finite number, not {value!r:.40}")
    return number


def check_params(params: dict | None) -> dict:
    """The request's render parameters checked against the plug-ins' schema
    (plugin/bokehkit_plugin/schema.py): every name, default, choice and range is the one the
    panel and the GIMP arguments show; missing ones take their defaults."""
    try:
        return schema.validate(params)
    except schema.ParamError as exc:
        raise BokehkitError(str(exc)) from None


def settings_from_params(params: dict, inputs: Inputs) -> RenderSettings:
    """Map the schema's names (plugin/bokehkit_plugin/schema.py), checked by it, to
    RenderSettings."""
    values = check_params(params)
    settings = RenderSettings(
        engine=values["engine"],
        depth_path=inputs.depth_path,
        f_number=values["aperture"],
        focal_length_mm=values["focal_length"] or None,  # 0: EXIF, else 50
        sr_factor=values["sr_factor"],
        blades=values["blades"],
        blade_rotation_deg=values["blade_rotation"],
        highlight_gain=values["highlights"],
        grain=values["grain"],
        upscaler=values["upscaler"],
    )
    if settings.upscaler == "realesrgan":  # the classical upscaler takes no options
        settings.upscaler_options = {"detail": values["sr_detail"]}
    settings.blur_mask = getattr(inputs, "blur", None)
    if getattr(inputs, "depth_photo", None) and not inputs.depth_path:
        settings.depth_from_photo = inputs.depth_photo
    focus_source = values["focus_source"]
    if focus_source == "mask":
        if inputs.mask is None:
            raise BokehkitError(
                "focus source is the painted mask but no mask was sent: paint the subject "
                "(selection or mask) or choose point or auto focus"
            )
        settings.focus_mask = inputs.mask
    elif focus_source == "range":
        # fractions of the photo's depth, 0 = nearest: the dialog's two handles
        near, far = values["focus_near"], values["focus_far"]
        settings.focus_range = check_focus_range(FocusRange(near, far))
    elif focus_source == "point":
        # focus_x/focus_y are fractions of the image, so they survive preview downscaling.
        w, h = inputs.image.size
        fx, fy = values["focus_x"], values["focus_y"]
        settings.focus_point = (min(fx * w, w - 1), min(fy * h, h - 1))
    return settings


def render_inputs(
    inputs: Inputs, params: dict, progress: Progress, memo: dict | None = None
) -> tuple[np.ndarray, np.ndarray | None, RenderReport]:
    """Render the bokeh, or the depth view (params "output": "depth"); returns code values
    (RGB order), alpha and the report. `memo` keeps what depends on the image alone
    between renders of the same inputs (pipeline.RenderSettings.image_memo)."""
    settings = settings_from_params(params, inputs)
    settings.image_memo = memo
    view = check_params(params)["output"]
    linear, report, factor = render_view(inputs.image, settings, progress, view)
    progress.update(1.0, "writing the result")
    encoded, alpha = encode_result(inputs.image, linear, factor)
    return encoded, alpha, report


def realesrgan_status(store: str | Path | None = None) -> dict:
    """The "realesrgan" upscaler's availability, in the ping's form."""
    available, reason = realesrgan.status(store)
    return {"available": True} if available else {"available": False, "reason": reason}


def depth_status() -> dict:
    """Whether renders get depth from a model (the ping's "depth"): without one, and without
    a depth map, the blur is graded by distance from the focus region (depth.fallback_depth)
    and the plug-ins say so before rendering."""
    from ..pipeline import DEPTH_MODEL_IDS
    from ..store import installed_path

    for model_id in DEPTH_MODEL_IDS:
        try:
            if installed_path(model_id) is not None:
                return {"available": True, "model": model_id}
        except (BokehkitError, KeyError):
            continue
    return {
        "available": False,
        "reason": "no depth model is installed",
        "install": DEPTH_MODEL_IDS[-1],  # the smallest: the quickest download
    }


def subject_status() -> dict:
    """Whether "auto" focus finds the subject (ISNet) or takes the image centre."""
    from ..scene import subject

    if subject.model_path() is None:
        return {"available": False, "reason": "ISNet is not installed", "install": subject.MODEL_ID}
    if importlib.util.find_spec("onnxruntime") is None:
        return {"available": False, "reason": "ISNet needs onnxruntime in the engine"}
    return {"available": True}


def engines_status() -> dict:
    """Which renderers (and learned upscaler: "realesrgan") this engine can run, with what
    to install for the others; also whether it has depth ("depth") and finds the subject
    for auto focus ("subject")."""
    engines = {
        "classical": {"available": True},
        "realesrgan": realesrgan_status(),
        "depth": depth_status(),
        "subject": subject_status(),
    }
    module = "bokehkit.render.magicbokeh"
    try:
        magicbokeh = importlib.import_module(module)  # the torch path pulls in torch: only here
    except ImportError as exc:
        if exc.name == module:
            reason = "not part of this engine build; install the full engine (with torch)"
        else:
            reason = f"needs {exc.name or exc}, which is not installed in the engine"
        engines["magicbokeh"] = {"available": False, "reason": reason}
        return engines
    # The renderer module says whether its weights are in place, and if not, what to do.
    status = getattr(magicbokeh, "model_status", None)
    available, reason = status() if callable(status) else (True, "")
    entry = {"available": bool(available)}
    if not available:
        entry["reason"] = reason or "its model is not installed"
    engines["magicbokeh"] = entry
    return engines


def install_model(model_id: str, progress: Progress) -> str:
    """Install a model a plug-in may ask for (a depth model or ISNet: the fixes the panel
    offers), with progress and cancel; the id installed."""
    from ..pipeline import DEPTH_MODEL_IDS
    from ..scene import subject
    from ..store import ModelStore

    allowed = (*DEPTH_MODEL_IDS, subject.MODEL_ID)
    if model_id not in allowed:
        raise BokehkitError(f"plug-ins may install {', '.join(allowed)}, not {model_id!r}")
    progress.update(0.0, f"installing {model_id}")
    ModelStore().install(model_id, progress=progress.update, log=lambda line: log.info(line))
    progress.update(1.0, f"installed {model_id}")
    return model_id


class NotCached(BokehkitError):
    """A preview named inputs the engine no longer keeps: the client sends them again."""


def one_line(exc: BaseException) -> str:
    """An unexpected exception as one line a user can report."""
    text = str(exc).strip().splitlines()
    return f"internal error: {type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# ------------------------------------------------------------------------- the session


@dataclass
class _Job:
    """A render or dialog request while it waits or runs."""

    request: dict
    id: object
    cancel: threading.Event
    answered: bool = False  # `cancelled` was sent already: drop whatever the job says later


class Session:
    """One client: requests from `reader`, events to `writer` (both binary streams).

    `folders` are the session's job folders; `exclusive` (a context manager) is held while
    a job runs, so that sessions of a TCP engine render one at a time; `on_main` runs a
    dialog on the main thread (Qt's rule) when this session's jobs run on another."""

    def __init__(
        self,
        reader: BinaryIO,
        writer: BinaryIO,
        folders: JobFolders | None = None,
        exclusive=None,
        on_main=None,
        admission=None,
    ) -> None:
        self._reader = reader
        self._writer = writer
        self._write_lock = threading.Lock()
        self._jobs: queue.Queue[_Job | None] = queue.Queue()
        self.folders = folders or JobFolders()
        self._exclusive = exclusive or contextlib.nullcontext()
        self._on_main = on_main
        self._state_lock = threading.Lock()
        # Jobs not finished yet (queued or running), by id: a cancel finds them here and
        # nowhere else, so nothing grows with cancels of ids that are done or unknown.
        self._pending: dict[object, _Job] = {}
        self.closed = threading.Event()  # EOF, shutdown or a dead client
        self.shutdown_requested = False
        self._max_line = protocol.max_request_bytes()
        # A TCP engine's limit on jobs waiting across all clients (tcp.JobAdmission).
        self._admission = admission
        from .transfer import Transfers

        self.transfers = Transfers(self.folders, self.emit)
        # The last preview's inputs, shrunk, with what was computed from them: a slider
        # move re-renders them without reading, decoding or resampling the layer again.
        self._preview_cache: tuple[str, Inputs, dict, Path] | None = None

    # -- output
    def emit(self, event: dict) -> None:
        line = protocol.encode_event(event)
        try:
            with self._write_lock:
                self._writer.write(line)
                self._writer.flush()
        except (OSError, ValueError):
            self._close()  # nobody is listening any more

    def _emit_for(self, job: _Job, event: dict) -> None:
        """An event of a job, unless the client was told it is cancelled."""
        with self._state_lock:
            if job.answered:
                return
            if event["type"] in FINAL_EVENTS:
                self._forget(job)
        self.emit(event)

    def _forget(self, job: _Job) -> None:
        """The client was told how `job` ended (state lock held): its id is free again."""
        job.answered = True
        if self._pending.get(job.id) is job:
            del self._pending[job.id]
            if self._admission is not None:
                self._admission.release()

    # -- input (reader thread)
    def _read_loop(self) -> None:
        while not self.closed.is_set():
            try:
                raw = protocol.read_line(self._reader, self._max_line)
            except protocol.LineTooLong as exc:
                self.emit({"type": "error", "id": None, "message": str(exc)})
                continue
            except (OSError, ValueError):
                break  # the stream broke or was closed
            if raw is None:
                break
            if not raw.strip():
                continue
            try:
                self._dispatch(protocol.parse_request(raw))
            except protocol.RequestError as exc:
                self.emit({"type": "error", "id": exc.request_id, "message": str(exc)})
            except Exception as exc:  # noqa: BLE001 - the reader must outlive any request
                log.exception("request failed")
                self.emit({"type": "error", "id": None, "message": one_line(exc)})
        self._close()

    def _dispatch(self, request: dict) -> None:
        kind, request_id = request.get("type"), request.get("id")
        if kind == "ping":
            from .devices import engine_devices

            pong = {"type": "pong", "version": __version__, "engines": engines_status()}
            self.emit({**pong, "devices": engine_devices()})
        elif kind == "cancel":
            self._cancel(request_id)
        elif kind == "shutdown":
            self.shutdown_requested = True
            self._close()
        elif kind == "open_job":
            try:
                folder = self.folders.create()
            except OSError as exc:
                message = f"cannot make a job folder ({exc.strerror or exc})"
                self.emit({"type": "error", "id": request_id, "message": message})
                return
            self.emit({"type": "job_opened", "id": request_id, "job_dir": str(folder)})
        elif kind == "close_job":
            self.folders.close(request.get("job_dir"))
        elif kind == "put":
            self.transfers.put(request)
        elif kind == "get":
            self.transfers.get(request)
        elif kind in ("render", "dialog", "install", "render_file"):
            job = _Job(request, request_id, threading.Event())
            with self._state_lock:
                if request_id in self._pending:
                    raise protocol.RequestError(
                        f"job {request_id!r} is already running", request_id
                    )
                if len(self._pending) >= MAX_PENDING_JOBS:
                    raise protocol.RequestError("too many jobs queued; wait for one", request_id)
                if self._admission is not None and not self._admission.admit():
                    raise protocol.RequestError(
                        "the engine's queue is full; try again later", request_id
                    )
                self._pending[request_id] = job
            self._jobs.put(job)
        else:
            raise protocol.RequestError(f"unknown request {str(kind)[:40]!r}", request_id)

    def _cancel(self, request_id: object) -> None:
        """Answer at once, whatever the job is doing (reading, ISNet, a tile): it stops at its
        next check, and nothing more is said about it."""
        with self._state_lock:
            job = self._pending.get(request_id)
            if job is None or job.answered:
                return  # done already, or never seen: nothing to cancel
            job.cancel.set()
            self._forget(job)
        self.emit({"type": "cancelled", "id": request_id})

    def _close(self) -> None:
        self.closed.set()
        with self._state_lock:
            for job in self._pending.values():
                job.cancel.set()
        self._jobs.put(None)

    # -- jobs (calling thread)
    def run(self) -> None:
        """Serve until EOF or shutdown; the job folders are removed at the end."""
        reader = threading.Thread(target=self._read_loop, name="bokehkit-requests", daemon=True)
        reader.start()
        try:
            while True:
                job = self._jobs.get()
                if job is None or self.closed.is_set():
                    break
                try:
                    if not job.cancel.is_set():
                        with self._exclusive:
                            if job.request["type"] == "dialog":
                                self._run_dialog(job)
                            elif job.request["type"] == "install":
                                self._run_install(job)
                            elif job.request["type"] == "render_file":
                                self._run_render_file(job)
                            else:
                                self._run_render(job)
                finally:
                    with self._state_lock:
                        self._forget(job)
        finally:
            # Jobs still queued when the session ends (a client that went away) give back
            # their places in the engine-wide queue, or they would be lost for good.
            with self._state_lock:
                for job in list(self._pending.values()):
                    job.cancel.set()
                    self._forget(job)
            self.transfers.close_all()
            self._forget_preview()
            self.folders.close_all()
        if self.shutdown_requested:
            self.emit({"type": "bye"})

    def _progress_callback(self, job: _Job):
        last = [0.0, ""]

        def callback(fraction: float, text: str) -> None:
            now = time.monotonic()
            stage = text.split(",")[0]
            if now - last[0] < PROGRESS_INTERVAL_S and stage == last[1] and fraction < 1.0:
                return
            last[0], last[1] = now, stage
            event = {"type": "progress", "id": job.id, "fraction": round(fraction, 4)}
            self._emit_for(job, {**event, "text": text})

        return callback

    def _preview_inputs(self, request: dict, scratch: Path) -> tuple[Inputs, dict]:
        """A preview's inputs, shrunk: those kept under the name the request gives as
        "cached", else read from its buffers (and kept under "cache_as", if given)."""
        cached = request.get("cached")
        if cached is not None:
            kept = self._preview_cache
            if kept is None or kept[0] != cached:
                raise NotCached(f"the engine no longer keeps the preview inputs {cached!r}")
            return kept[1], kept[2]
        max_px = int(
            min(max(_num({"p": request.get("preview_max_px")}, "p", PREVIEW_MAX_PX), 16), 4096)
        )
        inputs = shrink(load_inputs(request, scratch, self.folders), max_px)
        memo: dict = {}
        name = request.get("cache_as")
        if isinstance(name, str) and 0 < len(name) <= 64:
            self._forget_preview()
            # The job's scratch and job folders go with the job: what the kept inputs name
            # (the depth map, the phone photo) moves to a folder of the session's own.
            keep = jobdirs.make_private_dir(jobdirs.SCRATCH_PREFIX)
            for field_name in ("depth_path", "depth_photo"):
                path = getattr(inputs, field_name)
                if path is not None:
                    kept_path = keep / f"{field_name}{Path(path).suffix}"
                    shutil.copyfile(path, kept_path)
                    setattr(inputs, field_name, str(kept_path))
            self._preview_cache = (name, inputs, memo, keep)
        return inputs, memo

    def _forget_preview(self) -> None:
        kept, self._preview_cache = self._preview_cache, None
        if kept is not None:
            jobdirs.remove(kept[3])

    def _run_render(self, job: _Job) -> None:
        request, job_id = job.request, job.id
        try:
            with scratch_folder() as scratch:
                progress = Progress(self._progress_callback(job), job.cancel)
                progress.update(0.0, "reading the image")
                params = dict(request.get("params") or {})
                memo = None
                if request.get("preview"):
                    inputs, memo = self._preview_inputs(request, scratch)
                    params["sr_factor"] = 1  # a preview shows the look, not the resolution
                else:
                    inputs = load_inputs(request, scratch, self.folders)
                progress.check_cancelled()
                span = progress.span(0.02, 0.98)
                encoded, alpha, report = render_inputs(inputs, params, span, memo)
                progress.check_cancelled()
                result = rb.image_to_buffer(encoded, alpha, inputs.like)
                event = {"type": "result", "id": job_id, "report": report.lines()}
                if request.get("inline"):
                    event["data"] = base64.b64encode(rb.to_bytes(result)).decode("ascii")
                else:
                    name = "preview.bkraw" if request.get("preview") else "result.bkraw"
                    rb.write_buffer(self.folders.result_path(request.get("job_dir"), name), result)
                    event["file"] = name
            self._emit_for(job, event)
        except Cancelled:
            self._emit_for(job, {"type": "cancelled", "id": job_id})
        except NotCached as exc:
            event = {"type": "error", "id": job_id, "code": "not_cached", "message": str(exc)}
            self._emit_for(job, event)
        except BokehkitError as exc:
            self._emit_for(job, {"type": "error", "id": job_id, "message": str(exc)})
        except MemoryError:
            message = "out of memory; try a smaller image or a lower super-resolution factor"
            self._emit_for(job, {"type": "error", "id": job_id, "message": message})
        except Exception as exc:  # noqa: BLE001 - the engine keeps serving
            log.exception("render %s failed", job_id)
            self._emit_for(job, {"type": "error", "id": job_id, "message": one_line(exc)})

    def _run_render_file(self, job: _Job) -> None:
        """A remote `bokehkit render`: a photo uploaded into the job folder, rendered to a
        file there exactly as on the command line (uploads.py)."""
        from .uploads import render_uploaded_file

        try:
            progress = Progress(self._progress_callback(job), job.cancel)
            event = render_uploaded_file(job.request, self.folders, progress)
        except Cancelled:
            event = {"type": "cancelled"}
        except BokehkitError as exc:
            event = {"type": "error", "message": str(exc)}
        except MemoryError:
            event = {"type": "error", "message": "out of memory on the engine"}
        except Exception as exc:  # noqa: BLE001 - the engine keeps serving
            log.exception("render_file %s failed", job.id)
            event = {"type": "error", "message": one_line(exc)}
        self._emit_for(job, {**event, "id": job.id})

    def _run_install(self, job: _Job) -> None:
        """A plug-in's one-click fix: download a model the render can use (depth, ISNet)."""
        job_id = job.id
        try:
            model_id = install_model(
                str(job.request.get("model")), Progress(self._progress_callback(job), job.cancel)
            )
        except Cancelled:
            self._emit_for(job, {"type": "cancelled", "id": job_id})
        except BokehkitError as exc:
            self._emit_for(job, {"type": "error", "id": job_id, "message": str(exc)})
        except Exception as exc:  # noqa: BLE001
            log.exception("install %s failed", job_id)
            self._emit_for(job, {"type": "error", "id": job_id, "message": one_line(exc)})
        else:
            self._emit_for(job, {"type": "installed", "id": job_id, "model": model_id})

    def _run_dialog(self, job: _Job) -> None:
        job_id = job.id

        def show() -> dict | None:
            return run_dialog_request(job.request, job.cancel, engines_status(), self.folders)

        try:
            check_display()
            params = self._on_main(show) if self._on_main is not None else show()
        except ImportError as exc:
            message = f"the dialog needs PyQt6 in the engine ({exc}); reinstall the engine"
            self._emit_for(job, {"type": "error", "id": job_id, "message": message})
            return
        except BokehkitError as exc:
            self._emit_for(job, {"type": "error", "id": job_id, "message": str(exc)})
            return
        except Exception as exc:  # noqa: BLE001
            log.exception("dialog %s failed", job_id)
            self._emit_for(job, {"type": "error", "id": job_id, "message": one_line(exc)})
            return
        if params is None:
            self._emit_for(job, {"type": "dialog_cancelled", "id": job_id})
        else:  # params, and what the user asked the host to do after (dialog.DialogChoice)
            self._emit_for(job, {"type": "dialog_result", "id": job_id, **params})


@contextlib.contextmanager
def scratch_folder():
    """A private folder for one job's temporaries, removed after it (and by the engine's
    exit or its parent's death, should the job never end)."""
    path = jobdirs.make_private_dir(jobdirs.SCRATCH_PREFIX)
    try:
        yield path
    finally:
        jobdirs.remove(path)


def check_display() -> None:
    """BokehkitError when Qt would find no display: Qt aborts the whole process then, so
    this is checked before a QApplication is made."""
    if sys.platform in ("win32", "darwin"):
        return
    platform = os.environ.get("QT_QPA_PLATFORM", "").split(":")[0].strip().lower()
    if platform in ("offscreen", "minimal", "vnc", "eglfs", "linuxfb", "vkkhrdisplay"):
        return
    x11, wayland = os.environ.get("DISPLAY"), os.environ.get("WAYLAND_DISPLAY")
    if platform == "xcb" and x11 or platform.startswith("wayland") and wayland:
        return
    if not platform and (x11 or wayland):
        return
    raise BokehkitError(
        "the engine has no display to show the dialog on (DISPLAY and WAYLAND_DISPLAY are "
        "not set); run the plug-in from the desktop session, or use its own dialog"
    )


# ------------------------------------------------------------- the dialog, for GIMP

#: Size of the image the dialog shows and renders its live previews at.
DIALOG_PREVIEW_PX = 640


def _plugin_ui():
    """The shared Qt dialog (plugin/bokehkit_plugin/ui, installed with the engine); imported
    only when a dialog is shown, because it needs PyQt."""
    from bokehkit_plugin.ui import dialog

    return dialog


def dialog_inputs(request: dict, scratch: Path, folders: JobFolders | None = None) -> dict:
    """What the dialog needs from a request: the picture to show, a preview renderer (runs
    on the panel's worker thread), whether a mask came, the full image size, and the
    inputs the previews render from (the dialog's fixes change them)."""
    from bokehkit_plugin.ui.preview import PreviewImage

    def picture(linear, alpha, report=()) -> PreviewImage:
        rgba = rb.linear_to_rgba8(linear, alpha)
        return PreviewImage(rgba.shape[1], rgba.shape[0], rgba.tobytes(), tuple(report))

    inputs = shrink(load_inputs(request, scratch, folders), DIALOG_PREVIEW_PX)
    memo: dict = {}  # ISNet's subject, a depth model's estimate: once for all previews

    def preview_fn(params: dict, cancel: threading.Event, on_progress) -> PreviewImage:
        params = dict(params, sr_factor=1)  # the look, at screen size
        encoded, alpha, report = render_inputs(inputs, params, Progress(on_progress, cancel), memo)
        return picture(rb.to_linear(encoded, inputs.like.transfer), alpha, report.lines())

    return {
        "source": picture(inputs.image.linear_rgb, inputs.image.alpha),
        "preview_fn": preview_fn,
        "has_mask": inputs.mask is not None,
        "image_size": inputs.like.size,
        "inputs": inputs,
    }


def run_dialog_request(
    request: dict,
    cancel_event: threading.Event,
    engines: dict,
    folders: JobFolders | None = None,
) -> dict | None:
    """Show the parameter dialog (GIMP's Python has no Qt, so the engine shows it) with live
    previews rendered in this process; {"params", "action", "depth_photo"} or None when
    cancelled (plugin/bokehkit_plugin/ui/dialog.py)."""
    from .dialog_fixes import DialogFixes

    dialog = _plugin_ui()
    context = request.get("context") if isinstance(request.get("context"), dict) else {}
    context = {k: v for k, v in context.items() if k in dialog.CONTEXT_KEYS}
    with scratch_folder() as scratch:
        shown = dialog_inputs(request, scratch, folders)
        fixes = DialogFixes(shown.pop("inputs"), context, engines_status, install_model)
        try:
            return dialog.run_dialog(
                params=request.get("params") or {},
                engines=engines,
                cancel_event=cancel_event,
                context=context,
                on_fix=fixes,
                **shown,
            )
        finally:
            fixes.shutdown()


# ---------------------------------------------------------------------------- serving


def serve_stdio(job_base: str | None = None) -> int:
    """Serve one client on stdin/stdout until EOF, shutdown or the parent's death."""
    lifetime.install(job_base, watch_parent=True)
    # The protocol owns the real stdout; anything else printed (by us or a library, even
    # from C) goes to stderr, the engine's log, instead of corrupting the event stream.
    events = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    try:
        Session(sys.stdin.buffer, events, JobFolders(job_base)).run()
    finally:
        jobdirs.remove_all()
    events.close()
    return 0


def read_token(path: str | os.PathLike) -> str:
    """The shared secret a TCP client must send in its hello."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        reason = getattr(exc, "strerror", None) or exc
        raise BokehkitError(f"{path}: cannot read token file ({reason})") from None
    if len(token) < 8:
        raise BokehkitError(f"{path}: the token must be at least 8 characters")
    return token


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise BokehkitError(f"--tcp wants HOST:PORT, not {text!r}")
    if not 0 <= int(port) <= 65535:
        raise BokehkitError(f"--tcp: port {port} is not a port number (0–65535)")
    return host.strip("[]") or "127.0.0.1", int(port)

"""`bokehkit serve`: the engine side of the plug-in protocol (docs/protocol.md).

Requests arrive one JSON object per line; a reader thread takes them in so that `cancel`
and `ping` are answered while a render runs, and the calling (main) thread runs renders
and dialogs one at a time, because Qt dialogs must live on the main thread.
"""

from __future__ import annotations

import base64
import ctypes
import hmac
import importlib
import json
import logging
import os
import queue
import signal
import socket
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import BinaryIO

import numpy as np

from . import __version__
from . import rawbuffer as rb
from .errors import BokehkitError
from .imageio import LoadedImage, encode_linear
from .pipeline import (
    RenderReport,
    RenderSettings,
    encode_result,  # the same write-back as `bokehkit render`
    render_image,
)
from .progress import Cancelled, Progress
from .sr import realesrgan

log = logging.getLogger("bokehkit.server")

PREVIEW_MAX_PX = 512
PARENT_POLL_S = 0.5
# Progress lines are throttled: a 12 MP render has hundreds of tiles.
PROGRESS_INTERVAL_S = 0.1
FOCUS_SOURCES = ("mask", "point", "auto")
UPSCALERS = ("classical", "realesrgan")


# ------------------------------------------------------------------ request -> render


@dataclass
class Inputs:
    """What one request renders: the image, the buffer format to answer in, mask, depth."""

    image: LoadedImage
    like: rb.RawBuffer
    mask: np.ndarray | None = None
    depth_path: str | None = None


def _buffer(request: dict, key: str, job_dir: Path | None) -> rb.RawBuffer | None:
    ref = request.get(key)
    if ref is None:
        return None
    if request.get("inline"):
        try:
            data = base64.b64decode(ref, validate=True)
        except (ValueError, TypeError):
            raise BokehkitError(f"{key}: inline buffer is not valid base64") from None
        return rb.from_bytes(data, key)
    if job_dir is None:
        raise BokehkitError("request has no job_dir for its buffer files")
    return rb.read_buffer(job_dir / str(ref))


def load_inputs(request: dict, scratch: Path) -> Inputs:
    """Read the request's buffers; a depth buffer goes to `scratch` as .npy for the pipeline."""
    job_dir = Path(request["job_dir"]) if request.get("job_dir") else None
    image_buf = _buffer(request, "image", job_dir)
    if image_buf is None:
        raise BokehkitError("request has no image")
    inputs = Inputs(rb.buffer_to_image(image_buf), image_buf)
    mask_buf = _buffer(request, "mask", job_dir)
    if mask_buf is not None:
        inputs.mask = rb.mask_from_buffer(mask_buf)
    depth_buf = _buffer(request, "depth", job_dir)
    if depth_buf is not None:
        path = scratch / "depth.npy"
        np.save(path, rb.depth_from_buffer(depth_buf))
        inputs.depth_path = str(path)
    return inputs


def shrink(inputs: Inputs, max_px: int) -> Inputs:
    """A copy whose longest side is at most `max_px`, resampled in linear light."""
    from .upscale import resize_plane

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
    mask = None
    if inputs.mask is not None:
        mask = np.clip(resize_plane(inputs.mask, nw, nh), 0.0, 1.0)
    small = LoadedImage(linear, alpha, encoded, encoding)
    return Inputs(small, inputs.like, mask, inputs.depth_path)


def _num(params: dict, name: str, default: float) -> float:
    value = params.get(name, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BokehkitError(f"parameter {name} must be a number, not {value!r}")
    return float(value)


def settings_from_params(params: dict, inputs: Inputs) -> RenderSettings:
    """Map the plug-in schema's names (plugin/bokehkit_plugin/schema.py) to RenderSettings."""
    focus_source = params.get("focus_source", "auto")
    if focus_source not in FOCUS_SOURCES:
        raise BokehkitError(f"focus_source must be mask, point or auto, not {focus_source!r}")
    settings = RenderSettings(
        engine=str(params.get("engine", "classical")),
        depth_path=inputs.depth_path,
        f_number=_num(params, "aperture", 2.0),
        focal_length_mm=_num(params, "focal_length", 0.0) or None,  # 0: EXIF, else 50
        sr_factor=int(_num(params, "sr_factor", 1)),
        blades=int(_num(params, "blades", 0)),
        blade_rotation_deg=_num(params, "blade_rotation", 0.0),
        highlight_gain=_num(params, "highlights", 40.0),
        grain=_num(params, "grain", 1.0),
        upscaler=str(params.get("upscaler", "classical")),
    )
    if settings.f_number <= 0:
        raise BokehkitError(f"aperture must be a positive f-number, not {settings.f_number:g}")
    if settings.upscaler not in UPSCALERS:
        raise BokehkitError(f"upscaler must be classical or realesrgan, not {settings.upscaler!r}")
    sr_detail = _num(params, "sr_detail", realesrgan.DETAIL)
    if not 0.0 <= sr_detail <= 1.0:  # NaN fails too
        raise BokehkitError(
            f"sr_detail (AI detail) must be from 0 (a Lanczos upscale) to 1 (the network "
            f"alone), not {sr_detail:g}"
        )
    if settings.upscaler == "realesrgan":  # the classical upscaler takes no options
        settings.upscaler_options = {"detail": sr_detail}
    if focus_source == "mask":
        if inputs.mask is None:
            raise BokehkitError(
                "focus source is the painted mask but no mask was sent: paint the subject "
                "(selection or mask) or choose point or auto focus"
            )
        settings.focus_mask = inputs.mask
    elif focus_source == "point":
        # focus_x/focus_y are fractions of the image, so they survive preview downscaling.
        w, h = inputs.image.size
        fx = min(max(_num(params, "focus_x", 0.5), 0.0), 1.0)
        fy = min(max(_num(params, "focus_y", 0.5), 0.0), 1.0)
        settings.focus_point = (min(fx * w, w - 1), min(fy * h, h - 1))
    return settings


def render_inputs(
    inputs: Inputs, params: dict, progress: Progress
) -> tuple[np.ndarray, np.ndarray | None, RenderReport]:
    """Render; returns code values (RGB order), alpha and the report."""
    settings = settings_from_params(params, inputs)
    linear, report = render_image(inputs.image, settings, progress)
    progress.update(1.0, "writing the result")
    encoded, alpha = encode_result(inputs.image, linear, settings.sr_factor)
    return encoded, alpha, report


def realesrgan_status(store: str | Path | None = None) -> dict:
    """The "realesrgan" upscaler's availability, in the ping's form."""
    available, reason = realesrgan.status(store)
    return {"available": True} if available else {"available": False, "reason": reason}


def engines_status() -> dict:
    """Which renderers (and learned upscaler: "realesrgan") this engine can run, with what
    to install for the others."""
    engines = {"classical": {"available": True}, "realesrgan": realesrgan_status()}
    module = "bokehkit.renderers.magicbokeh"
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


def one_line(exc: BaseException) -> str:
    """An unexpected exception as one line a user can report."""
    text = str(exc).strip().splitlines()
    return f"internal error: {type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


# ------------------------------------------------------------------------- the session


class Session:
    """One client: requests from `reader`, events to `writer` (both binary streams)."""

    def __init__(self, reader: BinaryIO, writer: BinaryIO) -> None:
        self._reader = reader
        self._writer = writer
        self._write_lock = threading.Lock()
        self._jobs: queue.Queue[dict | None] = queue.Queue()
        self._current_id: str | None = None
        self._current_cancel = threading.Event()
        self._state_lock = threading.Lock()
        self._cancelled_ids: set[str] = set()
        self.closed = threading.Event()  # EOF, shutdown or a dead client
        self.shutdown_requested = False

    # -- output
    def emit(self, event: dict) -> None:
        line = (json.dumps(event, ensure_ascii=False) + "\n").encode()
        try:
            with self._write_lock:
                self._writer.write(line)
                self._writer.flush()
        except (OSError, ValueError):
            self._close()  # nobody is listening any more

    # -- input (reader thread)
    def _read_loop(self) -> None:
        try:
            for raw in self._reader:
                if not raw.strip():
                    continue
                try:
                    request = json.loads(raw)
                    if not isinstance(request, dict):
                        raise ValueError
                except ValueError:
                    self.emit({"type": "error", "id": None, "message": "request is not JSON"})
                    continue
                self._dispatch(request)
                if self.closed.is_set():
                    return
        except (OSError, ValueError):
            pass
        self._close()

    def _dispatch(self, request: dict) -> None:
        kind = request.get("type")
        if kind == "ping":
            self.emit({"type": "pong", "version": __version__, "engines": engines_status()})
        elif kind == "cancel":
            with self._state_lock:
                if request.get("id") == self._current_id:
                    self._current_cancel.set()
                else:
                    self._cancelled_ids.add(str(request.get("id")))
        elif kind == "shutdown":
            self.shutdown_requested = True
            self._close()
        elif kind in ("render", "dialog"):
            self._jobs.put(request)
        else:
            self.emit(
                {"type": "error", "id": request.get("id"), "message": f"unknown request {kind!r}"}
            )

    def _close(self) -> None:
        self.closed.set()
        self._current_cancel.set()
        self._jobs.put(None)

    # -- jobs (calling thread)
    def run(self) -> None:
        """Serve until EOF or shutdown."""
        threading.Thread(target=self._read_loop, name="bokehkit-requests", daemon=True).start()
        while True:
            request = self._jobs.get()
            if request is None or self.closed.is_set():
                break
            job_id = str(request.get("id"))
            with self._state_lock:
                self._current_id = job_id
                self._current_cancel = threading.Event()
                if job_id in self._cancelled_ids:
                    self._cancelled_ids.discard(job_id)
                    self._current_cancel.set()
            try:
                if request["type"] == "dialog":
                    self._run_dialog(request, job_id)
                else:
                    self._run_render(request, job_id)
            finally:
                with self._state_lock:
                    self._current_id = None
        if self.shutdown_requested:
            self.emit({"type": "bye"})

    def _progress_callback(self, job_id: str):
        last = [0.0, ""]

        def callback(fraction: float, text: str) -> None:
            now = time.monotonic()
            stage = text.split(",")[0]
            if now - last[0] < PROGRESS_INTERVAL_S and stage == last[1] and fraction < 1.0:
                return
            last[0], last[1] = now, stage
            self.emit(
                {"type": "progress", "id": job_id, "fraction": round(fraction, 4), "text": text}
            )

        return callback

    def _run_render(self, request: dict, job_id: str) -> None:
        cancel = self._current_cancel
        try:
            with tempfile.TemporaryDirectory(prefix="bokehkit-engine-") as scratch:
                progress = Progress(self._progress_callback(job_id), cancel)
                progress.update(0.0, "reading the image")
                inputs = load_inputs(request, Path(scratch))
                params = dict(request.get("params") or {})
                if request.get("preview"):
                    inputs = shrink(inputs, int(request.get("preview_max_px") or PREVIEW_MAX_PX))
                    params["sr_factor"] = 1  # a preview shows the look, not the resolution
                encoded, alpha, report = render_inputs(inputs, params, progress.span(0.02, 0.98))
                progress.check_cancelled()
                result = rb.image_to_buffer(encoded, alpha, inputs.like)
                event = {"type": "result", "id": job_id, "report": report.lines()}
                if request.get("inline"):
                    event["data"] = base64.b64encode(rb.to_bytes(result)).decode("ascii")
                else:
                    name = "preview.bkraw" if request.get("preview") else "result.bkraw"
                    rb.write_buffer(Path(request["job_dir"]) / name, result)
                    event["file"] = name
            self.emit(event)
        except Cancelled:
            self.emit({"type": "cancelled", "id": job_id})
        except BokehkitError as exc:
            self.emit({"type": "error", "id": job_id, "message": str(exc)})
        except MemoryError:
            message = "out of memory; try a smaller image or a lower super-resolution factor"
            self.emit({"type": "error", "id": job_id, "message": message})
        except Exception as exc:  # noqa: BLE001 - the engine keeps serving
            log.exception("render %s failed", job_id)
            self.emit({"type": "error", "id": job_id, "message": one_line(exc)})

    def _run_dialog(self, request: dict, job_id: str) -> None:
        try:
            params = run_dialog_request(request, self._current_cancel, engines_status())
        except ImportError as exc:
            message = f"the dialog needs PyQt6 in the engine ({exc}); reinstall the engine"
            self.emit({"type": "error", "id": job_id, "message": message})
            return
        except BokehkitError as exc:
            self.emit({"type": "error", "id": job_id, "message": str(exc)})
            return
        except Exception as exc:  # noqa: BLE001
            log.exception("dialog %s failed", job_id)
            self.emit({"type": "error", "id": job_id, "message": one_line(exc)})
            return
        if params is None:
            self.emit({"type": "dialog_cancelled", "id": job_id})
        else:
            self.emit({"type": "dialog_result", "id": job_id, "params": params})


# ------------------------------------------------------------- the dialog, for GIMP

#: Size of the image the dialog shows and renders its live previews at.
DIALOG_PREVIEW_PX = 640


def _plugin_ui():
    """The shared Qt dialog (plugin/bokehkit_plugin/ui), importable from the engine."""
    try:
        from bokehkit_plugin.ui import dialog
    except ImportError:
        # A development checkout: the plug-in package sits beside core/.
        plugin_dir = Path(__file__).resolve().parents[2] / "plugin"
        if (plugin_dir / "bokehkit_plugin").is_dir() and str(plugin_dir) not in sys.path:
            sys.path.append(str(plugin_dir))
        from bokehkit_plugin.ui import dialog
    return dialog


def dialog_inputs(request: dict, scratch: Path) -> dict:
    """What the dialog needs from a request: the picture to show, a preview renderer (runs
    on the panel's worker thread), whether a mask came, and the full image size."""
    from bokehkit_plugin.ui.preview import PreviewImage

    def picture(linear: np.ndarray, alpha: np.ndarray | None) -> PreviewImage:
        rgba = rb.linear_to_rgba8(linear, alpha)
        return PreviewImage(rgba.shape[1], rgba.shape[0], rgba.tobytes())

    inputs = shrink(load_inputs(request, scratch), DIALOG_PREVIEW_PX)

    def preview_fn(params: dict, cancel: threading.Event, on_progress) -> PreviewImage:
        params = dict(params, sr_factor=1)  # the look, at screen size
        encoded, alpha, _ = render_inputs(inputs, params, Progress(on_progress, cancel))
        return picture(rb.to_linear(encoded, inputs.like.transfer), alpha)

    return {
        "source": picture(inputs.image.linear_rgb, inputs.image.alpha),
        "preview_fn": preview_fn,
        "has_mask": inputs.mask is not None,
        "image_size": inputs.like.size,
    }


def run_dialog_request(request: dict, cancel_event: threading.Event, engines: dict) -> dict | None:
    """Show the parameter dialog (GIMP's Python has no Qt, so the engine shows it) with live
    previews rendered in this process; the chosen params, or None when cancelled."""
    dialog = _plugin_ui()
    with tempfile.TemporaryDirectory(prefix="bokehkit-engine-") as scratch:
        return dialog.run_dialog(
            params=request.get("params") or {},
            engines=engines,
            cancel_event=cancel_event,
            **dialog_inputs(request, Path(scratch)),
        )


# ------------------------------------------------------------------- process lifetime


def die_with_parent() -> None:
    """Exit when the parent process dies: PR_SET_PDEATHSIG on Linux, and a polling thread
    everywhere (a GIMP cancel kills the plug-in, which must not leave the engine behind)."""
    parent = os.getppid()
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            pr_set_pdeathsig = 1
            libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent:  # died before prctl took effect
        os._exit(0)

    def watch() -> None:
        while True:
            time.sleep(PARENT_POLL_S)
            if os.getppid() != parent:
                os._exit(0)  # the render thread may be deep in numpy: no clean unwind

    threading.Thread(target=watch, name="bokehkit-parent-watch", daemon=True).start()


def serve_stdio() -> int:
    """Serve one client on stdin/stdout until EOF, shutdown or the parent's death."""
    die_with_parent()
    # The protocol owns the real stdout; anything else printed (by us or a library, even
    # from C) goes to stderr, the engine's log, instead of corrupting the event stream.
    events = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    sys.stdout = sys.stderr
    Session(sys.stdin.buffer, events).run()
    events.close()
    return 0


def read_token(path: str | os.PathLike) -> str:
    """The shared secret a TCP client must send in its hello."""
    try:
        token = Path(path).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise BokehkitError(f"{path}: cannot read token file ({exc.strerror or exc})") from None
    if len(token) < 8:
        raise BokehkitError(f"{path}: the token must be at least 8 characters")
    return token


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit():
        raise BokehkitError(f"--tcp wants HOST:PORT, not {text!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


def serve_tcp(host: str, port: int, token: str, hello_timeout_s: float = 10.0) -> int:
    """Serve clients one at a time; each must open with {"type":"hello","token":…}."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as server:
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind((host, port))
        server.listen(1)
        bound = server.getsockname()
        sys.stderr.write(f"bokehkit engine listening on {bound[0]}:{bound[1]}\n")
        sys.stderr.flush()
        while True:
            conn, peer = server.accept()
            reader, writer = conn.makefile("rb"), conn.makefile("wb")
            try:
                if not _hello_ok(conn, reader, writer, token, hello_timeout_s):
                    log.warning("rejected a client from %s: wrong or missing token", peer[0])
                    continue
                session = Session(reader, writer)
                session.run()
                if session.shutdown_requested:
                    return 0
            finally:
                # The socket only closes once its file objects are closed too.
                for stream in (writer, reader):
                    try:
                        stream.close()
                    except OSError:
                        pass
                conn.close()


def _hello_ok(conn, reader, writer, token: str, timeout_s: float) -> bool:
    conn.settimeout(timeout_s)
    try:
        hello = json.loads(reader.readline() or b"null")
    except (OSError, ValueError):
        hello = None
    conn.settimeout(None)
    given = hello.get("token") if isinstance(hello, dict) else None
    if (
        isinstance(hello, dict)
        and hello.get("type") == "hello"
        and isinstance(given, str)
        and hmac.compare_digest(given.encode(), token.encode())
    ):
        return True
    try:
        writer.write(b'{"type": "error", "id": null, "message": "wrong token"}\n')
        writer.flush()
        # Close gracefully: closing with the client's later lines still unread would send
        # a reset that can destroy the error line before the client reads it.
        conn.shutdown(socket.SHUT_WR)
        conn.settimeout(1.0)
        while conn.recv(65536):  # drain until the client closes too (or a second passes)
            pass
    except OSError:
        pass
    return False

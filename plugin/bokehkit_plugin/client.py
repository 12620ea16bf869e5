"""EngineClient: starts `bokehkit serve --stdio` as a child and runs jobs through it.

Everything a host needs is blocking and thread-agnostic: `render()` returns the result or
raises `Cancelled`, `EngineError` or `EngineBusy`, and the document is touched only by the
caller, after a result was read completely (docs/protocol.md).
"""

from __future__ import annotations

import collections
import itertools
import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Callable  # noqa: UP035 - subscripted at run time on Python 3.8 hosts

from . import rawbuffer
from .config import engine_command
from .jobs import remove_job_folder
from .rawbuffer import RawImage

#: Seconds the engine has to confirm a cancel before it is killed.
CANCEL_GRACE_S = 2.0
#: Seconds a fresh engine may take to answer a ping (imports numpy, scipy).
START_TIMEOUT_S = 60.0
#: The engine reads EOF on this inherited pipe when the host process dies (see start()).
PARENT_FD_ENV = "BOKEHKIT_PARENT_FD"
# The host's interpreter, Qt and GObject paths must not leak into the engine's Python.
SCRUBBED_ENV = (
    "PYTHONPATH",
    "PYTHONHOME",
    "PYTHONSTARTUP",
    "PYTHONEXECUTABLE",
    "PYTHONUSERBASE",
    "LD_LIBRARY_PATH",
    "LD_PRELOAD",
    "DYLD_LIBRARY_PATH",
    "DYLD_FALLBACK_LIBRARY_PATH",
    "GI_TYPELIB_PATH",
    "QT_PLUGIN_PATH",
    "QT_QPA_PLATFORM_PLUGIN_PATH",
    "QML2_IMPORT_PATH",
)
_EOF = object()

ProgressCallback = Callable[[float, str], None]


class EngineError(RuntimeError):
    """The engine failed or could not run the job; the message is meant for the user."""


class EngineBusy(EngineError):
    """A job is already running on this engine."""


class Cancelled(Exception):
    """The job was cancelled; nothing was produced."""


class _NotCached(EngineError):
    """The engine no longer keeps the preview inputs a request named."""


class _Either:
    """Set when either of two events is (what `_wait` polls as a cancel event)."""

    def __init__(self, a: threading.Event | None, b: threading.Event) -> None:
        self._a, self._b = a, b

    def is_set(self) -> bool:
        return self._b.is_set() or (self._a is not None and self._a.is_set())


def _either(a: threading.Event | None, b: threading.Event) -> _Either:
    return _Either(a, b)


@dataclass
class RenderResult:
    image: RawImage
    report: list[str] = field(default_factory=list)


@dataclass
class DialogChoice:
    """What the user chose in the engine's dialog: the params, a fix the host carries out
    afterwards ("paint_depth", "paint_blur"), and a photo whose phone depth to render with."""

    params: dict
    action: str | None = None
    depth_photo: str | None = None


def survive_broken_pipes() -> None:
    """Make a write to an engine that has died an error we report, not the end of the
    editor. Krita's embedded Python leaves SIGPIPE at its default, which kills the whole
    process, unsaved work and all, on the first write to a closed pipe or socket. Only the
    main thread may change it; from another thread (and on Windows) this does nothing."""
    if threading.current_thread() is not threading.main_thread():
        return
    try:
        if signal.getsignal(signal.SIGPIPE) == signal.SIG_DFL:
            signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    except (AttributeError, ValueError, OSError):
        pass


def clean_environment(extra: dict | None = None) -> dict:
    """The host's environment minus what would break another Python, plus `extra`."""
    env = {k: v for k, v in os.environ.items() if k not in SCRUBBED_ENV}
    env.update(extra or {})
    return env


def engine_label(pong: dict, remote: bool) -> str:
    """Which engine renders, as the panels say it: "remote: CUDA, MagicBokeh available"."""
    devices = [str(d) for d in pong.get("devices") or ["CPU"]]
    text = f"{'remote' if remote else 'local'}: {', '.join(devices)}"
    if ((pong.get("engines") or {}).get("magicbokeh") or {}).get("available"):
        text += ", MagicBokeh available"
    return text


def engines_for_panel(pong: dict, client: EngineClient) -> dict:
    """The pong's "engines", plus "where": {"label": engine_label(...)} for the panel."""
    engines = dict(pong.get("engines") or {})
    engines["where"] = {"label": engine_label(pong, client.remote)}
    return engines


class EngineClient:
    """One engine child process; one job at a time."""

    remote = False  # RemoteEngineClient: an engine on another machine

    def __init__(
        self,
        command: list[str] | None = None,
        env: dict | None = None,
        job_base: str | None = None,
    ) -> None:
        """`command` starts the engine (default: from `config.engine_command()`); `env` is
        added to the cleaned environment; `job_base` is where job folders go (default: the
        temp dir)."""
        survive_broken_pipes()
        self._command = command
        self._extra_env = env
        self._job_base = job_base
        self._proc: subprocess.Popen | None = None
        self._events: queue.Queue = queue.Queue()
        self._stderr_tail: collections.deque = collections.deque(maxlen=20)
        self._busy = threading.Lock()
        self._write_lock = threading.Lock()
        self._ids = itertools.count(1)
        self._life_pipe: int | None = None  # write end; the engine holds the read end
        # The newest preview supersedes one still running or waiting (see render()).
        self._preview_lock = threading.Lock()
        self._preview_generation = 0
        self._preview_cancel: threading.Event | None = None
        # What the engine keeps of the last preview's inputs: (which buffers, by identity;
        # the name it keeps them under; the engine's pid; the buffers, so that their ids
        # stay theirs). A slider move then sends only the new parameters.
        self._preview_kept: tuple | None = None

    # ------------------------------------------------------------------ process
    def start(self) -> None:
        """Start the engine if it is not running. Any thread may call this: the engine
        lives as long as this process (a pipe only this process holds the write end of),
        not as long as the calling thread."""
        if self.running:
            return
        command = list(self._command or engine_command()) + ["serve", "--stdio"]
        if self._job_base:
            command += ["--job-base", self._job_base]
        kwargs: dict = {}
        extra_env = dict(self._extra_env or {})
        life_read = None
        if os.name == "nt":
            # Own process group (no console Ctrl-C), and no console window from pythonw hosts.
            kwargs["creationflags"] = subprocess.CREATE_NEW_PROCESS_GROUP | 0x08000000
        else:
            kwargs["start_new_session"] = True  # own process group: killed as a whole
            self._close_life_pipe()
            life_read, self._life_pipe = os.pipe()  # both close-on-exec for other children
            kwargs["pass_fds"] = (life_read,)
            extra_env[PARENT_FD_ENV] = str(life_read)
        try:
            self._proc = subprocess.Popen(
                command,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=clean_environment(extra_env),
                close_fds=True,
                **kwargs,
            )
        except OSError as exc:
            self._close_life_pipe()
            raise EngineError(
                f"cannot start the bokehkit engine ({command[0]}: {exc.strerror or exc}); "
                "run `bokehkit install-plugins` again or check BOKEHKIT_ENGINE"
            ) from None
        finally:
            if life_read is not None:
                os.close(life_read)
        self._events = queue.Queue()
        self._stderr_tail.clear()
        proc = self._proc
        threading.Thread(target=self._read_events, args=(proc,), daemon=True).start()
        threading.Thread(target=self._read_log, args=(proc,), daemon=True).start()

    def _close_life_pipe(self) -> None:
        if self._life_pipe is not None:
            try:
                os.close(self._life_pipe)
            except OSError:
                pass
            self._life_pipe = None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc else None

    def _read_events(self, proc: subprocess.Popen) -> None:
        for raw in proc.stdout:
            try:
                event = json.loads(raw)
                if not isinstance(event, dict) or "type" not in event:
                    raise ValueError
            except ValueError:
                text = raw.decode("utf-8", "replace").strip()[:120]
                self._events.put(("garbage", text))
                continue
            self._events.put(("event", event))
        self._events.put(("eof", None))

    def _read_log(self, proc: subprocess.Popen) -> None:
        for raw in proc.stderr:
            line = raw.decode("utf-8", "replace").rstrip()
            if line:
                self._stderr_tail.append(line)

    def _send(self, request: dict) -> None:
        proc = self._proc
        if proc is None or proc.stdin is None:
            raise EngineError("the bokehkit engine is not running")
        data = (json.dumps(request) + "\n").encode("utf-8")
        try:
            with self._write_lock:
                proc.stdin.write(data)
                proc.stdin.flush()
        except (OSError, ValueError):
            raise self._died() from None

    def _died(self) -> EngineError:
        """The error for an engine that went away, with the last line of its log."""
        proc = self._proc
        code = None
        if proc is not None:
            try:
                code = proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self.kill()
        time.sleep(0.05)  # let the log reader catch the last lines
        last = self._stderr_tail[-1] if self._stderr_tail else ""
        detail = f" (exit code {code})" if code is not None else ""
        hint = f": {last}" if last else ""
        return EngineError(f"the bokehkit engine stopped unexpectedly{detail}{hint}")

    def kill(self) -> None:
        """Kill the engine and its process group now."""
        proc = self._proc
        if proc is None or proc.poll() is not None:
            return
        try:
            if os.name == "nt":
                proc.kill()
            else:
                os.killpg(proc.pid, signal.SIGKILL)
        except OSError:
            pass
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
        self._close_life_pipe()

    def close(self) -> None:
        """Ask the engine to exit (it answers `bye`); kill it if it does not within 2 s."""
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            try:
                self._send({"type": "shutdown"})
                proc.stdin.close()
                proc.wait(timeout=CANCEL_GRACE_S)
            except (EngineError, OSError, subprocess.TimeoutExpired):
                self.kill()
        for stream in (proc.stdout, proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        self._close_life_pipe()
        self._proc = None

    def __enter__(self) -> EngineClient:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------- events
    def _next_event(self, timeout: float) -> dict | None:
        """The next event, None on timeout; EngineError on death or garbage."""
        try:
            kind, payload = self._events.get(timeout=timeout)
        except queue.Empty:
            return None
        if kind == "event":
            return payload
        if kind == "garbage":
            self.kill()
            raise EngineError(
                "the bokehkit engine answered something that is not the plug-in protocol "
                f"({payload!r}); it was stopped. Is BOKEHKIT_ENGINE the right command?"
            )
        raise self._died()

    def _claim(self, wait_s: float = 0.0) -> None:
        if wait_s > 0:
            claimed = self._busy.acquire(timeout=wait_s)
        else:
            claimed = self._busy.acquire(blocking=False)
        if not claimed:
            raise EngineBusy("the bokehkit engine is busy with another job; wait or cancel it")

    # ------------------------------------------------------------------- requests
    def ping(self, timeout: float = START_TIMEOUT_S) -> dict:
        """The engine's version and which renderers it can run (starts it if needed)."""
        self._claim()
        try:
            self.start()
            self._send({"type": "ping"})
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                event = self._next_event(0.1)
                if event is not None and event.get("type") == "pong":
                    return event
            self.kill()
            raise EngineError(f"the bokehkit engine did not answer within {timeout:g} s")
        finally:
            self._busy.release()

    def render(
        self,
        image: RawImage,
        params: dict,
        mask: RawImage | None = None,
        depth: RawImage | None = None,
        on_progress: ProgressCallback | None = None,
        cancel_event: threading.Event | None = None,
        preview: bool = False,
        preview_max_px: int = 512,
        blur: RawImage | None = None,
        depth_photo: str | None = None,
    ) -> RenderResult:
        """Render on the engine and return the result; blocks until it is done.

        Parameters
        ----------
        image : RawImage
            The layer's pixels, as the host hands them over (docs/protocol.md).
        params : dict
            Render parameters by the schema's names (schema.py; the engine validates them).
        mask, depth, blur : RawImage, optional
            The focus mask (white = sharp), a painted Depth layer (white = near), the Blur
            refine brush (white = more blur); channels "Y".
        on_progress : callable, optional
            ``on_progress(fraction, text)`` as the engine reports progress.
        cancel_event : threading.Event, optional
            Set it to cancel; the engine is killed if it does not confirm in 2 s.
        preview : bool
            A quick render whose longest side is `preview_max_px`, without SR; a newer
            preview supersedes a running one.
        depth_photo : str, optional
            A phone photo whose recorded depth the render uses.

        Returns
        -------
        RenderResult
            The result in the same format as `image` (× the SR factor) and the report.

        Raises
        ------
        Cancelled, EngineError, EngineBusy
        """
        request = {
            "type": "render",
            "params": params,
            "preview": preview,
            "preview_max_px": preview_max_px,
        }
        superseded = None
        if preview:
            superseded = self._supersede_previews()
            cancel_event = _either(cancel_event, superseded)
        buffers = (image, mask, depth, blur)
        identity = (*(None if b is None else id(b.data) for b in buffers), depth_photo)
        identity += (preview_max_px,)
        try:
            for _attempt in range(2):
                kept = self._preview_kept if preview else None
                reuse = kept is not None and kept[0] == identity and kept[2] == self.pid
                sent = (None,) * 4 + (None,) if reuse else (*buffers, depth_photo)
                request.pop("cached", None)
                request.pop("cache_as", None)
                if reuse:
                    request["cached"] = kept[1]
                elif preview:
                    request["cache_as"] = f"P{next(self._ids)}"
                try:
                    job = self._job(request, sent[0], sent[1], sent[2], superseded, *sent[3:])
                    with job as (job_id, folder):
                        event = self._wait(job_id, ("result",), on_progress, cancel_event)
                        name = os.path.basename(str(event.get("file", "")))
                        result = self._read_result(job_id, folder, name)
                except _NotCached:
                    self._preview_kept = None  # the engine restarted or forgot: send them
                    continue
                if preview and not reuse:
                    self._preview_kept = (identity, request["cache_as"], self.pid, buffers)
                break
        finally:
            if superseded is not None:
                with self._preview_lock:
                    if self._preview_cancel is superseded:
                        self._preview_cancel = None
        return RenderResult(result, list(event.get("report") or []))

    def _supersede_previews(self) -> threading.Event:
        """The newest preview wins: the one in flight (or waiting for its turn) is
        cancelled, and this one waits for the engine instead of finding it busy. Returns
        the event that a newer preview will set to supersede this one."""
        with self._preview_lock:
            if self._preview_cancel is not None:
                self._preview_cancel.set()
            mine = self._preview_cancel = threading.Event()
        return mine

    def dialog(
        self,
        image: RawImage,
        params: dict,
        mask: RawImage | None = None,
        depth: RawImage | None = None,
        cancel_event: threading.Event | None = None,
        blur: RawImage | None = None,
        context: dict | None = None,
    ) -> DialogChoice | None:
        """Show the parameter dialog in the engine (for hosts without Qt, i.e. GIMP); what
        the user chose, or None when they cancelled it. `context` tells the dialog about the
        host (ui/dialog.py CONTEXT_KEYS: where the mask comes from, the host's colours...)."""
        request = {"type": "dialog", "params": params, "context": context or {}}
        with self._job(request, image, mask, depth, blur) as (job_id, _):
            done = ("dialog_result", "dialog_cancelled")
            event = self._wait(job_id, done, None, cancel_event)
        if event["type"] != "dialog_result":
            return None
        return DialogChoice(
            dict(event.get("params") or {}), event.get("action"), event.get("depth_photo")
        )

    def install_model(
        self,
        model_id: str,
        on_progress: ProgressCallback | None = None,
        cancel_event: threading.Event | None = None,
    ) -> None:
        """Have the engine download a model a fix needs (a depth model, ISNet). Blocks;
        raises Cancelled, EngineError (e.g. offline: one line saying so), EngineBusy."""
        request = {"type": "install", "model": model_id}
        with self._job(request, None, None, None) as (job_id, _):
            self._wait(job_id, ("installed",), on_progress, cancel_event)

    # ---------------------------------------------------------------- job plumbing
    @contextmanager
    def _job(self, request: dict, image, mask, depth, superseded=None, blur=None, depth_photo=None):
        """Claim the engine, have it make a job folder, write the buffers (and a copy of
        `depth_photo`) into it, send the request; the folder is removed and the engine freed
        whatever happens. A preview (`superseded` given) waits for a superseded one to let
        go of the engine."""
        if superseded is not None:
            self._claim(wait_s=2 * CANCEL_GRACE_S + 5.0)
            if superseded.is_set():  # a newer preview came while this one waited
                self._busy.release()
                raise Cancelled("superseded by a newer preview")
        else:
            self._claim()
        folder = None
        try:
            self.start()
            job_id = f"J{next(self._ids)}"
            folder = self._open_job_folder(job_id)
            request.update(id=job_id, job_dir=folder)
            buffers = (("image", image), ("mask", mask), ("depth", depth), ("blur", blur))
            for key, buf in buffers:
                request[key] = None
                if buf is not None:
                    self._put_buffer(job_id, folder, f"{key}.bkraw", buf)
                    request[key] = f"{key}.bkraw"
            if depth_photo:
                name = os.path.basename(depth_photo)
                self._put_file(job_id, folder, name, depth_photo)
                request["depth_photo"] = name
            self._send(request)
            yield job_id, folder
        finally:
            self._end_job(folder)

    def _end_job(self, folder: str | None) -> None:
        """The engine closes the job folder (if one was made) and is free again."""
        if folder is not None:
            try:
                self._send({"type": "close_job", "job_dir": folder})
            except EngineError:
                pass
            self._remove_folder(folder)
        self._busy.release()

    @contextmanager
    def raw_job(self):
        """Claim the engine and a job folder for requests the caller sends itself (a remote
        `bokehkit render` uploads files and sends `render_file`); yields (job id, folder)."""
        self._claim()
        folder = None
        try:
            self.start()
            job_id = f"J{next(self._ids)}"
            folder = self._open_job_folder(job_id)
            yield job_id, folder
        finally:
            self._end_job(folder)

    # Where a job's files go: the shared job folder here; RemoteEngineClient (remote.py)
    # sends them through the connection instead.
    def _put_buffer(self, job_id: str, folder: str, name: str, image: RawImage) -> None:
        rawbuffer.write(os.path.join(folder, name), image)

    def _put_file(self, job_id: str, folder: str, name: str, path: str) -> None:
        try:
            shutil.copyfile(path, os.path.join(folder, name))
        except OSError as exc:
            raise EngineError(f"cannot read the photo {path} ({exc.strerror or exc})") from None

    def _read_result(self, job_id: str, folder: str, name: str) -> RawImage:
        try:
            return rawbuffer.read(os.path.join(folder, name))
        except (OSError, rawbuffer.BufferError) as exc:
            raise EngineError(f"cannot read the engine's result: {exc}") from None

    def _remove_folder(self, folder: str) -> None:
        remove_job_folder(folder)

    def _open_job_folder(self, job_id: str) -> str:
        """The engine makes each job's folder (it reads files only from folders it made)."""
        self._send({"type": "open_job", "id": job_id})
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            event = self._next_event(0.1)
            if event is None or event.get("id") != job_id:
                continue
            if event.get("type") == "job_opened" and isinstance(event.get("job_dir"), str):
                return event["job_dir"]
            if event.get("type") == "error":
                raise EngineError(str(event.get("message") or "the engine made no job folder"))
        self.kill()
        raise EngineError(f"the bokehkit engine did not answer within {START_TIMEOUT_S:g} s")

    def _wait(
        self,
        job_id: str,
        done: tuple,
        on_progress: ProgressCallback | None,
        cancel_event: threading.Event | None,
    ) -> dict:
        cancel_deadline = None
        while True:
            if cancel_event is not None and cancel_event.is_set() and cancel_deadline is None:
                cancel_deadline = time.monotonic() + CANCEL_GRACE_S
                try:
                    self._send({"type": "cancel", "id": job_id})
                except EngineError:
                    raise Cancelled("cancelled") from None
            if cancel_deadline is not None and time.monotonic() > cancel_deadline:
                self.kill()  # it ignored the cancel: the user must not wait for it
                raise Cancelled("cancelled (the engine did not stop in time and was stopped)")
            try:
                event = self._next_event(0.05)
            except EngineError:
                if cancel_deadline is not None:
                    raise Cancelled("cancelled") from None
                raise
            if event is None or event.get("id") != job_id:
                continue  # a late event of an earlier job, or a pong
            kind = event.get("type")
            if kind == "progress" and on_progress is not None and cancel_deadline is None:
                on_progress(float(event.get("fraction", 0.0)), str(event.get("text", "")))
            elif kind == "cancelled":
                raise Cancelled("cancelled")
            elif kind == "error":
                message = str(event.get("message") or "the engine reported an error")
                raise (_NotCached if event.get("code") == "not_cached" else EngineError)(message)
            elif kind in done:
                if cancel_deadline is not None:
                    raise Cancelled("cancelled")  # a result that crossed the cancel: drop it
                return event

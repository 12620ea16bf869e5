"""`bokehkit serve` against hostile and careless clients (docs/security.md): no line can end
the process or its reader, requests reach only the job folders the engine made, slow clients
hold nothing, cancels are answered at once, the newest preview wins, and the engine lives
exactly as long as the host process."""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from bokehkit.serve import server
from bokehkit_plugin import rawbuffer
from bokehkit_plugin.client import Cancelled, EngineClient, EngineError

REPO = Path(__file__).resolve().parents[2]

REAL_ENGINE = [sys.executable, "-m", "bokehkit"]
ENGINE_ENV = {"PYTHONPATH": str(REPO / "core")}
WAIT_S = 30.0  # liveness: an answer that does not come within this is a failure


def small_image(w: int = 8, h: int = 6) -> rawbuffer.RawImage:
    data = bytes(range(256)) * (w * h * 4 // 256 + 1)
    return rawbuffer.RawImage(w, h, data[: w * h * 4], "RGBA", "BGRA", "uint8", "srgb")


class Wire:
    """A real `bokehkit serve --stdio`, spoken to line by line."""

    def __init__(self, tmp_path: Path, env: dict | None = None, drop_env=()) -> None:
        base_env = {k: v for k, v in os.environ.items() if k not in drop_env}
        self.proc = subprocess.Popen(
            [*REAL_ENGINE, "serve", "--stdio", "--job-base", str(tmp_path)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            env={**base_env, **ENGINE_ENV, **(env or {})},
        )  # fmt: skip
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.proc.stdout:
            self.events.put(json.loads(line))
        self.events.put(None)

    def send(self, line: bytes | dict) -> None:
        if isinstance(line, dict):
            line = json.dumps(line).encode() + b"\n"
        self.proc.stdin.write(line)
        self.proc.stdin.flush()

    def next(self, kind: str | None = None) -> dict:
        """The next event (of `kind`, skipping others)."""
        deadline = time.monotonic() + WAIT_S
        while True:
            event = self.events.get(timeout=max(0.1, deadline - time.monotonic()))
            assert event is not None, "the engine closed its output"
            if kind is None or event["type"] == kind:
                return event

    def ping(self) -> dict:
        self.send({"type": "ping"})
        return self.next("pong")

    def close(self) -> int:
        self.proc.stdin.close()
        return self.proc.wait(timeout=WAIT_S)


@pytest.fixture
def wire(tmp_path):
    made = []

    def make(**kw) -> Wire:
        made.append(Wire(tmp_path / "jobs", **kw))
        return made[-1]

    (tmp_path / "jobs").mkdir()
    yield make
    for w in made:
        if w.proc.poll() is None:
            w.proc.kill()
        w.proc.wait()


# ---------------------------------------------------------------- items 1 and 2: lines


def test_a_line_nested_200000_deep_or_too_long_is_an_error_event(wire):
    engine = wire(env={"BOKEHKIT_MAX_REQUEST_MB": "1"})
    engine.send(b"[" * 200_000 + b"\n")
    assert engine.next() == {"type": "error", "id": None, "message": "request is not JSON"}
    engine.send(b'{"type": "ping", "pad": "' + b"x" * (3 << 20) + b'"}\n')  # 3 MB > 1 MB
    assert "longer than" in engine.next("error")["message"]
    engine.send(b"\xff\xfe not utf-8\n")
    assert engine.next("error")["message"] == "request is not UTF-8 text"
    engine.send(b'{"type": "nope", "id": "\\udc80"}\n')  # a lone surrogate in the id
    assert engine.next("error")["id"] == "\udc80"
    engine.send(b'{"type": "ping", "id": {"deep": [1, 2]}}\n')
    assert "request id" in engine.next("error")["message"]
    assert engine.ping()["type"] == "pong"  # the reader lives on
    assert engine.close() == 0  # and EOF still ends the engine


# ------------------------------------------------------------------ paths


def _open_job(engine: Wire, job_id: str = "J") -> Path:
    engine.send({"type": "open_job", "id": job_id})
    event = engine.next("job_opened")
    assert event["id"] == job_id
    return Path(event["job_dir"])


def _render(engine: Wire, **request) -> dict:
    engine.send({"type": "render", "id": "R", "params": {"focus_source": "point"}, **request})
    while True:
        event = engine.next()
        if event["type"] in ("result", "error", "cancelled") and event.get("id") == "R":
            return event


def test_requests_reach_only_the_job_folders_the_engine_made(wire, tmp_path):
    engine = wire()
    foreign = tmp_path / "photos"
    foreign.mkdir()
    rawbuffer.write(str(foreign / "image.bkraw"), small_image())
    (foreign / "result.bkraw").write_bytes(b"the user's own file")
    event = _render(engine, job_dir=str(foreign), image="image.bkraw")
    assert event["type"] == "error" and "job folder this engine made" in event["message"]
    assert (foreign / "result.bkraw").read_bytes() == b"the user's own file"

    folder = _open_job(engine)
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    rawbuffer.write(str(folder / "image.bkraw"), small_image())
    (folder / "zero.bkraw").symlink_to("/dev/zero")
    os.mkfifo(folder / "fifo.bkraw")
    messages = {}
    for name in ("/etc/passwd", "/etc/no-such-file", "../../etc/passwd", "missing.bkraw",
                 "zero.bkraw", "fifo.bkraw", "/dev/zero"):  # fmt: skip
        event = _render(engine, job_dir=str(folder), image="image.bkraw", mask=name)
        assert event["type"] == "error", name
        messages[name] = event["message"].replace(repr(name), "NAME")
    # The same words whether the file exists or not, is a link, a device or a FIFO.
    assert len(set(messages.values())) == 1, messages
    assert "not a buffer file in the job folder" in messages["/etc/passwd"]
    good = _render(engine, job_dir=str(folder), image="image.bkraw")
    assert good["type"] == "result" and (folder / good["file"]).is_file()
    assert sorted(p.name for p in foreign.iterdir()) == ["image.bkraw", "result.bkraw"]
    engine.send({"type": "close_job", "job_dir": str(folder)})
    assert engine.ping() and not folder.exists()


# ---------------------------------------------------------- slow and idle clients


@pytest.fixture
def tcp(tmp_path):
    """A factory: a TCP engine with these extra arguments; (port, process)."""
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    procs = []

    def start(*extra: str) -> tuple[int, subprocess.Popen]:
        proc = subprocess.Popen(
            [*REAL_ENGINE, "serve", "--tcp", "127.0.0.1:0", "--token-file", token, *extra],
            env={**os.environ, **ENGINE_ENV}, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.append(proc)
        line = proc.stderr.readline()
        assert "listening on" in line, line
        return int(line.rsplit(":", 1)[1]), proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


def _ping_over_tcp(port: int) -> dict:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as conn:
        conn.sendall(b'{"type": "hello", "token": "s3cret-token"}\n{"type": "ping"}\n')
        data = b""
        while b"\n" not in data:
            chunk = conn.recv(65536)
            assert chunk, "closed without an answer"
            data += chunk
    return json.loads(data.split(b"\n")[0])


def test_a_hello_nested_200000_deep_does_not_stop_the_tcp_server(tcp):
    port, proc = tcp()
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as conn:
        conn.sendall(b"[" * 200_000 + b"\n")
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    assert b"wrong token" in answer
    assert proc.poll() is None
    assert _ping_over_tcp(port)["type"] == "pong"


def test_slow_and_idle_clients_do_not_keep_others_waiting(tcp):
    port, proc = tcp("--hello-timeout", "2")
    idle = [socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) for _ in range(50)]
    trickler = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    sent = [0]
    stop = threading.Event()

    def trickle() -> None:  # one byte of a hello every 0.3 s: never a whole line
        try:
            for byte in b'{"type": "hello", "token": "' + b"x" * 200:
                if stop.wait(0.3):
                    return
                trickler.sendall(bytes([byte]))
                sent[0] += 1
        except OSError:
            pass

    thread = threading.Thread(target=trickle)
    thread.start()
    try:
        answers = []
        clients = [threading.Thread(target=lambda: answers.append(_ping_over_tcp(port)))
                   for _ in range(3)]  # fmt: skip
        for c in clients:
            c.start()
        for c in clients:
            c.join(WAIT_S)
        assert [a["type"] for a in answers] == ["pong"] * 3
        # The hello deadline is for the whole line: the trickler is cut off after ~2 s,
        # long before its 228 bytes (68 s) are sent.
        assert trickler.recv(65536).startswith(b'{"type": "error"')
        assert sent[0] < 100
        for conn in idle[:5]:  # idle ones too, once their 2 s are over
            assert b"wrong token" in conn.recv(65536)
    finally:
        stop.set()
        thread.join()
        for conn in [*idle, trickler]:
            conn.close()
    assert proc.poll() is None


def test_tcp_listen_errors_are_one_line(tmp_path):
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        for address, words in ((f"127.0.0.1:{port}", "the port is in use"),
                               ("127.0.0.1:99999", "not a port number")):  # fmt: skip
            done = subprocess.run(
                [*REAL_ENGINE, "serve", "--tcp", address, "--token-file", token],
                env={**os.environ, **ENGINE_ENV}, capture_output=True, text=True, timeout=60,
            )  # fmt: skip
            assert done.returncode == 2, done.stderr
            assert done.stderr.count("\n") == 1 and words in done.stderr, done.stderr
            assert "internal error" not in done.stderr


# -------------------------------------------------------------------- cancels


class LocalSession:
    """A Session in this process over pipes, so a test can slow one of its steps down."""

    def __init__(self) -> None:
        r1, w1 = os.pipe()
        r2, w2 = os.pipe()
        self.to_engine = os.fdopen(w1, "wb")
        self.from_engine = os.fdopen(r2, "rb")
        self.session = server.Session(os.fdopen(r1, "rb"), os.fdopen(w2, "wb"))
        self.thread = threading.Thread(target=self.session.run, daemon=True)
        self.thread.start()
        self.events: queue.Queue = queue.Queue()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        for line in self.from_engine:
            self.events.put(json.loads(line))

    def send(self, request: dict) -> None:
        self.to_engine.write(json.dumps(request).encode() + b"\n")
        self.to_engine.flush()

    def next(self, kind: str) -> dict:
        while True:
            event = self.events.get(timeout=WAIT_S)
            if event["type"] == kind:
                return event

    def close(self) -> None:
        self.to_engine.close()
        self.thread.join(WAIT_S)


def test_cancel_is_answered_while_the_preparation_still_runs(monkeypatch):
    release, finished = threading.Event(), threading.Event()
    real_load = server.load_inputs

    def slow_load(*args, **kwargs):  # stands for ISNet or reading a huge buffer
        release.wait(WAIT_S)
        finished.set()
        return real_load(*args, **kwargs)

    monkeypatch.setattr(server, "load_inputs", slow_load)
    local = LocalSession()
    local.send({"type": "open_job", "id": "J"})
    folder = local.next("job_opened")["job_dir"]
    rawbuffer.write(os.path.join(folder, "image.bkraw"), small_image())
    local.send({"type": "render", "id": "J", "job_dir": folder, "image": "image.bkraw"})
    local.send({"type": "cancel", "id": "J"})
    assert local.next("cancelled") == {"type": "cancelled", "id": "J"}
    assert not finished.is_set()  # answered while the slow step was still running
    release.set()
    local.send({"type": "ping"})
    local.next("pong")
    local.close()
    while not local.events.empty():  # nothing more about the cancelled job
        assert local.events.get()["type"] not in ("result", "error", "cancelled")


def test_cancels_of_unknown_ids_leave_nothing_behind():
    local = LocalSession()
    for i in range(5000):
        local.send({"type": "cancel", "id": f"gone-{i}"})
    local.send({"type": "ping"})
    local.next("pong")
    held = {
        name: len(value)
        for name, value in vars(local.session).items()
        if isinstance(value, (set, dict, list))
    }
    assert all(n < 100 for n in held.values()), held
    local.close()


# --------------------------------------------------------- the newest preview wins

SLOW_CANCEL_ENGINE = r"""
import json, os, sys, tempfile, threading, time
base = sys.argv[sys.argv.index("--job-base") + 1]
lock = threading.Lock()
current = {}

def emit(event):
    with lock:
        sys.stdout.write(json.dumps(event) + "\n"); sys.stdout.flush()

def render(req):
    for i in range(200):
        if current.get(req["id"]) == "cancel":
            time.sleep(0.5)  # still cancelling: a tile, ISNet...
            emit({"type": "cancelled", "id": req["id"]}); return
        emit({"type": "progress", "id": req["id"], "fraction": i / 200, "text": "tile"})
        time.sleep(0.05 if i else 0.3)
        if i == 3 and req["preview"] and current.get("newest") == req["id"]:
            break
    open(os.path.join(req["job_dir"], "preview.bkraw"), "wb").write(
        open(os.path.join(req["job_dir"], req["image"]), "rb").read())
    emit({"type": "result", "id": req["id"], "file": "preview.bkraw", "report": []})

for line in sys.stdin:
    req = json.loads(line)
    if req["type"] == "open_job":
        emit({"type": "job_opened", "id": req["id"],
              "job_dir": tempfile.mkdtemp(prefix="bokehkit-job-", dir=base)})
    elif req["type"] == "cancel":
        current[req["id"]] = "cancel"
    elif req["type"] == "render":
        current["newest"] = req["id"]
        threading.Thread(target=render, args=(req,), daemon=True).start()
"""


def test_the_newest_preview_wins_over_one_still_cancelling(tmp_path):
    script = tmp_path / "engine.py"
    script.write_text(SLOW_CANCEL_ENGINE)
    client = EngineClient([sys.executable, str(script)], job_base=str(tmp_path))
    outcome: dict = {}
    first_running = threading.Event()

    def preview(name: str, cancel: threading.Event, started=None) -> None:
        def progress(*_):
            if started is not None:
                started.set()

        try:
            client.render(small_image(), {}, preview=True, cancel_event=cancel,
                          on_progress=progress)  # fmt: skip
            outcome[name] = "result"
        except Cancelled:
            outcome[name] = "cancelled"
        except EngineError as exc:
            outcome[name] = f"{type(exc).__name__}: {exc}"

    cancel_a, cancel_b = threading.Event(), threading.Event()
    a = threading.Thread(target=preview, args=("a", cancel_a, first_running))
    a.start()
    assert first_running.wait(WAIT_S)
    cancel_a.set()  # what the panel's preview worker does, then it asks for the next one
    b = threading.Thread(target=preview, args=("b", cancel_b))
    b.start()
    a.join(WAIT_S)
    b.join(WAIT_S)
    client.kill()
    assert outcome == {"a": "cancelled", "b": "result"}
    assert [p.name for p in tmp_path.iterdir()] == ["engine.py"]


# ---------------------------------------------------------------- lifetime


def test_the_engine_outlives_the_thread_that_started_it_and_not_the_process(tmp_path):
    script = f"""
import sys, threading, time
from bokehkit_plugin.client import EngineClient
client = EngineClient({REAL_ENGINE!r}, {ENGINE_ENV!r}, {str(tmp_path)!r})
# Krita starts engines from worker threads that end after their job.
starter = threading.Thread(target=lambda: (client.start(), client.ping()))
starter.start(); starter.join()
time.sleep(2.0)
print(client.pid, client.running, client.ping()["type"], flush=True)
time.sleep(60)
"""
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    pid, running, pong = host.stdout.readline().split()
    try:
        assert (running, pong) == ("True", "pong")
        host.send_signal(signal.SIGKILL)
        host.wait()
        deadline = time.monotonic() + 10
        while _alive(int(pid)) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(int(pid)), "the engine outlived the host process"
    finally:
        if _alive(int(pid)):
            os.kill(int(pid), signal.SIGKILL)


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


# ------------------------------------------------------------------- the dialog


def test_a_dialog_without_a_display_is_an_error_not_an_abort(tmp_path):
    env = dict(ENGINE_ENV)
    saved = {k: os.environ.pop(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")
             if k in os.environ}  # fmt: skip
    try:
        with EngineClient(REAL_ENGINE, env, str(tmp_path)) as client:
            with pytest.raises(EngineError, match="no display"):
                client.dialog(small_image(), {})
            assert client.running and client.ping()["type"] == "pong"
    finally:
        os.environ.update(saved)
    assert list(tmp_path.iterdir()) == []


def test_engine_results_are_unchanged_through_job_folders(tmp_path):
    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 255, (20, 30, 4), dtype=np.uint8)
    image = rawbuffer.RawImage(30, 20, pixels.tobytes(), "RGBA", "BGRA", "uint8", "srgb")
    with EngineClient(REAL_ENGINE, ENGINE_ENV, str(tmp_path)) as client:
        out = client.render(image, {"focus_source": "point", "aperture": 22})
    assert (out.image.width, out.image.height) == (30, 20)
    assert list(tmp_path.iterdir()) == []


# ----------------------------------------------------------------- leftovers

KILLED_HOST = """
import sys
from bokehkit_plugin import rawbuffer
from bokehkit_plugin.client import EngineClient
w, h = 1600, 1200
image = rawbuffer.RawImage(w, h, bytes(range(256)) * (w * h * 4 // 256), "RGBA")
client = EngineClient({engine!r}, {env!r}, {jobs!r})
client.start()
print(client.pid, flush=True)
said = []
def progress(fraction, text):
    if not said:
        said.append(print("rendering", flush=True))
client.render(image, {{"focus_source": "point", "aperture": 1}}, on_progress=progress)
"""


def test_a_killed_host_leaves_no_job_or_scratch_folder(tmp_path):
    jobs, scratch = tmp_path / "jobs", tmp_path / "scratch"
    jobs.mkdir()
    scratch.mkdir()
    env = {**ENGINE_ENV, "TMPDIR": str(scratch)}
    script = KILLED_HOST.format(engine=REAL_ENGINE, env=env, jobs=str(jobs))
    host = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    engine_pid = int(host.stdout.readline())
    try:
        assert host.stdout.readline().strip() == "rendering"
        assert list(jobs.iterdir()) and list(scratch.iterdir())  # the job is under way
        host.kill()  # what GIMP's cancel does to the plug-in
        host.wait()
        deadline = time.monotonic() + 15
        while _alive(engine_pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not _alive(engine_pid)
        assert list(jobs.iterdir()) == [] and list(scratch.iterdir()) == []
    finally:
        if _alive(engine_pid):
            os.kill(engine_pid, signal.SIGKILL)


def test_folders_of_killed_engines_are_swept_at_start_up(tmp_path):
    jobs, scratch = tmp_path / "jobs", tmp_path / "scratch"
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale = [jobs / f"bokehkit-job-{dead.pid}-x1", scratch / f"bokehkit-engine-{dead.pid}-x2"]
    kept = [jobs / f"bokehkit-job-{os.getpid()}-x3", jobs / "holiday-photos"]
    for folder in stale + kept:
        folder.mkdir(parents=True)
        (folder / "image.bkraw").write_bytes(b"the user's pixels")
    env = {**ENGINE_ENV, "TMPDIR": str(scratch)}
    with EngineClient(REAL_ENGINE, env, str(jobs)) as client:
        assert client.ping()["type"] == "pong"
    assert not any(folder.exists() for folder in stale)
    assert all((folder / "image.bkraw").exists() for folder in kept)


# ---------------------------------------------------- an editor that keeps SIGPIPE deadly
# Krita's embedded Python leaves SIGPIPE at its default: a write to a dead engine killed
# Krita itself (exit 141 in the Krita 6.0 remote host test). These host stand-ins do the same.
DEADLY_SIGPIPE = "import signal; signal.signal(signal.SIGPIPE, signal.SIG_DFL)\n"


def _host(script: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", DEADLY_SIGPIPE + script],
                          capture_output=True, text=True, timeout=60)  # fmt: skip


def test_an_engine_that_died_is_an_error_not_the_end_of_the_editor():
    script = f"""
import time
from bokehkit_plugin.client import EngineClient, EngineError
client = EngineClient([{sys.executable!r}, "-c", "pass"])  # an engine that exits at once
client.start()
time.sleep(1.0)
try:
    client.ping()
except EngineError as exc:
    print("error:", exc)
"""
    host = _host(script)
    assert host.returncode == 0, f"the host died (exit {host.returncode}): {host.stderr}"
    assert host.stdout.startswith("error: "), host.stdout


def test_a_remote_engine_that_hung_up_is_an_error_not_the_end_of_the_editor(tmp_path):
    script = f"""
import socket, ssl, threading, time
from pathlib import Path
from bokehkit.serve import tls
from bokehkit_plugin.tlsstream import TlsStream
cert, key = tls.ensure_certificate(Path({str(tmp_path)!r}))
client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
client_context.check_hostname, client_context.verify_mode = False, ssl.CERT_NONE
left, right = socket.socketpair()
accept = threading.Thread(target=lambda: TlsStream.server(right, tls.server_context(cert, key)))
accept.start()
stream = TlsStream.client(left, client_context)
accept.join()
right.close()
def write():  # not the main thread: survive_broken_pipes cannot help here
    try:
        for _ in range(100):
            stream.sendall(b"x" * 65536)
    except OSError as exc:
        print("error:", type(exc).__name__)
worker = threading.Thread(target=write)
worker.start()
worker.join()
"""
    host = _host(script)
    assert host.returncode == 0, f"the host died (exit {host.returncode}): {host.stderr}"
    assert host.stdout.startswith("error: "), host.stdout

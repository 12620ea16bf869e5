"""The remote engine (issue 13): `serve --tcp --tls`, a pinned certificate, the token, files
through the connection, `render --remote`, and the plug-ins' client against an engine in
another process that shares no folder with it."""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import socket
import ssl
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageCms

from bokehkit.serve import server, tls
from bokehkit.serve.tcp import FairTurns, TcpServer
from bokehkit_plugin import rawbuffer, remote
from bokehkit_plugin.client import Cancelled, EngineClient

REPO = Path(__file__).resolve().parents[2]

ENGINE = [sys.executable, "-m", "bokehkit"]
TOKEN = "s3cret-remote-token"
FAST = ["--depth-model", "none", "--no-auto-subject"]  # no model: quick and the same anywhere
WAIT_S = 30.0


def _env(tls_dir: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(REPO / "core"), "BOKEHKIT_TLS_DIR": str(tls_dir)}


@pytest.fixture(scope="module")
def engine(tmp_path_factory):
    """A TLS engine in another process, with its own temp folder (nothing shared)."""
    root = tmp_path_factory.mktemp("remote")
    (root / "token").write_text(TOKEN + "\n")
    (root / "engine-tmp").mkdir()
    env = {**_env(root / "tls"), "TMPDIR": str(root / "engine-tmp")}
    env["BOKEHKIT_MODELS"] = str(root / "models")
    proc = subprocess.Popen(
        [*ENGINE, "serve", "--tcp", "127.0.0.1:0", "--tls", "--token-file", root / "token"],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = [proc.stderr.readline() for _ in range(3)]
    assert "listening on" in lines[2], lines
    fingerprint = lines[0].split()[-1]
    port = int(lines[2].rsplit(":", 1)[1])
    yield {"address": f"127.0.0.1:{port}", "fingerprint": fingerprint, "root": root}
    proc.kill()
    proc.wait()


def _photo(path: Path, w: int = 96, h: int = 64) -> Path:
    """A JPEG with an ICC profile and EXIF, which a render must carry over."""
    rng = np.random.default_rng(1)
    pixels = (rng.random((h, w, 3)) * 255).astype(np.uint8)
    exif = Image.Exif()
    exif[0x010F] = "bokehkit-test-camera"
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.fromarray(pixels).save(path, quality=92, icc_profile=icc, exif=exif.tobytes())
    depth = np.tile(np.linspace(0, 255, w, dtype=np.uint8), (h, 1))
    Image.fromarray(depth).save(path.with_name(path.stem + ".depth.png"))
    return path


def _cli(*args, env=None) -> subprocess.CompletedProcess:
    return subprocess.run([*ENGINE, *map(str, args)], env=env or _env(Path("/nonexistent")),
                          capture_output=True, text=True, timeout=120)  # fmt: skip


def test_the_key_is_private_and_the_fingerprint_is_the_certificates(tmp_path):
    cert, key = tls.ensure_certificate(tmp_path)
    assert key.stat().st_mode & 0o777 == 0o600
    der = ssl.PEM_cert_to_DER_cert(cert.read_text())
    assert tls.certificate_fingerprint(cert) == "SHA256:" + hashlib.sha256(der).hexdigest()
    assert tls.ensure_certificate(tmp_path) == (cert, key)  # made once, then kept


def test_render_remote_writes_the_file_a_local_render_writes(engine, tmp_path):
    photo = _photo(tmp_path / "photo.jpg")
    depth = tmp_path / "photo.depth.png"
    options = ["--depth", depth, "-f", "1.4", "--focus-point", "20,30", "--blades", "6", *FAST]
    local = _cli("render", photo, "-o", tmp_path / "local.jpg", "-q", *options)
    assert local.returncode == 0, local.stderr
    far = _cli("render", photo, "-o", tmp_path / "remote.jpg", "-q", *options, "--remote",
               engine["address"], "--token-file", engine["root"] / "token", "--fingerprint",
               engine["fingerprint"])  # fmt: skip
    assert far.returncode == 0, far.stderr
    assert (tmp_path / "remote.jpg").read_bytes() == (tmp_path / "local.jpg").read_bytes()
    with Image.open(tmp_path / "remote.jpg") as im:
        assert im.info.get("icc_profile") and im.getexif()[0x010F] == "bokehkit-test-camera"


@pytest.mark.parametrize("failure", ["token", "fingerprint", "closed port"])
def test_remote_failures_are_one_line_exit_2_and_nothing_written(engine, tmp_path, failure):
    photo = _photo(tmp_path / "photo.jpg", 16, 12)
    (tmp_path / "wrong").write_text("not-the-token\n")
    address, token, fingerprint = engine["address"], engine["root"] / "token", engine["fingerprint"]
    if failure == "token":
        token = tmp_path / "wrong"
    elif failure == "fingerprint":
        fingerprint = "SHA256:" + "ab" * 32
    else:
        with socket.socket() as s:  # a port nobody listens on
            s.bind(("127.0.0.1", 0))
            address = f"127.0.0.1:{s.getsockname()[1]}"
    out = tmp_path / "out.jpg"
    result = _cli("render", photo, "-o", out, "-q", *FAST, "--remote", address,
                  "--token-file", token, "--fingerprint", fingerprint)  # fmt: skip
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    expected = {"token": "wrong token", "fingerprint": "not the pinned", "closed port": "reach"}
    assert expected[failure] in lines[0]
    assert not out.exists() and not list(tmp_path.glob(".out*"))


def test_a_dropped_connection_is_one_line_and_nothing_written(tmp_path):
    """An engine (here a stand-in with a real certificate) that hangs up mid-conversation."""
    cert, key = tls.ensure_certificate(tmp_path / "tls")
    context = tls.server_context(cert, key)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def hang_up() -> None:
        conn, _ = listener.accept()
        try:
            with context.wrap_socket(conn, server_side=True) as tls_conn:
                tls_conn.recv(100)  # the hello arrives; then the line goes dead
        except OSError:
            pass

    threading.Thread(target=hang_up, daemon=True).start()
    (tmp_path / "token").write_text(TOKEN)
    photo = _photo(tmp_path / "photo.jpg", 16, 12)
    out = tmp_path / "out.jpg"
    result = _cli("render", photo, "-o", out, "-q", "--remote", f"127.0.0.1:{port}",
                  "--token-file", tmp_path / "token", "--fingerprint",
                  tls.certificate_fingerprint(cert))  # fmt: skip
    listener.close()
    assert result.returncode == 2 and "connection" in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1 and not out.exists()


def _image(w: int, h: int) -> rawbuffer.RawImage:
    rng = np.random.default_rng(3)
    data = (rng.random((h, w, 4)) * 255).astype(np.uint8)
    data[..., 3] = 255
    return rawbuffer.RawImage(w, h, data.tobytes(), "RGBA", "RGBA", "uint8", "srgb")


def test_the_plugin_client_renders_previews_and_cancels_on_a_remote_engine(engine):
    """What GIMP and Krita run (remote.make_client() with a remote config), against an
    engine in another process with its own temp folder."""
    params = {"aperture": 1.4, "focus_source": "point", "focus_x": 0.3, "focus_y": 0.6}
    token = (engine["root"] / "token").read_text().strip()
    client = remote.RemoteEngineClient(engine["address"], token, engine["fingerprint"])
    with client:
        pong = client.ping()
        assert remote.engine_label(pong, remote=True).startswith("remote: ")
        image = _image(40, 30)
        result = client.render(image, params)
        preview = client.render(image, params, preview=True, preview_max_px=20)
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(Cancelled):
            client.render(_image(600, 400), params, cancel_event=cancel)
        again = client.render(image, params)  # the engine serves on after a cancel
    assert (result.image.width, result.image.height) == (40, 30)
    assert max(preview.image.width, preview.image.height) == 20
    assert again.image.data == result.image.data
    # The same pixels as the local engine (job folders on a shared disk).
    env = {"PYTHONPATH": str(REPO / "core"), "BOKEHKIT_MODELS": str(engine["root"] / "models")}
    with EngineClient(command=ENGINE, env=env) as local:
        assert local.render(image, params).image.data == result.image.data


# ------------------------------------------------ in-process engine: the server's rules


@pytest.fixture
def inproc(tmp_path, monkeypatch):
    """A TLS engine in a thread of this process (to watch what its jobs see)."""
    cert, key = tls.ensure_certificate(tmp_path / "tls")
    srv = TcpServer("127.0.0.1", 0, TOKEN, 10.0, tls=tls.server_context(cert, key))
    thread = threading.Thread(target=srv.serve, daemon=True)
    thread.start()
    for _ in range(200):
        if srv.address:
            break
        threading.Event().wait(0.02)
    yield f"127.0.0.1:{srv.address[1]}", tls.certificate_fingerprint(cert)
    srv.stop()


class Raw:
    """A bare TLS client speaking the protocol line by line."""

    def __init__(self, address: str, fingerprint: str) -> None:
        self.sock = remote.connect(address, fingerprint)
        self.lines = self.sock.makefile("rb")
        self.send({"type": "hello", "token": TOKEN})

    def send(self, request: dict) -> None:
        self.sock.sendall((json.dumps(request) + "\n").encode())

    def next(self, *kinds: str) -> dict:
        while True:
            event = json.loads(self.lines.readline())
            if event["type"] in kinds or event["type"] == "error":
                return event

    def put(self, job_dir: str, name: str, data: bytes, sha: str | None = None) -> dict:
        sha = sha or hashlib.sha256(data).hexdigest()
        self.send({"type": "put", "id": "J", "job_dir": job_dir, "name": name, "offset": 0,
                   "size": len(data), "sha256": sha,
                   "data": base64.b64encode(data).decode()})  # fmt: skip
        return self.next("stored")


def _bkraw(w: int, h: int) -> bytes:
    buf = io.BytesIO()
    image = _image(w, h)
    buf.write(rawbuffer.to_bytes(image))
    return buf.getvalue()


def test_uploads_are_checked_before_any_pixel_is_decoded(inproc, monkeypatch):
    monkeypatch.setenv("BOKEHKIT_MAX_PIXELS", "10000")
    client = Raw(*inproc)
    client.send({"type": "open_job", "id": "J"})
    job_dir = client.next("job_opened")["job_dir"]
    data = _bkraw(8, 6)
    assert client.put(job_dir, "image.bkraw", data)["type"] == "stored"
    damaged = client.put(job_dir, "other.bkraw", data, sha="0" * 64)
    assert damaged["type"] == "error" and "checksum" in damaged["message"]
    huge = json.dumps({"width": 20000, "height": 20000, "channels": "RGBA", "order": "RGBA",
                       "dtype": "uint8", "transfer": "srgb", "byteorder": "little"})  # fmt: skip
    head = b"BKRAW1\n" + huge.encode() + b"\n"
    client.send({"type": "put", "id": "J", "job_dir": job_dir, "name": "big.bkraw",
                 "offset": 0, "size": len(head) + 20000 * 20000 * 4, "sha256": "0" * 64,
                 "data": base64.b64encode(head).decode()})  # fmt: skip
    refused = client.next("stored")
    assert refused["type"] == "error" and "limit" in refused["message"]
    escape = client.put(job_dir, "../evil", b"x")
    assert escape["type"] == "error"
    client.send({"type": "get", "id": "J", "job_dir": job_dir, "name": "image.bkraw"})
    chunk, end = client.next("chunk"), client.next("file_end")
    assert (
        base64.b64decode(chunk["data"]) == data
        and end["sha256"] == hashlib.sha256(data).hexdigest()
    )


def test_a_client_that_disconnects_cancels_its_job(inproc, monkeypatch):
    started, cancelled = threading.Event(), threading.Event()

    def endless(inputs, params, progress, *rest):  # a render that runs until cancelled
        started.set()
        while not progress.cancel_event.is_set():
            progress.update(0.5, "rendering bokeh")
            threading.Event().wait(0.02)
        cancelled.set()
        progress.check_cancelled()

    monkeypatch.setattr(server, "render_inputs", endless)
    client = Raw(*inproc)
    client.send({"type": "open_job", "id": "J"})
    job_dir = client.next("job_opened")["job_dir"]
    client.put(job_dir, "image.bkraw", _bkraw(8, 6))
    client.send({"type": "render", "id": "J", "job_dir": job_dir, "image": "image.bkraw"})
    assert started.wait(WAIT_S)
    client.lines.close()
    client.sock.close()  # the last reference: the connection closes
    assert cancelled.wait(WAIT_S), "the job went on after its client disconnected"


def test_wrong_token_over_tls_is_refused(inproc):
    sock = remote.connect(*inproc)
    sock.sendall(b'{"type": "hello", "token": "wrong-token"}\n{"type": "ping"}\n')
    answer = sock.makefile("rb").readline()
    assert json.loads(answer)["message"] == "wrong token"
    with pytest.raises(remote.RemoteError, match="not the pinned"):
        remote.connect(inproc[0], "SHA256:" + "00" * 32)


def test_renders_take_turns_in_the_order_they_asked():
    turns, order = FairTurns(), []
    gate = threading.Event()
    first_in = threading.Event()

    def job(name: str) -> None:
        with turns:
            if name == "a":
                first_in.set()
                gate.wait(WAIT_S)
            order.append(name)

    threads = [threading.Thread(target=job, args=("a",))]
    threads[0].start()
    assert first_in.wait(WAIT_S)
    for name in "bcd":  # each waits behind the one before (tickets)
        t = threading.Thread(target=job, args=(name,))
        t.start()
        threads.append(t)
        while turns._next_ticket != len(threads):
            threading.Event().wait(0.005)
    gate.set()
    for t in threads:
        t.join(WAIT_S)
    assert order == ["a", "b", "c", "d"]


def test_install_plugins_remote_makes_the_hosts_use_the_remote_engine(
    engine, tmp_path, monkeypatch
):
    from bokehkit_plugin import client as bk_client

    home = tmp_path / "home"
    (home / ".config/GIMP/3.0").mkdir(parents=True)
    env = {**_env(tmp_path), "HOME": str(home), "XDG_CONFIG_HOME": "", "XDG_DATA_HOME": ""}
    env.pop("GIMP3_DIRECTORY", None)
    fingerprint = engine["fingerprint"].upper().replace("SHA256:", "SHA256:")
    done = _cli("install-plugins", "--gimp", "--remote", engine["address"], "--token-file",
                engine["root"] / "token", "--fingerprint", fingerprint, env=env)  # fmt: skip
    assert done.returncode == 0, done.stderr
    config = json.loads((home / ".config/bokehkit/engine.json").read_text())
    assert config["remote"]["fingerprint"] == engine["fingerprint"]
    bad = _cli("install-plugins", "--gimp", "--remote", engine["address"], "--token-file",
               engine["root"] / "token", "--fingerprint", "SHA256:1234", env=env)  # fmt: skip
    assert bad.returncode == 2 and "64 hex digits" in bad.stderr
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("XDG_CONFIG_HOME", "")
    monkeypatch.delenv("BOKEHKIT_ENGINE", raising=False)
    client = remote.make_client()  # what GIMP and Krita call
    with client:
        assert client.remote
        engines = bk_client.engines_for_panel(client.ping(), client)
    assert engines["where"]["label"].startswith("remote: CPU")
    assert engines["classical"]["available"]


def test_queues_are_limited_before_anything_is_read(inproc, monkeypatch):
    started, release = threading.Event(), threading.Event()

    def busy(inputs, params, progress, *rest):  # holds the engine until the test is done
        started.set()
        release.wait(WAIT_S)
        progress.cancel_event.set()
        progress.check_cancelled()

    monkeypatch.setattr(server, "render_inputs", busy)
    client = Raw(*inproc)
    client.send({"type": "open_job", "id": "J"})
    job_dir = client.next("job_opened")["job_dir"]
    client.put(job_dir, "image.bkraw", _bkraw(8, 6))
    for n in range(server.MAX_PENDING_JOBS):
        request = {"type": "render", "id": f"R{n}", "job_dir": job_dir, "image": "image.bkraw"}
        client.send(request)
    assert started.wait(WAIT_S)
    client.send({"type": "render", "id": "over", "job_dir": job_dir, "image": "nothing"})
    refused = client.next("never")
    assert refused["id"] == "over" and "too many jobs" in refused["message"]
    release.set()
    client.lines.close()
    client.sock.close()


def test_the_engine_wide_queue_refuses_beyond_its_limit():
    from bokehkit.serve.tcp import JobAdmission

    admission = JobAdmission(2)
    assert admission.admit() and admission.admit() and not admission.admit()
    admission.release()
    assert admission.admit()


def test_without_a_local_engine_gimp_falls_back_to_its_own_dialog(tmp_path, monkeypatch):
    """The engine's dialog belongs on the user's screen: a remote client never asks the
    remote engine for it; without a local engine it says so and GIMP uses its own dialog."""
    from bokehkit_plugin.client import EngineError

    monkeypatch.delenv("BOKEHKIT_ENGINE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("XDG_CONFIG_HOME", "")
    client = remote.RemoteEngineClient("127.0.0.1:9", TOKEN, "SHA256:" + "00" * 32)
    with pytest.raises(EngineError, match="no local engine"):
        client.dialog(_image(8, 6), {})

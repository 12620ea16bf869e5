"""The plug-in ⇄ engine protocol (docs/protocol.md): EngineClient against a fake engine
that misbehaves on purpose, then against the real `bokehkit serve`."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "plugin"))

from bokehkit_plugin import config, rawbuffer, schema  # noqa: E402
from bokehkit_plugin.client import (  # noqa: E402
    Cancelled,
    EngineBusy,
    EngineClient,
    EngineError,
)

from bokehkit import rawbuffer as engine_rb  # noqa: E402

REAL_ENGINE = [sys.executable, "-m", "bokehkit"]
ENGINE_ENV = {"PYTHONPATH": str(REPO / "core")}  # the client scrubs PYTHONPATH, then adds this

FAKE_ENGINE = r"""
import json, os, shutil, sys, tempfile, threading, time
mode = os.environ["FAKE_MODE"]
base = sys.argv[sys.argv.index("--job-base") + 1] if "--job-base" in sys.argv else None
out = sys.stdout
lock = threading.Lock()
cancelled = threading.Event()

def emit(event):
    with lock:
        out.write(json.dumps(event) + "\n")
        out.flush()

def render(req):
    jid = req["id"]
    if mode == "garbage":
        out.write("Traceback (most recent call last): oops\n"); out.flush(); return
    for i in range(400):
        if mode == "crash" and i == 2:
            sys.stderr.write("fake engine: segmentation fault in tile 3\n"); sys.stderr.flush()
            os._exit(3)
        if cancelled.is_set() and mode != "ignore_cancel":
            emit({"type": "cancelled", "id": jid}); return
        emit({"type": "progress", "id": jid, "fraction": i / 4, "text": f"tile {i + 1}/4"})
        if mode == "progress" and i == 4:
            break
        time.sleep(0.05)
    shutil.copy(os.path.join(req["job_dir"], req["image"]),
                os.path.join(req["job_dir"], "result.bkraw"))
    emit({"type": "result", "id": jid, "file": "result.bkraw", "report": ["fake"]})

for line in sys.stdin:
    req = json.loads(line)
    if req["type"] == "ping":
        emit({"type": "pong", "version": "fake", "engines": {}})
    elif req["type"] == "cancel":
        cancelled.set()
    elif req["type"] == "open_job":
        folder = tempfile.mkdtemp(prefix="bokehkit-job-", dir=base)
        emit({"type": "job_opened", "id": req["id"], "job_dir": folder})
    elif req["type"] == "render":
        cancelled.clear()
        threading.Thread(target=render, args=(req,), daemon=True).start()
    elif req["type"] == "shutdown":
        emit({"type": "bye"}); break
"""


@pytest.fixture
def fake(tmp_path):
    """A factory: EngineClient over the fake engine in a mode, jobs under tmp_path/jobs."""
    script = tmp_path / "fake_engine.py"
    script.write_text(FAKE_ENGINE)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    clients = []

    def make(mode: str) -> EngineClient:
        client = EngineClient([sys.executable, str(script)], {"FAKE_MODE": mode}, str(jobs))
        clients.append(client)
        return client

    make.jobs = jobs
    yield make
    for client in clients:
        client.kill()
        client.close()


def small_image(w: int = 8, h: int = 6) -> rawbuffer.RawImage:
    data = bytes(range(256)) * (w * h * 4 // 256 + 1)
    return rawbuffer.RawImage(w, h, data[: w * h * 4], "RGBA", "BGRA", "uint8", "srgb")


def assert_no_job_folders(jobs: Path) -> None:
    assert list(jobs.iterdir()) == []


# ---------------------------------------------------------------------- fake engine


def test_progress_events_arrive_in_order_and_result_is_read(fake):
    client = fake("progress")
    seen = []
    result = client.render(small_image(), {}, on_progress=lambda f, t: seen.append((f, t)))
    assert [t for _, t in seen] == [f"tile {i}/4" for i in range(1, 6)]
    assert [f for f, _ in seen] == sorted(f for f, _ in seen)
    assert result.image.data == small_image().data and result.image.order == "BGRA"
    assert result.report == ["fake"]
    assert_no_job_folders(fake.jobs)


def test_cancel_is_confirmed_quickly_and_engine_survives(fake):
    client = fake("cancel")
    cancel = threading.Event()
    started = time.monotonic()
    with pytest.raises(Cancelled):
        client.render(small_image(), {}, on_progress=lambda f, t: cancel.set(), cancel_event=cancel)
    assert time.monotonic() - started < 1.5
    assert client.running  # a confirmed cancel keeps the engine for the next job
    assert_no_job_folders(fake.jobs)
    assert client.ping()["type"] == "pong"


def test_engine_ignoring_cancel_is_killed_after_grace(fake):
    client = fake("ignore_cancel")
    cancel = threading.Event()
    client.start()
    pid = client.pid
    started = time.monotonic()
    with pytest.raises(Cancelled):
        client.render(small_image(), {}, on_progress=lambda f, t: cancel.set(), cancel_event=cancel)
    waited = time.monotonic() - started
    assert 1.9 <= waited < 4.0
    assert not client.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped
    assert_no_job_folders(fake.jobs)


def test_crash_mid_render_is_a_readable_error(fake):
    client = fake("crash")
    with pytest.raises(EngineError) as info:
        client.render(small_image(), {})
    message = str(info.value)
    assert "stopped unexpectedly" in message and "exit code 3" in message
    assert "segmentation fault in tile 3" in message  # the engine's last log line
    assert_no_job_folders(fake.jobs)


def test_garbage_output_is_a_readable_error(fake):
    client = fake("garbage")
    with pytest.raises(EngineError, match="not the plug-in protocol"):
        client.render(small_image(), {})
    assert not client.running
    assert_no_job_folders(fake.jobs)


def test_second_render_while_busy_is_refused(fake):
    client = fake("cancel")  # runs ~20 s unless cancelled
    cancel = threading.Event()
    first_error = []

    def first() -> None:
        try:
            client.render(small_image(), {}, cancel_event=cancel)
        except Cancelled as exc:
            first_error.append(exc)

    thread = threading.Thread(target=first)
    thread.start()
    time.sleep(0.5)
    with pytest.raises(EngineBusy):
        client.render(small_image(), {})
    cancel.set()
    thread.join(10)
    assert first_error and isinstance(first_error[0], Cancelled)
    assert_no_job_folders(fake.jobs)


def test_missing_engine_command_is_a_readable_error(tmp_path):
    client = EngineClient([str(tmp_path / "no-such-engine")], job_base=str(tmp_path))
    with pytest.raises(EngineError, match="cannot start the bokehkit engine"):
        client.render(small_image(), {})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------ host-side pieces


def test_config_says_how_to_set_up_when_nothing_is_configured(tmp_path):
    env = {"HOME": str(tmp_path)}
    with pytest.raises(config.EngineNotConfigured, match="bokehkit engine is not set up"):
        config.engine_command(env, "linux")
    folder = tmp_path / ".config" / "bokehkit"
    folder.mkdir(parents=True)
    (folder / "engine.json").write_text(json.dumps({"command": ["/opt/bk/bin/bokehkit"]}))
    assert config.engine_command(env, "linux") == ["/opt/bk/bin/bokehkit"]
    env["BOKEHKIT_ENGINE"] = '["py", "-m", "bokehkit"]'
    assert config.engine_command(env, "linux") == ["py", "-m", "bokehkit"]
    env["BOKEHKIT_ENGINE"] = "'/a b/python' -m bokehkit"
    assert config.engine_command(env, "linux") == ["/a b/python", "-m", "bokehkit"]


def test_config_dirs_match_platformdirs_conventions():
    env = {"HOME": "/h", "LOCALAPPDATA": r"C:\Users\u\AppData\Local", "XDG_CONFIG_HOME": ""}
    assert config.user_config_dir("linux", env) == "/h/.config/bokehkit"
    assert config.user_config_dir("linux", {**env, "XDG_CONFIG_HOME": "/x"}) == "/x/bokehkit"
    assert config.user_config_dir("darwin", env).endswith("Library/Application Support/bokehkit")
    assert config.user_config_dir("win32", env).endswith("bokehkit" + os.sep + "bokehkit")


def test_schema_fills_defaults_and_rejects_bad_values():
    values = schema.validate({"aperture": 1.4})
    assert values["aperture"] == 1.4 and values["highlights"] == 40.0 and values["grain"] == 1.0
    assert values["focal_length"] == 0.0 and values["engine"] == "classical"
    assert schema.validate({"blades": 0})["blades"] == 0
    for bad, words in (
        ({"aperture": 0.5}, "outside 0.95–22"),
        ({"blades": 3}, "outside 0 or 5–9"),
        ({"sr_factor": 3}, "not one of 1, 2, 4"),
        ({"focus_source": "face"}, "not one of mask, point, auto"),
        ({"grain": "lots"}, "expected a number"),
        ({"apperture": 2}, "unknown parameter"),
        ({"upscaler": "esrgan"}, "Upscaler: 'esrgan' is not one of classical, realesrgan"),
        ({"sr_detail": 1.5}, "AI detail: 1.5 is outside 0–1"),
        ({"sr_detail": -0.1}, "AI detail: -0.1 is outside 0–1"),
        ({"sr_detail": float("nan")}, "AI detail: not a number"),
    ):
        with pytest.raises(schema.ParamError, match=words):
            schema.validate(bad)


def test_schema_upscaler_and_detail_follow_the_engine():
    from bokehkit import server
    from bokehkit.sr import realesrgan

    values = schema.validate({})
    assert values["upscaler"] == "classical" and values["sr_detail"] == 0.25
    upscaler, detail = schema.BY_NAME["upscaler"], schema.BY_NAME["sr_detail"]
    assert upscaler.choices == server.UPSCALERS  # what the engine accepts
    assert upscaler.choice_labels == ("Classical", "Real-ESRGAN (AI)")
    assert detail.default == realesrgan.DETAIL  # the CLI's --sr-detail default
    assert (detail.minimum, detail.maximum) == (0.0, 1.0)
    assert schema.validate({"upscaler": "realesrgan", "sr_detail": 1})["sr_detail"] == 1.0


def _inputs():
    """Just what settings_from_params reads of a request (auto focus: no mask needed)."""
    from types import SimpleNamespace

    return SimpleNamespace(depth_path=None, mask=None, image=SimpleNamespace(size=(8, 6)))


def test_engine_maps_upscaler_and_detail_to_render_settings():
    from bokehkit.errors import BokehkitError
    from bokehkit.server import settings_from_params

    auto = {"focus_source": "auto", "sr_factor": 2}
    plain = settings_from_params(auto, _inputs())
    assert plain.upscaler == "classical" and plain.upscaler_options == {}
    classical = settings_from_params({**auto, "upscaler": "classical", "sr_detail": 0.9}, _inputs())
    assert classical.upscaler == "classical" and classical.upscaler_options == {}
    learned = settings_from_params({**auto, "upscaler": "realesrgan", "sr_detail": 0.6}, _inputs())
    assert learned.upscaler == "realesrgan" and learned.upscaler_options == {"detail": 0.6}
    default = settings_from_params({**auto, "upscaler": "realesrgan"}, _inputs())
    assert default.upscaler_options == {"detail": schema.BY_NAME["sr_detail"].default}
    for bad, words in (
        ({"upscaler": "realesrgan", "sr_detail": 1.5}, r"sr_detail \(AI detail\).*not 1.5"),
        ({"upscaler": "realesrgan", "sr_detail": float("nan")}, r"sr_detail \(AI detail\)"),
        ({"upscaler": "classical", "sr_detail": -1}, r"sr_detail \(AI detail\).*not -1"),
        ({"upscaler": "realesrgan", "sr_detail": "crisp"}, "sr_detail must be a number"),
        ({"upscaler": "esrgan"}, "upscaler must be classical or realesrgan, not 'esrgan'"),
    ):
        with pytest.raises(BokehkitError, match=words):
            settings_from_params({**auto, **bad}, _inputs())


def test_engine_reports_whether_realesrgan_can_run(tmp_path, monkeypatch):
    import importlib.util

    from bokehkit import server
    from bokehkit.models import ModelStore
    from bokehkit.sr import realesrgan

    missing = server.engines_status()["realesrgan"]  # the tests' empty model store
    assert missing == {
        "available": False,
        "reason": "its model is not installed; run: bokehkit models install realesrgan-x4plus",
    }
    monkeypatch.setattr(ModelStore, "is_installed", lambda self, model_id: True)
    real_find_spec = importlib.util.find_spec
    have = {"torch": True, "onnxruntime": True}

    def find_spec(name, *args):
        if name in have:
            return real_find_spec("json") if have[name] else None
        return real_find_spec(name, *args)

    monkeypatch.setattr(importlib.util, "find_spec", find_spec)
    assert server.realesrgan_status(tmp_path) == {"available": True}  # torch converts
    have["torch"] = False  # the light engine: onnxruntime only
    status = server.realesrgan_status(tmp_path)
    assert not status["available"] and "needs torch once" in status["reason"]
    folder = tmp_path / realesrgan.MODEL_ID
    folder.mkdir()
    (folder / realesrgan.WEIGHTS).write_bytes(b"w")
    (folder / realesrgan.ONNX).write_bytes(b"o")  # made after the weights
    assert server.realesrgan_status(tmp_path) == {"available": True}
    have["onnxruntime"] = False
    assert not server.realesrgan_status(tmp_path)["available"]


@pytest.mark.parametrize(
    "channels,order,dtype",
    [("RGBA", "BGRA", "uint8"), ("RGB", "RGBA", "uint16"), ("YA", "RGBA", "float16"),
     ("Y", "RGBA", "float32")],
)  # fmt: skip
def test_buffers_cross_between_plugin_and_engine(tmp_path, channels, order, dtype):
    rng = np.random.default_rng(1)
    n = len(channels)
    pixels = (rng.random((5, 7, n)) * (255 if dtype == "uint8" else 1000)).astype(dtype)
    image = rawbuffer.RawImage(7, 5, pixels.tobytes(), channels, order, dtype, "linear")
    rawbuffer.write(str(tmp_path / "a.bkraw"), image)
    buf = engine_rb.read_buffer(tmp_path / "a.bkraw")
    assert buf.pixels.dtype == np.dtype(dtype) and np.array_equal(buf.pixels, pixels)
    engine_rb.write_buffer(tmp_path / "b.bkraw", buf)
    assert rawbuffer.read(str(tmp_path / "b.bkraw")) == image
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.bkraw", "b.bkraw"]  # no .part


def test_engine_buffer_to_image_and_back_is_exact():
    rng = np.random.default_rng(2)
    pixels = rng.integers(0, 65536, (6, 9, 4), dtype=np.uint16)
    buf = engine_rb.RawBuffer(pixels, "RGBA", "BGRA", "srgb")
    image = engine_rb.buffer_to_image(buf)
    # BGRA in the buffer, RGB in the image
    assert np.array_equal(image.encoded[..., 0], pixels[..., 2])
    assert np.array_equal(image.alpha, pixels[..., 3])
    back = engine_rb.image_to_buffer(image.encoded, image.alpha, buf)
    assert np.array_equal(back.pixels, pixels) and back.order == "BGRA"


def test_truncated_buffer_is_refused(tmp_path):
    data = rawbuffer.to_bytes(small_image())
    with pytest.raises(rawbuffer.BufferError, match="pixel bytes"):
        rawbuffer.from_bytes(data[:-3])
    from bokehkit.errors import BokehkitError

    with pytest.raises(BokehkitError, match="truncated"):
        engine_rb.from_bytes(data[:-3])


# ---------------------------------------------------------------------- real engine


@pytest.fixture
def photo(tmp_path):
    """A small sRGB photo with lights, and a focus mask on a card in the middle."""
    rng = np.random.default_rng(5)
    h, w = 64, 96
    img = (rng.random((h, w, 3)) * 150 + 50).astype(np.uint8)
    img[8:10:2, 10:90:9] = 255
    img[20:44, 30:66] = (200, 120, 60)
    mask = np.zeros((h, w), np.uint8)
    mask[22:42, 32:64] = 255
    Image.fromarray(img).save(tmp_path / "photo.png")
    Image.fromarray(mask).save(tmp_path / "mask.png")
    return tmp_path, img, mask


def test_real_engine_matches_the_command_line(photo):
    folder, img, mask = photo
    cli = subprocess.run(
        [*REAL_ENGINE, "render", folder / "photo.png", "--focus-mask", folder / "mask.png",
         "--aperture", "1.4", "--blades", "6", "-q", "-o", folder / "cli.png"],
        env={**os.environ, **ENGINE_ENV}, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert cli.returncode == 0, cli.stderr
    expected = np.asarray(Image.open(folder / "cli.png")).astype(int)

    h, w = img.shape[:2]
    image = rawbuffer.RawImage(w, h, img.tobytes(), "RGB", "RGBA", "uint8", "srgb")
    mask_buf = rawbuffer.RawImage(w, h, mask.tobytes(), "Y", "RGBA", "uint8", "linear")
    params = {"aperture": 1.4, "blades": 6, "focus_source": "mask"}
    jobs = folder / "jobs"
    jobs.mkdir()
    progress = []
    with EngineClient(REAL_ENGINE, ENGINE_ENV, str(jobs)) as client:
        pong = client.ping()
        assert pong["engines"]["classical"] == {"available": True}
        assert pong["engines"]["magicbokeh"]["available"] is False
        assert pong["engines"]["magicbokeh"]["reason"]
        realesrgan = pong["engines"]["realesrgan"]  # the tests' model store is empty
        assert not realesrgan["available"] and "install realesrgan-x4plus" in realesrgan["reason"]
        result = client.render(
            image, params, mask=mask_buf, on_progress=lambda *a: progress.append(a)
        )
        preview = client.render(image, dict(params, sr_factor=2), mask=mask_buf, preview=True,
                                preview_max_px=48)  # fmt: skip
        with pytest.raises(EngineError, match="mask"):  # an error, and the engine lives on
            client.render(image, params)
        assert client.ping()["type"] == "pong"
    got = np.frombuffer(result.image.data, np.uint8).reshape(h, w, 3).astype(int)
    assert np.abs(got - expected).max() <= 1
    assert np.abs(got - img).max() > 30  # it did blur
    assert any("focus" in line for line in result.report)
    assert progress and progress[-1][0] > 0.9
    assert (preview.image.width, preview.image.height) == (48, 32)
    assert_no_job_folders(jobs)


def test_previews_of_one_layer_send_it_once_and_render_as_a_fresh_engine_would(photo):
    folder, img, mask = photo
    h, w = img.shape[:2]
    image = rawbuffer.RawImage(w, h, img.tobytes(), "RGB", "RGBA", "uint8", "srgb")
    mask_buf = rawbuffer.RawImage(w, h, mask.tobytes(), "Y", "RGBA", "uint8", "linear")
    params = {"aperture": 1.4, "focus_source": "mask"}
    sent = []
    with EngineClient(REAL_ENGINE, ENGINE_ENV, str(folder)) as client:
        send = client._send
        client._send = lambda request: (sent.append(dict(request)), send(request))[1]

        def preview(layer, **changes):
            return client.render(layer, dict(params, **changes), mask=mask_buf, preview=True,
                                 preview_max_px=48).image.data  # fmt: skip

        first = preview(image)
        slider = [preview(image, aperture=a) for a in (2.0, 4.0)]
        renders = [r for r in sent if r.get("type") == "render"]
        assert renders[0]["image"] and renders[0]["cache_as"]  # sent once, with a name...
        assert all(r["image"] is None and r["mask"] is None for r in renders[1:])  # ...then not
        assert all(r["cached"] == renders[0]["cache_as"] for r in renders[1:])
        # The engine forgot them (say it restarted): the client sends them again.
        kept = client._preview_kept
        client._preview_kept = (kept[0], "P-forgotten", *kept[2:])
        assert preview(image, aperture=4.0) == slider[1]
        renders = [r for r in sent if r.get("type") == "render"]
        assert renders[-2]["cached"] == "P-forgotten" and renders[-1]["image"]
        # A new layer object (pixels edited): sent again, and rendered as it is now.
        edited = rawbuffer.RawImage(w, h, (255 - img).tobytes(), "RGB", "RGBA", "uint8", "srgb")
        assert preview(edited) != first
        renders = [r for r in sent if r.get("type") == "render"]
        assert renders[-1]["image"] and "cached" not in renders[-1]
    with EngineClient(REAL_ENGINE, ENGINE_ENV, str(folder)) as fresh:
        for aperture, kept in zip((2.0, 4.0), slider, strict=True):
            again = fresh.render(image, dict(params, aperture=aperture), mask=mask_buf,
                                 preview=True, preview_max_px=48)  # fmt: skip
            assert again.image.data == kept
    assert len(set(slider) | {first}) == 3  # the slider changed each preview


def test_real_engine_passes_alpha_through_and_cancels(photo):
    folder, img, _ = photo
    h, w = img.shape[:2]
    rgba = np.dstack([img[..., ::-1], np.arange(h * w, dtype=np.uint32).reshape(h, w) % 256])
    rgba = rgba.astype(np.uint8)
    image = rawbuffer.RawImage(w, h, rgba.tobytes(), "RGBA", "BGRA", "uint8", "srgb")
    with EngineClient(REAL_ENGINE, ENGINE_ENV, str(folder)) as client:
        result = client.render(image, {"focus_source": "point", "focus_x": 0.5, "focus_y": 0.5})
        out = np.frombuffer(result.image.data, np.uint8).reshape(h, w, 4)
        assert np.array_equal(out[..., 3], rgba[..., 3])
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(Cancelled):
            client.render(image, {}, cancel_event=cancel)
        assert client.running  # the real engine confirms in time: not killed


def test_engine_exits_when_its_parent_is_killed(tmp_path):
    """kill -9 of the plug-in's process (GIMP's cancel does that) must not orphan the
    engine, even while its stdin stays open (another process holds the pipe)."""
    parent_code = f"""
import os, subprocess, sys, time
r, w = os.pipe()
holder = subprocess.Popen(["sleep", "60"], pass_fds=(w,))
engine = subprocess.Popen({REAL_ENGINE!r} + ["serve", "--stdio"], stdin=r,
                          stdout=subprocess.DEVNULL, env={{**os.environ, **{ENGINE_ENV!r}}})
print(engine.pid, holder.pid, flush=True)
time.sleep(60)
"""
    parent = subprocess.Popen(
        [sys.executable, "-c", parent_code], stdout=subprocess.PIPE, text=True
    )
    engine_pid, holder_pid = map(int, parent.stdout.readline().split())
    try:
        time.sleep(1.5)  # let the engine start and arm its watch
        assert _alive(engine_pid)
        os.kill(parent.pid, signal.SIGKILL)
        parent.wait()
        deadline = time.monotonic() + 5
        while _alive(engine_pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not _alive(engine_pid), "the engine outlived its parent"
    finally:
        for pid in (engine_pid, holder_pid):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie awaiting its (new) parent."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def tcp_engine(tmp_path):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    proc = subprocess.Popen(
        [*REAL_ENGINE, "serve", "--tcp", "127.0.0.1:0", "--token-file", token_file],
        env={**os.environ, **ENGINE_ENV}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    line = proc.stderr.readline()
    assert "listening on" in line, line
    port = int(line.rsplit(":", 1)[1])
    yield port, proc
    if proc.poll() is None:
        proc.kill()
    proc.wait()


def _talk(port: int, *lines: dict) -> list[dict]:
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        for line in lines:
            conn.sendall((json.dumps(line) + "\n").encode())
        conn.shutdown(socket.SHUT_WR)
        data = b""
        while chunk := conn.recv(65536):
            data += chunk
    return [json.loads(x) for x in data.splitlines() if x.strip()]


def test_tcp_rejects_a_wrong_token_and_serves_the_right_one(tcp_engine):
    port, proc = tcp_engine
    answers = _talk(port, {"type": "hello", "token": "guess"}, {"type": "ping"})
    assert answers == [{"type": "error", "id": None, "message": "wrong token"}]
    assert _talk(port, {"type": "ping"})[0]["message"] == "wrong token"  # no hello at all
    answers = _talk(port, {"type": "hello", "token": "s3cret-token"}, {"type": "ping"})
    assert answers[0]["type"] == "pong"
    answers = _talk(port, {"type": "hello", "token": "s3cret-token"}, {"type": "shutdown"})
    assert answers == [{"type": "bye"}]
    assert proc.wait(timeout=10) == 0


def test_inline_buffers_for_remote_engines():
    """`"inline": true` sends buffers base64-encoded in the JSON (no shared job folder)."""
    import base64

    image = small_image(16, 12)
    engine = subprocess.Popen(
        [*REAL_ENGINE, "serve"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        env={**os.environ, **ENGINE_ENV},
    )  # fmt: skip
    data = base64.b64encode(rawbuffer.to_bytes(image)).decode()
    request = {"type": "render", "id": "X", "inline": True, "image": data, "params": {}}
    engine.stdin.write((json.dumps(request) + "\n").encode())
    engine.stdin.flush()
    event = {"type": "progress"}
    while event["type"] == "progress":
        event = json.loads(engine.stdout.readline())
    engine.stdin.close()  # EOF: the engine exits
    assert engine.wait(timeout=30) == 0
    assert event["type"] == "result" and "file" not in event
    result = rawbuffer.from_bytes(base64.b64decode(event["data"]))
    assert result.header() == image.header()

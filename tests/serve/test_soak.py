"""A bounded soak of `bokehkit serve --tcp` on loopback: hundreds of clients, good, malformed,
slow and abandoned, several at once. Every good client is served, the server's memory and
threads come back to where they were, and no job folder is left.

SOAK_CLIENTS (default 800) and SOAK_PARALLEL (default 16) size it; it prints its figures.
"""

from __future__ import annotations

import base64
import json
import os
import random
import socket
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from bokehkit_plugin import rawbuffer

REPO = Path(__file__).resolve().parents[2]

CLIENTS = int(os.environ.get("SOAK_CLIENTS", "800"))
PARALLEL = int(os.environ.get("SOAK_PARALLEL", "16"))
TOKEN = "s0ak-token-1234"
HELLO = json.dumps({"type": "hello", "token": TOKEN}).encode() + b"\n"
IMAGE = base64.b64encode(
    rawbuffer.to_bytes(rawbuffer.RawImage(16, 12, bytes(range(192)) * 4, "RGBA"))
).decode()
WAIT_S = 60.0


def _status(pid: int) -> dict[str, int]:
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "Threads"):
            fields[key] = int(value.split()[0])
    return fields


def _lines(conn: socket.socket, until) -> list[dict]:
    """Events until `until(event)` is true (or the server closes)."""
    data, events = b"", []
    conn.settimeout(WAIT_S)
    while True:
        while b"\n" in data:
            line, data = data.split(b"\n", 1)
            events.append(json.loads(line))
            if until(events[-1]):
                return events
        chunk = conn.recv(65536)
        if not chunk:
            return events
        data += chunk


def good_ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as conn:
        conn.sendall(HELLO + b'{"type": "ping", "id": 1}\n')
        return _lines(conn, lambda e: e["type"] == "pong")[-1]["type"] == "pong"


def good_render(port: int) -> bool:
    request = {"type": "render", "id": "R", "inline": True, "image": IMAGE,
               "params": {"focus_source": "point", "aperture": 4}}  # fmt: skip
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as conn:
        conn.sendall(HELLO + json.dumps(request).encode() + b"\n")
        last = _lines(conn, lambda e: e["type"] in ("result", "error"))[-1]
        return last["type"] == "result" and bool(base64.b64decode(last["data"]))


def good_job_folder(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as conn:
        conn.sendall(HELLO + b'{"type": "open_job", "id": "J"}\n')
        event = _lines(conn, lambda e: e["type"] == "job_opened")[-1]
        folder = Path(event["job_dir"])
        (folder / "image.bkraw").write_bytes(base64.b64decode(IMAGE))
        render = {"type": "render", "id": "R", "job_dir": str(folder), "image": "image.bkraw",
                  "params": {"focus_source": "point"}}  # fmt: skip
        conn.sendall(json.dumps(render).encode() + b"\n")
        last = _lines(conn, lambda e: e["type"] in ("result", "error"))[-1]
        return last["type"] == "result" and (folder / last["file"]).is_file()


def malformed(port: int, kind: int) -> None:
    payloads = [
        b"[" * 100_000 + b"\n",  # before the hello: nesting
        b"x" * 20_000,  # a hello line far too long, no newline
        b'{"type": "hello", "token": "guess"}\n{"type": "ping"}\n',
        HELLO + b"\xff\xfe\n" + b"[" * 50_000 + b"\n" + b'{"type": "cancel", "id": []}\n',
        HELLO + b'{"type": "render", "id": "R", "job_dir": "/etc", "image": "passwd"}\n',
    ]
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as conn:
        try:
            conn.sendall(payloads[kind % len(payloads)])
            conn.shutdown(socket.SHUT_WR)
            _lines(conn, lambda e: False)
        except OSError:
            pass  # the server may close first


def slow(port: int) -> None:
    """Half a hello, a byte at a time, then silence: cut off at the hello deadline."""
    with socket.create_connection(("127.0.0.1", port), timeout=WAIT_S) as conn:
        try:
            for byte in HELLO[:12]:
                conn.sendall(bytes([byte]))
                time.sleep(0.05)
            _lines(conn, lambda e: False)
        except OSError:
            pass


def abandoned(port: int, kind: int) -> None:
    conn = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
    if kind % 3 == 1:
        conn.sendall(HELLO + b'{"type": "open_job", "id": "J"}\n')
    elif kind % 3 == 2:  # a render nobody waits for
        request = {"type": "render", "id": "R", "inline": True, "image": IMAGE}
        conn.sendall(HELLO + json.dumps(request).encode() + b"\n")
    conn.close()


def test_soak(tmp_path):
    token = tmp_path / "token"
    token.write_text(TOKEN)
    jobs = tmp_path / "jobs"
    jobs.mkdir()
    proc = subprocess.Popen(
        [sys.executable, "-m", "bokehkit", "serve", "--tcp", "127.0.0.1:0", "--token-file",
         token, "--hello-timeout", "1", "--job-base", jobs],
        env={**os.environ, "PYTHONPATH": str(REPO / "core")}, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        line = proc.stderr.readline()
        assert "listening on" in line, line
        port = int(line.rsplit(":", 1)[1])
        assert good_render(port) and good_ping(port)  # warm: imports done, buffers made
        rng = random.Random(15)
        kinds = [rng.choice("ppprjmmmmsaaa") for _ in range(CLIENTS)]

        def one(i: int):
            kind = kinds[i]
            if kind == "p":
                return good_ping(port)
            if kind == "r":
                return good_render(port)
            if kind == "j":
                return good_job_folder(port)
            if kind == "m":
                malformed(port, i)
            elif kind == "s":
                slow(port)
            else:
                abandoned(port, i)
            return None

        started = time.monotonic()
        half = CLIENTS // 2
        with ThreadPoolExecutor(PARALLEL) as pool:
            first = list(pool.map(one, range(half)))
        time.sleep(1.5)  # the last slow and abandoned clients' sessions end
        middle = _status(proc.pid)
        with ThreadPoolExecutor(PARALLEL) as pool:
            second = list(pool.map(one, range(half, CLIENTS)))
        time.sleep(1.5)
        end = _status(proc.pid)
        seconds = time.monotonic() - started
        results = first + second
        good = [r for r in results if r is not None]
        print(
            f"soak: {CLIENTS} clients ({len(good)} good, {PARALLEL} at once) in {seconds:.1f} s;"
            f" server RSS {middle['VmRSS'] / 1024:.0f} MB after the first half, "
            f"{end['VmRSS'] / 1024:.0f} MB at the end; threads {middle['Threads']} → "
            f"{end['Threads']}"
        )
        assert proc.poll() is None
        assert all(good), f"{good.count(False)} good clients were not served"
        assert end["VmRSS"] - middle["VmRSS"] < 40 * 1024, (middle, end)  # flat: < 40 MB
        assert end["Threads"] <= middle["Threads"] + 2, (middle, end)
        assert list(jobs.iterdir()) == []  # every session's job folders removed
    finally:
        proc.kill()
        proc.wait()

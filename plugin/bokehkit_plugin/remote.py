"""A remote engine (`bokehkit serve --tcp HOST:PORT --tls`) over TLS, standard library only.

The engine's certificate is self-signed: instead of a CA, the client pins the SHA-256 of the
certificate the engine printed when it started, and refuses any other before it sends the
token (like an SSH host key). Pixels travel inside the connection in checksummed chunks
(docs/protocol.md, "Files through the connection"), so nothing is shared but the socket.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import queue
import re
import socket
import ssl
import threading
import time

from . import rawbuffer
from .client import START_TIMEOUT_S, EngineClient, EngineError, engine_label
from .tlsstream import TlsStream

CHUNK_BYTES = 1 << 20
CONNECT_TIMEOUT_S = 10.0
_HEX64 = re.compile(r"[0-9a-f]{64}")


class RemoteError(EngineError):
    """The remote engine could not be reached or trusted; the message says which."""


def parse_fingerprint(text: str) -> str:
    """The 64 hex digits of `SHA256:…` (colons and case as openssl or we print them)."""
    value = str(text).strip()
    if value.upper().startswith("SHA256:"):
        value = value[7:]
    value = value.replace(":", "").lower()
    if not _HEX64.fullmatch(value):
        raise RemoteError(
            f"the fingerprint must be SHA256: and 64 hex digits, as `bokehkit serve --tls` "
            f"prints it, not {str(text)[:80]!r}"
        )
    return value


def parse_address(text: str) -> tuple[str, int]:
    host, sep, port = str(text).strip().rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise RemoteError(f"the remote engine's address must be HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def read_token(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as f:
            token = f.read().strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise RemoteError(f"{path}: cannot read the token file ({exc})") from None
    if not token:
        raise RemoteError(f"{path}: the token file is empty")
    return token


def connect(address: str, fingerprint: str, timeout: float = CONNECT_TIMEOUT_S) -> TlsStream:
    """A TLS connection to the engine whose certificate has `fingerprint`, else RemoteError."""
    host, port = parse_address(address)
    pinned = parse_fingerprint(fingerprint)
    try:
        raw = socket.create_connection((host, port), timeout=timeout)
    except OSError as exc:
        why = exc.strerror or str(exc) or type(exc).__name__
        raise RemoteError(f"cannot reach the engine at {address} ({why})") from None
    # No CA and no host name: the pin below is the whole check, done before the token leaves.
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    try:
        sock = TlsStream.client(raw, context, server_hostname=host)
    except (OSError, ssl.SSLError) as exc:
        raw.close()
        raise RemoteError(
            f"no TLS with the engine at {address} ({exc}); is it started with --tls?"
        ) from None
    seen = hashlib.sha256(sock.getpeercert(binary_form=True) or b"").hexdigest()
    if not hmac.compare_digest(seen, pinned):
        sock.close()
        raise RemoteError(
            f"the engine at {address} shows certificate SHA256:{seen}, not the pinned "
            f"SHA256:{pinned}; nothing was sent (a different engine, or someone in between)"
        )
    sock.settimeout(None)
    return sock


class RemoteEngineClient(EngineClient):
    """EngineClient for an engine on another machine: the same jobs, but over one TLS
    connection; buffers are uploaded and results downloaded through it. Closing the
    connection cancels the engine's jobs for this client; it never stops the engine."""

    remote = True

    def __init__(self, address: str, token: str, fingerprint: str) -> None:
        super().__init__()
        parse_address(address)
        parse_fingerprint(fingerprint)
        self.address, self._token, self._fingerprint = address, token, fingerprint
        self._sock: TlsStream | None = None
        self._alive = False
        self._refusal = ""  # the engine's last job-less error: "wrong token", "too many…"

    # ---------------------------------------------------------------- connection
    def start(self) -> None:
        if self.running:
            return
        sock = connect(self.address, self._fingerprint)
        # Each connection has its own queue: a reader of an earlier connection, still
        # finishing after a kill, must not put its EOF where the new one's events go.
        events: queue.Queue = queue.Queue()
        self._events = events
        self._sock, self._alive, self._refusal = sock, True, ""
        threading.Thread(target=self._read_socket, args=(sock, events), daemon=True).start()
        self._send({"type": "hello", "token": self._token})

    def _read_socket(self, sock: TlsStream, events: queue.Queue) -> None:
        try:
            for raw in sock.makefile("rb"):
                try:
                    event = json.loads(raw)
                    if not isinstance(event, dict) or "type" not in event:
                        raise ValueError
                except ValueError:
                    events.put(("garbage", raw.decode("utf-8", "replace")[:120]))
                    continue
                if event.get("type") == "error" and event.get("id") is None:
                    self._refusal = str(event.get("message") or "")
                events.put(("event", event))
        except (OSError, ValueError):
            pass
        if self._sock is sock:
            self._alive = False
        events.put(("eof", None))

    @property
    def running(self) -> bool:
        return self._sock is not None and self._alive

    @property
    def pid(self) -> None:
        return None

    def _send(self, request: dict) -> None:
        sock = self._sock
        if sock is None:
            raise EngineError("not connected to the remote engine")
        data = (json.dumps(request) + "\n").encode("utf-8")
        try:
            with self._write_lock:
                sock.sendall(data)
        except (OSError, ValueError):
            raise self._died() from None

    def _died(self) -> EngineError:
        self.kill()
        if self._refusal == "wrong token":
            return RemoteError(f"the engine at {self.address} refused the token (wrong token)")
        if self._refusal:
            return RemoteError(f"the engine at {self.address}: {self._refusal}")
        return RemoteError(f"the connection to the engine at {self.address} was lost")

    def kill(self) -> None:
        sock, self._sock = self._sock, None
        self._alive = False
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.kill()  # never `shutdown`: that would stop the engine for everyone

    def ping(self, timeout: float = START_TIMEOUT_S) -> dict:
        self.pong = super().ping(timeout)
        return self.pong

    def dialog(self, image, params, mask=None, depth=None, cancel_event=None, blur=None,
               context=None):  # fmt: skip
        """The engine's dialog belongs on this screen, not the engine's: a local engine (the
        configured command) shows it, with previews rendered there; renders go remote.
        Without a local engine, EngineError: the host falls back to its own dialog."""
        from .config import EngineNotConfigured, engine_command

        try:
            command = engine_command()
        except EngineNotConfigured:
            raise EngineError("no local engine to show the dialog") from None
        pong = getattr(self, "pong", None) or self.ping()
        context = dict(context or {})
        where = f"Renders on the {engine_label(pong, remote=True)} engine at {self.address}."
        context["note"] = f"{context.get('note') or ''} {where}".strip()
        with EngineClient(command) as local:
            return local.dialog(image, params, mask, depth, cancel_event, blur, context)

    # ------------------------------------------------------------------- files
    def _put_buffer(self, job_id: str, folder: str, name: str, image) -> None:
        self.upload(job_id, folder, name, rawbuffer.to_bytes(image))

    def _put_file(self, job_id: str, folder: str, name: str, path: str) -> None:
        try:
            with open(path, "rb") as f:
                data = f.read()
        except OSError as exc:
            raise EngineError(f"cannot read the photo {path} ({exc.strerror or exc})") from None
        self.upload(job_id, folder, name, data)

    def _read_result(self, job_id: str, folder: str, name: str):
        try:
            return rawbuffer.from_bytes(self.download(job_id, folder, name))
        except rawbuffer.BufferError as exc:
            raise EngineError(f"cannot read the engine's result: {exc}") from None

    def _remove_folder(self, folder: str) -> None:
        pass  # the folder is on the engine's disk; close_job removes it there

    def upload(self, job_id: str, folder: str, name: str, data: bytes) -> None:
        """Store `data` as `name` in the engine's job folder; returns once the engine has
        checked its SHA-256."""
        total, sha = len(data), hashlib.sha256(data).hexdigest()
        view = memoryview(data)
        for offset in range(0, max(total, 1), CHUNK_BYTES):
            chunk = base64.b64encode(view[offset : offset + CHUNK_BYTES]).decode("ascii")
            self._send(
                {
                    "type": "put",
                    "id": job_id,
                    "job_dir": folder,
                    "name": name,
                    "offset": offset,
                    "size": total,
                    "sha256": sha,
                    "data": chunk,
                }
            )
        self._expect(job_id, "stored")

    def download(self, job_id: str, folder: str, name: str) -> bytes:
        """The bytes of `name` in the engine's job folder, their SHA-256 checked."""
        self._send({"type": "get", "id": job_id, "job_dir": folder, "name": name})
        parts: list[bytes] = []
        digest, size = hashlib.sha256(), 0
        while True:
            event = self._expect(job_id, "chunk", "file_end")
            if event["type"] == "file_end":
                break
            if event.get("offset") != size:
                raise RemoteError("the engine's result arrived out of order")
            part = base64.b64decode(str(event.get("data", "")))
            digest.update(part)
            parts.append(part)
            size += len(part)
        if event.get("size") != size or event.get("sha256") != digest.hexdigest():
            raise RemoteError("the engine's result was damaged in transit (checksum mismatch)")
        return b"".join(parts)

    def _expect(self, job_id: str, *kinds: str) -> dict:
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            event = self._next_event(0.1)
            if event is None:
                continue
            deadline = time.monotonic() + START_TIMEOUT_S  # anything at all: it is alive
            if event.get("id") != job_id:
                continue
            if event.get("type") in kinds:
                return event
            if event.get("type") == "error":
                raise EngineError(str(event.get("message") or "the engine reported an error"))
        self.kill()
        raise RemoteError(f"the engine at {self.address} stopped answering")


def make_client() -> EngineClient:
    """The engine the installer configured: a remote one (config.remote_engine()) or a
    child process started from the configured command."""
    from . import client  # looked up when called: the hosts' tests stand in for it
    from .config import remote_engine

    remote = remote_engine()
    if remote is None:
        return client.EngineClient()
    return RemoteEngineClient(
        remote["address"], read_token(remote["token_file"]), remote["fingerprint"]
    )

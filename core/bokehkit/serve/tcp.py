"""`bokehkit serve --tcp`: many clients at once, each authenticated by a token.

Each connection gets its own thread: it has `hello_timeout_s` in all (not per read) to send
its hello line, of at most `protocol.MAX_HELLO_BYTES`, so a client that trickles bytes or
never speaks holds nothing but its own thread. Authenticated clients each get a `Session`;
their renders take turns (one at a time: memory), and dialogs run on the main thread, which
Qt requires. A client's `shutdown` stops the whole server.
"""

from __future__ import annotations

import errno
import hmac
import io
import logging
import queue
import socket
import ssl
import sys
import threading
import time

from bokehkit_plugin.tlsstream import TlsStream

from ..errors import BokehkitError
from . import jobdirs, lifetime, protocol
from .jobdirs import JobFolders

log = logging.getLogger("bokehkit.server")

#: Connections waiting to be accepted by the kernel.
BACKLOG = 128
#: Connections served at once (authenticating or authenticated); more are turned away.
MAX_CLIENTS = 64
WRONG_TOKEN = b'{"type": "error", "id": null, "message": "wrong token"}\n'
TOO_MANY = b'{"type": "error", "id": null, "message": "too many clients; try again later"}\n'
#: Jobs waiting or running across all clients; more are refused with "queue is full".
MAX_QUEUED_JOBS = 32


class FairTurns:
    """Renders take turns in the order they asked (a ticket lock). Each client's jobs run
    one after another on its own thread, so a client waits for at most one job of every
    other client: a client with fifty photos queued cannot starve one with a preview."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._next_ticket = 0
        self._serving = 0

    def __enter__(self) -> FairTurns:
        with self._cond:
            ticket = self._next_ticket
            self._next_ticket += 1
            self._cond.wait_for(lambda: self._serving == ticket)
        return self

    def __exit__(self, *exc) -> None:
        with self._cond:
            self._serving += 1
            self._cond.notify_all()


class JobAdmission:
    """A count of jobs queued or running across all clients, refused beyond `limit` when a
    job is asked for (before anything of it is read or decoded)."""

    def __init__(self, limit: int = MAX_QUEUED_JOBS) -> None:
        self._limit = limit
        self._count = 0
        self._lock = threading.Lock()

    def admit(self) -> bool:
        with self._lock:
            if self._count >= self._limit:
                return False
            self._count += 1
            return True

    def release(self) -> None:
        with self._lock:
            self._count = max(0, self._count - 1)


class _DeadlineReader(io.RawIOBase):
    """A socket's input whose reads fail once `deadline` (time.monotonic) has passed: the
    hello's limit is on the whole line, however slowly it comes."""

    def __init__(self, conn: socket.socket) -> None:
        self._conn = conn
        self.deadline: float | None = None

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        if self.deadline is not None:
            remaining = self.deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("the hello took too long")
            self._conn.settimeout(remaining)
        else:
            self._conn.settimeout(None)
        return self._conn.recv_into(buffer)


class TcpServer:
    def __init__(
        self,
        host: str,
        port: int,
        token: str,
        hello_timeout_s: float = 10.0,
        job_base: str | None = None,
        max_clients: int = MAX_CLIENTS,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self._token = host, port, token.encode()
        self.hello_timeout_s = hello_timeout_s
        self.job_base = job_base
        self.max_clients = max_clients
        self._render_turn = FairTurns()
        self._admission = JobAdmission()
        self._tls = tls
        self._main_calls: queue.Queue = queue.Queue()
        self._stop = threading.Event()
        self._clients = threading.BoundedSemaphore(max_clients)
        self.address: tuple[str, int] | None = None

    # ----------------------------------------------------------------- the listener
    def _listen(self) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        where = f"--tcp {self.host}:{self.port}"
        try:
            server = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:
            raise BokehkitError(f"{where}: cannot open a socket ({exc.strerror or exc})") from None
        try:
            server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            server.bind((self.host, self.port))
            server.listen(BACKLOG)
        except (OSError, OverflowError) as exc:
            server.close()
            code = getattr(exc, "errno", None)
            if code == errno.EADDRINUSE:
                why = "the port is in use (another engine or program listens on it)"
            elif code in (errno.EACCES, errno.EPERM):
                why = "not allowed (ports below 1024 need administrator rights)"
            elif code == errno.EADDRNOTAVAIL or isinstance(exc, socket.gaierror):
                why = "this machine has no such address"
            else:
                why = getattr(exc, "strerror", None) or str(exc)
            raise BokehkitError(f"{where}: cannot listen: {why}") from None
        return server

    def serve(self) -> int:
        server = self._listen()
        self.address = server.getsockname()[:2]
        sys.stderr.write(f"bokehkit engine listening on {self.address[0]}:{self.address[1]}\n")
        sys.stderr.flush()
        accept = threading.Thread(target=self._accept_loop, args=(server,), daemon=True)
        accept.start()
        try:
            while not self._stop.is_set():  # the main thread: dialogs, which Qt wants here
                try:
                    fn, box, done = self._main_calls.get(timeout=0.2)
                except queue.Empty:
                    continue
                try:
                    box.append((True, fn()))
                except BaseException as exc:  # noqa: BLE001 - handed to the caller
                    box.append((False, exc))
                done.set()
        finally:
            server.close()
        return 0

    def stop(self) -> None:
        self._stop.set()

    def call_on_main(self, fn):
        """Run fn() on the main thread and return (or raise) what it did."""
        box: list = []
        done = threading.Event()
        self._main_calls.put((fn, box, done))
        done.wait()
        ok, value = box[0]
        if ok:
            return value
        raise value

    def _accept_loop(self, server: socket.socket) -> None:
        while not self._stop.is_set():
            try:
                conn, peer = server.accept()
            except OSError:
                if self._stop.is_set():
                    return
                time.sleep(0.05)  # e.g. out of file descriptors: try again shortly
                continue
            try:  # a client whose machine vanished is noticed, and its jobs cancelled
                conn.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
            except OSError:
                pass
            if not self._clients.acquire(blocking=False):
                threading.Thread(target=_refuse, args=(conn, TOO_MANY), daemon=True).start()
                continue
            threading.Thread(
                target=self._client, args=(conn, peer), name="bokehkit-client", daemon=True
            ).start()

    # ------------------------------------------------------------------ one client
    def _client(self, conn: socket.socket, peer) -> None:
        hello_deadline = time.monotonic() + self.hello_timeout_s
        if self._tls is not None:
            try:  # the handshake counts against the hello's time
                conn = TlsStream.server(conn, self._tls, hello_deadline)
            except (OSError, ssl.SSLError) as exc:
                log.warning("TLS handshake with %s failed: %s", peer[0], exc)
                conn.close()
                self._clients.release()
                return
        raw = _DeadlineReader(conn)
        reader = io.BufferedReader(raw, 1 << 16)
        writer = conn.makefile("wb")
        try:
            raw.deadline = hello_deadline
            if not self._hello_ok(reader):
                log.warning("rejected a client from %s: wrong or missing token", peer[0])
                _refuse(conn, WRONG_TOKEN, writer)
                return
            raw.deadline = None
            from .server import Session

            session = Session(
                reader,
                writer,
                JobFolders(self.job_base),
                self._render_turn,
                self.call_on_main,
                admission=self._admission,
            )
            session.run()
            if session.shutdown_requested:
                self.stop()
        except Exception:  # noqa: BLE001 - one client's failure is not the server's
            log.exception("client %s failed", peer[0])
        finally:
            for stream in (writer, reader):
                try:
                    stream.close()
                except OSError:
                    pass
            conn.close()
            self._clients.release()

    def _hello_ok(self, reader: io.BufferedReader) -> bool:
        try:
            line = protocol.read_line(reader, protocol.MAX_HELLO_BYTES)
            hello = protocol.parse_request(line or b"null")
        except (protocol.RequestError, OSError, ValueError):
            return False
        given = hello.get("token")
        return (
            hello.get("type") == "hello"
            and isinstance(given, str)
            and hmac.compare_digest(given.encode("utf-8", "replace"), self._token)
        )


def _refuse(conn: socket.socket, line: bytes, writer=None) -> None:
    """Say why and close gracefully: closing with the client's later lines still unread
    would send a reset that can destroy the line before the client reads it."""
    try:
        conn.settimeout(1.0)
        if writer is not None:
            writer.write(line)
            writer.flush()
        else:
            conn.sendall(line)
        conn.shutdown(socket.SHUT_WR)
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline and conn.recv(65536):  # drain until it closes
            pass
    except OSError:
        pass
    finally:
        if writer is None:
            conn.close()


def serve_tcp(
    host: str,
    port: int,
    token: str,
    hello_timeout_s: float = 10.0,
    job_base: str | None = None,
    tls: bool = False,
) -> int:
    """Serve clients over TCP (several at once, renders in turn); each must open with
    {"type":"hello","token":…} within `hello_timeout_s` (docs/protocol.md). With `tls`,
    over TLS with the engine's self-signed certificate, whose fingerprint is printed."""
    context = None
    if tls:
        from . import tls as engine_tls

        cert, key = engine_tls.ensure_certificate()
        context = engine_tls.server_context(cert, key)
        fingerprint = engine_tls.certificate_fingerprint(cert)
        sys.stderr.write(f"bokehkit engine certificate {fingerprint}\n")
        sys.stderr.write(f"  (clients pin it: --fingerprint {fingerprint})\n")
    elif host not in ("127.0.0.1", "::1", "localhost"):
        sys.stderr.write("warning: without --tls the token and pixels travel in clear text\n")
    lifetime.install(job_base, watch_parent=False)
    try:
        server = TcpServer(host, port, token, hello_timeout_s, job_base, tls=context)
        return server.serve()
    finally:
        jobdirs.remove_all()

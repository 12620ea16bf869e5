"""A TLS connection that one thread may read while another writes (standard library only).

An `ssl.SSLSocket` is not safe for that: CPython lets go of the GIL inside OpenSSL, and an
SSL_read running beside an SSL_write on the same connection corrupts its state ("bad record
mac", a lost hello, a reader that never wakes). Both ends of the remote engine read in one
thread and write from others, so here OpenSSL only ever sees memory buffers, behind a lock
that is never held while waiting on the network, and the socket carries the bytes.
"""

from __future__ import annotations

import io
import socket
import ssl
import threading
import time

RECV_BYTES = 1 << 16
#: A write to a connection the other side has closed is an error, never a SIGPIPE: the
#: hosts' embedded Pythons may leave that signal's default, which kills the editor.
_NO_SIGNAL = getattr(socket, "MSG_NOSIGNAL", 0)


class TlsStream:
    """The TLS side of a connected socket: `recv`, `recv_into` and `sendall` as on a socket,
    safe for one reader and any number of writers at once."""

    def __init__(self, sock: socket.socket, tls: ssl.SSLObject, incoming: ssl.MemoryBIO,
                 outgoing: ssl.MemoryBIO, deadline: float | None = None) -> None:  # fmt: skip
        self._sock, self._tls = sock, tls
        self._in, self._out = incoming, outgoing
        self._tls_lock = threading.Lock()  # the SSL object and its buffers; held briefly
        self._send_lock = threading.Lock()  # one thread at a time puts records on the wire
        self._recv_lock = threading.Lock()
        self._handshake(deadline)

    @classmethod
    def client(cls, sock: socket.socket, context: ssl.SSLContext,
               server_hostname: str | None = None) -> TlsStream:  # fmt: skip
        """Handshake as the client on `sock` (its timeout applies); ssl.SSLError or OSError."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=False,
                               server_hostname=server_hostname)  # fmt: skip
        return cls(sock, tls, incoming, outgoing)

    @classmethod
    def server(cls, sock: socket.socket, context: ssl.SSLContext,
               deadline: float | None = None) -> TlsStream:  # fmt: skip
        """Handshake as the server on `sock`, finished by `deadline` (time.monotonic) if
        given, else within the socket's timeout per read; ssl.SSLError or OSError."""
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        tls = context.wrap_bio(incoming, outgoing, server_side=True)
        return cls(sock, tls, incoming, outgoing, deadline)

    def _handshake(self, deadline: float | None) -> None:
        while True:
            if deadline is not None:  # a whole-handshake limit: a byte every few seconds
                remaining = deadline - time.monotonic()  # must not hold a slot for ever
                if remaining <= 0:
                    raise TimeoutError("the TLS handshake took too long")
                self._sock.settimeout(remaining)
            try:
                self._tls.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            self._flush(wait=True)
            if done:
                return
            data = self._sock.recv(RECV_BYTES)
            if not data:
                raise ssl.SSLEOFError("the other side closed the connection during the handshake")
            self._in.write(data)

    # ----------------------------------------------------------------------- reading
    def recv(self, size: int = RECV_BYTES) -> bytes:
        """Up to `size` bytes of plaintext; b"" once the other side has closed."""
        with self._recv_lock:
            while True:
                with self._tls_lock:
                    try:
                        data = self._tls.read(size)
                    except ssl.SSLWantReadError:
                        data = None
                    except (ssl.SSLZeroReturnError, ssl.SSLEOFError):
                        data = b""
                    # e.g. a key update asks for one; nothing goes back on a closed line
                    answer = self._out.pending > 0 and data != b""
                if answer:
                    try:
                        self._flush(wait=False)
                    except OSError:
                        pass  # a closed line: what was read still counts; writers hear of it
                if data is not None:
                    return data
                wire = self._sock.recv(RECV_BYTES)
                with self._tls_lock:
                    if wire:
                        self._in.write(wire)
                    else:
                        self._in.write_eof()

    def recv_into(self, buffer) -> int:
        view = memoryview(buffer).cast("B")
        data = self.recv(len(view))
        view[: len(data)] = data
        return len(data)

    # ----------------------------------------------------------------------- writing
    def sendall(self, data) -> None:
        with self._tls_lock:
            self._tls.write(data)
        self._flush(wait=True)

    def _flush(self, wait: bool) -> None:
        """Send what OpenSSL has produced, in the order it produced it. A reader never waits
        here (`wait=False`): if a writer is sending, that writer sends the reader's records
        too, so a full send buffer on both ends cannot stop both readers."""
        while self._send_lock.acquire(blocking=wait):
            try:
                while True:
                    with self._tls_lock:
                        records = self._out.read()
                    if not records:
                        break
                    self._sock.sendall(records, _NO_SIGNAL)
            finally:
                self._send_lock.release()
            with self._tls_lock:  # added after our last look, by a reader that did not wait
                if not self._out.pending:
                    return
            wait = False

    # ------------------------------------------------------------------------ socket
    def getpeercert(self, binary_form: bool = False):
        return self._tls.getpeercert(binary_form)

    def settimeout(self, seconds: float | None) -> None:
        self._sock.settimeout(seconds)

    def setsockopt(self, *args) -> None:
        self._sock.setsockopt(*args)

    def fileno(self) -> int:
        return self._sock.fileno()

    def shutdown(self, how: int) -> None:
        self._sock.shutdown(how)

    def close(self) -> None:
        self._sock.close()

    def makefile(self, mode: str = "rb"):
        """A buffered binary file over the stream ("rb" or "wb"), like socket.makefile."""
        raw = _StreamIO(self)
        if mode == "rb":
            return io.BufferedReader(raw, RECV_BYTES)
        if mode == "wb":
            return io.BufferedWriter(raw, RECV_BYTES)
        raise ValueError(f"makefile mode must be 'rb' or 'wb', not {mode!r}")

    def __enter__(self) -> TlsStream:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class _StreamIO(io.RawIOBase):
    def __init__(self, stream: TlsStream) -> None:
        self._stream = stream

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        return self._stream.recv_into(buffer)

    def write(self, data) -> int:
        self._stream.sendall(data)
        return len(data)

"""The wire format of `bokehkit serve` (docs/protocol.md): one JSON object per line.

Every line a client sends goes through `read_line` (a bounded length: a longer line is
skipped to its end without being kept) and `parse_request` (any malformation, deep nesting
included, is a `RequestError`, never an exception that could end the reader); every event
goes out through `encode_event`, which cannot fail on what a client sent (a lone surrogate
in an id is escaped, not an encoding error).
"""

from __future__ import annotations

import json
import os
from typing import BinaryIO

#: The longest request line: inline buffers (base64) of a 48 MP 8-bit RGBA image fit; larger
#: images go through the job folder. $BOKEHKIT_MAX_REQUEST_MB changes it.
DEFAULT_MAX_REQUEST_BYTES = 256 << 20
ENV_MAX_REQUEST_MB = "BOKEHKIT_MAX_REQUEST_MB"
#: The longest hello line a TCP client may send before it is authenticated.
MAX_HELLO_BYTES = 4096
#: Request ids are short strings or integers.
MAX_ID_CHARS = 200
_CHUNK = 1 << 16


class RequestError(Exception):
    """A request line that cannot be served; the message is the error event's."""

    def __init__(self, message: str, request_id: object = None) -> None:
        super().__init__(message)
        self.request_id = request_id


class LineTooLong(RequestError):
    pass


def max_request_bytes() -> int:
    raw = os.environ.get(ENV_MAX_REQUEST_MB, "").strip()
    try:
        value = int(float(raw) * (1 << 20)) if raw else DEFAULT_MAX_REQUEST_BYTES
    except ValueError:
        value = DEFAULT_MAX_REQUEST_BYTES
    return max(value, MAX_HELLO_BYTES)


def read_line(stream: BinaryIO, limit: int) -> bytes | None:
    """The next line (with its newline; the last may lack one), None at EOF. A line longer
    than `limit` is read to its end in chunks, dropped, and reported as LineTooLong."""
    line = stream.readline(limit + 1)
    if not line:
        return None
    if len(line) <= limit or line.endswith(b"\n"):  # at most `limit` bytes before the newline
        return line
    while True:  # drop the rest of the line without keeping it
        rest = stream.readline(_CHUNK)
        if not rest or rest.endswith(b"\n"):
            break
    raise LineTooLong(f"request line longer than {limit} bytes: ignored")


def parse_request(raw: bytes) -> dict:
    """A request line as a dict with a valid id; RequestError otherwise."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise RequestError("request is not UTF-8 text") from None
    try:
        request = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: nesting too deep to parse
        raise RequestError("request is not JSON") from None
    if not isinstance(request, dict):
        raise RequestError("request is not a JSON object")
    check_id(request)
    return request


def check_id(request: dict) -> None:
    """An id, when given, is an integer or a short string; RequestError otherwise."""
    value = request.get("id")
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return
    if isinstance(value, str) and len(value) <= MAX_ID_CHARS:
        return
    raise RequestError(f"request id must be a string of up to {MAX_ID_CHARS} characters")


def encode_event(event: dict) -> bytes:
    """One event line. Text that is not valid Unicode (a lone surrogate a client sent in an
    id) is written as JSON escapes instead of failing."""
    try:
        return (json.dumps(event, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(event, ensure_ascii=True) + "\n").encode("ascii")

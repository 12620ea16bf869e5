"""WebP: whether a file is lossless (VP8L), so the result is written the same way."""

from __future__ import annotations

import struct
from pathlib import Path


def _webp_is_lossless(p: Path) -> bool | None:
    with open(p, "rb") as f:
        data = f.read(1 << 16)
    pos = 12
    while pos + 8 <= len(data):
        tag = data[pos : pos + 4]
        (size,) = struct.unpack_from("<I", data, pos + 4)
        if tag == b"VP8L":
            return True
        if tag == b"VP8 ":
            return False
        pos += 8 + size + (size & 1)
    return None

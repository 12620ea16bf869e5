"""Fuzzing (Hypothesis) of everything that reads what others wrote: the protocol parser,
BKRAW buffers, the image, depth and mask readers, and the XMP / MPF / HEIC depth readers.

Each case may only succeed or fail with one BokehkitError (RequestError for the protocol):
never another exception, a hang or a memory blow-up. Bounds: every case within 1 s
(Hypothesis' deadline) and 500 MB (the address space is capped at what the process had plus
500 MB while a case runs, so an allocation past it fails the case, as does an error that
mentions memory). The pixel limit is set to 4 MP here, as a user may set it: the readers
must respect it whatever a file declares.

The cases are derived deterministically (CI reruns the same ones); BOKEHKIT_FUZZ_EXAMPLES
sets how many per target (default 120), BOKEHKIT_FUZZ_SEED a different derivation.
"""

from __future__ import annotations

import io
import json
import os
import resource
import struct
import zlib
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from PIL import Image

from bokehkit import limits
from bokehkit.errors import BokehkitError
from bokehkit.io import rawbuffer as rb
from bokehkit.serve import protocol

EXAMPLES = int(os.environ.get("BOKEHKIT_FUZZ_EXAMPLES", "120"))
CASE_MEMORY = 500 << 20
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=1000,  # ms per case
    derandomize=not os.environ.get("BOKEHKIT_FUZZ_SEED"),
    database=None,
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],  # fmt: skip
)


@pytest.fixture(autouse=True)
def _small_pixel_limit(monkeypatch):
    monkeypatch.setenv(limits.ENV_MAX_PIXELS, "4000000")


def _address_space() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


@contextmanager
def bounded_memory():
    """At most CASE_MEMORY more address space while the case runs."""
    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    cap = _address_space() + CASE_MEMORY
    resource.setrlimit(resource.RLIMIT_AS, (cap if hard < 0 else min(cap, hard), hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))


def only_user_errors(fn, *args):
    """Run a reader; it may return or raise BokehkitError, nothing else, and never run out
    of memory (which readers turn into a message: that message fails the case too)."""
    with bounded_memory():
        try:
            out = fn(*args)
        except BokehkitError as exc:
            message = str(exc)
            assert not _out_of_memory(message), message
            assert "\n" not in message.strip(), message
            return None
    notes = out[1] if isinstance(out, tuple) and len(out) == 2 else []
    for note in notes if isinstance(notes, list) else []:
        assert not _out_of_memory(note), note
    return out


def _out_of_memory(text: str) -> bool:
    """What readers say when an allocation failed (a decoder's own "security limit" refusal
    of a declared size is a good outcome, not this)."""
    return any(
        words in text
        for words in ("not enough memory", "out of memory", "MemoryError", "Unable to allocate")
    )


def mutations(seed: bytes):
    """Strategies for bytes near a valid file: flipped, overwritten, cut, spliced."""
    n = len(seed)

    def flip(data, at, value):
        b = bytearray(data)
        for i, v in zip(at, value, strict=False):
            b[i % n] = v
        return bytes(b)

    flips = st.builds(
        flip, st.just(seed), st.lists(st.integers(0, n - 1), min_size=1, max_size=8),
        st.lists(st.integers(0, 255), min_size=1, max_size=8),
    )  # fmt: skip
    cuts = st.integers(0, n).map(lambda k: seed[:k])
    inserts = st.tuples(st.integers(0, n), st.binary(max_size=64)).map(
        lambda t: seed[: t[0]] + t[1] + seed[t[0] :]
    )
    # Big-endian numbers rewritten anywhere: sizes, lengths, offsets.
    numbers = st.tuples(
        st.integers(0, max(0, n - 4)), st.sampled_from([0, 1, 0x7FFF, 0xFFFF, 2**31, 2**32 - 1])
    ).map(lambda t: seed[: t[0]] + struct.pack(">I", t[1]) + seed[t[0] + 4 :])
    return st.one_of(flips, cuts, inserts, numbers)


def _encoded(fmt: str, mode: str = "RGB", size=(24, 16), **kw) -> bytes:
    rng = np.random.default_rng(0)
    channels = len(mode) if mode != "L" else 1
    arr = rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(arr[..., 0] if channels == 1 else arr, mode).save(buf, fmt, **kw)
    return buf.getvalue()


def _tiff(**kw) -> bytes:
    import tifffile

    buf = io.BytesIO()
    arr = np.random.default_rng(1).integers(0, 65535, (16, 24, 3), dtype=np.uint16)
    tifffile.imwrite(buf, arr, photometric="rgb", **kw)
    return buf.getvalue()


# ------------------------------------------------------------------------ the protocol

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
requests = st.fixed_dictionaries(
    {"type": st.sampled_from(["ping", "render", "cancel", "dialog", "open_job", "x"])},
    optional={"id": json_values, "job_dir": json_values, "image": json_values,
              "params": json_values, "inline": json_values},
)  # fmt: skip


@FUZZ
@given(st.one_of(st.binary(max_size=2000), requests.map(lambda r: json.dumps(r).encode()),
                 st.integers(1, 5000).map(lambda n: b"[" * n + b"]" * (n % 3))))  # fmt: skip
def test_protocol_lines(raw):
    try:
        request = protocol.parse_request(raw)
    except protocol.RequestError as exc:
        assert str(exc)
        return
    assert isinstance(request, dict)
    assert protocol.encode_event({"type": "error", "id": request.get("id"), "message": "m"})


@FUZZ
@given(st.lists(st.binary(max_size=300), max_size=20), st.integers(1, 200))
def test_protocol_line_reader(chunks, limit):
    stream = io.BufferedReader(io.BytesIO(b"\n".join(chunks)), 64)
    for _ in range(len(chunks) + 2):
        try:
            line = protocol.read_line(stream, limit)
        except protocol.LineTooLong:
            continue
        if line is None:
            return
        assert len(line.rstrip(b"\n")) <= limit


# ------------------------------------------------------------------------------ BKRAW

headers = st.fixed_dictionaries(
    {"width": st.one_of(st.integers(-2, 40), st.integers(0, 2**40), st.text(max_size=3)),
     "height": st.one_of(st.integers(-2, 40), st.integers(0, 2**40)),
     "channels": st.sampled_from(["RGBA", "RGB", "Y", "YA", "CMYK", ""]),
     "dtype": st.sampled_from(["uint8", "uint16", "float16", "float32", "int64", "O"])},
    optional={"order": st.sampled_from(["RGBA", "BGRA", "X"]),
              "transfer": st.sampled_from(["linear", "srgb", 3]),
              "byteorder": st.sampled_from(["little", "big", None])},
)  # fmt: skip


@FUZZ
@given(st.one_of(headers.map(lambda h: json.dumps(h).encode()), st.binary(max_size=200)),
       st.binary(max_size=4096))  # fmt: skip
def test_bkraw_buffers(header, pixels):
    data = rb.MAGIC + header + b"\n" + pixels
    buf = only_user_errors(rb.from_bytes, data)
    if buf is not None:
        image = rb.buffer_to_image(buf)
        assert image.linear_rgb.shape[:2] == buf.pixels.shape[:2]


@FUZZ
@given(mutations(rb.to_bytes(rb.RawBuffer(np.zeros((6, 8, 4), np.uint16), "RGBA", "BGRA"))))
def test_bkraw_files(tmp_path_factory, data):
    path = tmp_path_factory.mktemp("bk") / "b.bkraw"
    path.write_bytes(data)
    only_user_errors(rb.read_buffer, path)


# ------------------------------------------------------------------- images and maps

SEEDS = {
    "png": _encoded("PNG"),
    "png16": None,  # filled below: a 16-bit PNG through our own writer
    "jpg": _encoded("JPEG", quality=90),
    "webp": _encoded("WEBP", lossless=True),
    "tif": _tiff(compression="zlib"),
    "gif-as-png": _encoded("GIF", "L"),
}


def _png16() -> bytes:
    rows = np.random.default_rng(2).integers(0, 65535, (12, 10 * 3), dtype=np.uint16).astype(">u2")
    raw = b"".join(b"\0" + r.tobytes() for r in rows)

    def chunk(tag, body):
        return struct.pack(">I", len(body)) + tag + body + struct.pack(">I", zlib.crc32(tag + body))

    ihdr = struct.pack(">IIBBBBB", 10, 12, 16, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))  # fmt: skip


SEEDS["png16"] = _png16()
images = st.one_of(*(mutations(seed) for seed in SEEDS.values()))


@FUZZ
@given(images)
def test_image_reader(tmp_path_factory, data):
    from bokehkit.io.image import load_image

    path = tmp_path_factory.mktemp("img") / "photo"
    path.write_bytes(data)
    image = only_user_errors(load_image, path)
    if image is not None:
        assert image.linear_rgb.shape[2] == 3 and np.isfinite(image.linear_rgb).all()


NPY = io.BytesIO()
np.save(NPY, np.linspace(0, 1, 48, dtype=np.float32).reshape(6, 8))


@FUZZ
@given(st.sampled_from([".png", ".tif", ".npy", ".jpg"]), st.data())
def test_depth_and_mask_readers(tmp_path_factory, suffix, data):
    from bokehkit.scene.depth import load_depth
    from bokehkit.scene.focus import load_mask

    seed = {".png": SEEDS["png16"], ".tif": SEEDS["tif"], ".npy": NPY.getvalue(),
            ".jpg": SEEDS["jpg"]}[suffix]  # fmt: skip
    path = tmp_path_factory.mktemp("map") / f"map{suffix}"
    path.write_bytes(data.draw(mutations(seed)))
    only_user_errors(load_depth, path)
    only_user_errors(load_mask, path, 10, 12)


# ------------------------------------------------------------- phone depth: XMP, MPF, HEIC


def _phone_seeds() -> list[bytes]:
    import phone_depth_files as pd

    z = pd.scene_depth(24, 16)
    depth_png = pd.image_bytes(pd.encode_google(z, "RangeInverse"))
    apple = pd.apple_portrait_jpeg(
        24, 16, [(pd.matte(12, 8), pd.APPLE_MATTE_XMP),
                 (pd.disparity_codes(pd.scene_depth(12, 8)), pd.apple_depth_xmp())],
    )  # fmt: skip
    return [
        pd.gdepth_jpeg(24, 16, depth_png),
        pd.dynamic_depth_jpeg(24, 16, depth_png),
        apple,
    ]


PHONE = _phone_seeds()


@FUZZ
@given(st.one_of(*(mutations(seed) for seed in PHONE)))
def test_xmp_mpf_depth_readers(tmp_path_factory, data):
    from bokehkit.scene.phone_depth import read_embedded_depth

    path = tmp_path_factory.mktemp("phone") / "photo.jpg"
    path.write_bytes(data)
    out = only_user_errors(read_embedded_depth, path, 24, 16)
    if out is not None and out[0] is not None:
        assert out[0].inverse_depth.shape == (16, 24)
        assert np.isfinite(out[0].inverse_depth).all()


@FUZZ
@given(st.binary(max_size=3000))
def test_xmp_packets(packet):
    from bokehkit.scene.phone_depth import XMP_EXT_HEADER, XMP_HEADER, _jpeg_xmp

    jpeg = SEEDS["jpg"]
    segment = (XMP_HEADER if packet[:1] < b"\x80" else XMP_EXT_HEADER) + packet
    data = jpeg[:2] + b"\xff\xe1" + (len(segment) + 2).to_bytes(2, "big") + segment + jpeg[2:]
    only_user_errors(_jpeg_xmp, data)


def _heic_seed() -> bytes | None:
    try:
        import pillow_heif
    except ImportError:
        return None
    pillow_heif.register_heif_opener()
    return _encoded("HEIF", size=(32, 24), quality=60)


HEIC = _heic_seed()


@pytest.mark.skipif(HEIC is None, reason="pillow-heif is not installed")
@FUZZ
@given(mutations(HEIC or b"\0"))
def test_heic_depth_reader(tmp_path_factory, data):
    from bokehkit.scene.phone_depth import read_embedded_depth

    path = tmp_path_factory.mktemp("heic") / "photo.heic"
    path.write_bytes(data)
    only_user_errors(read_embedded_depth, path, 32, 24)


@FUZZ
@given(st.fixed_dictionaries({}, optional={
    "representation_type": st.one_of(st.integers(-1, 4), st.text(max_size=3)),
    "z_near": st.one_of(st.floats(), st.integers(), st.none()),
    "z_far": st.one_of(st.floats(), st.integers(), st.none())}),
    st.sampled_from([np.zeros((4, 5)), np.linspace(0, 1, 20).reshape(4, 5)]))  # fmt: skip
def test_heif_depth_metadata(metadata, nearness):
    from bokehkit.scene.phone_depth import _Skip, heif_depth_to_map

    try:  # _Skip: "found but unusable", which read_embedded_depth turns into a note
        out = only_user_errors(heif_depth_to_map, nearness.astype(np.float32), metadata, "x")
    except _Skip:
        return
    assume(out is not None)
    assert np.isfinite(out.inverse_depth).all()


def test_the_fuzz_bounds_catch_a_blow_up():
    """The harness itself: an allocation past 500 MB fails a case."""
    with pytest.raises(MemoryError):
        only_user_errors(lambda: bytearray(CASE_MEMORY + (64 << 20)))
    assert Path("/proc/self/statm").exists()

"""Small files that declare huge contents are refused before anything of that size is
allocated (docs/security.md): extended XMP, compressed TIFFs, PNG bombs, BKRAW headers,
.npy headers and zip-bombed checkpoints."""

from __future__ import annotations

import io
import json
import tracemalloc
import zipfile

import numpy as np
import pytest
from PIL import Image

from bokehkit import limits
from bokehkit.errors import BokehkitError
from bokehkit.io import rawbuffer as rb
from bokehkit.io.image import load_image
from bokehkit.io.maps import read_map
from bokehkit.scene.phone_depth import XMP_EXT_HEADER, XMP_HEADER, read_embedded_depth

#: Any reader of these small files must stay under this much Python-side allocation.
ALLOC_LIMIT = 64 << 20


def _peak(fn):
    """(result or exception, peak bytes traced) of fn()."""
    tracemalloc.start()
    try:
        try:
            out = fn()
        except Exception as exc:  # noqa: BLE001 - returned for the caller to check
            out = exc
        return out, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def _app1(payload: bytes) -> bytes:
    return b"\xff\xe1" + (len(payload) + 2).to_bytes(2, "big") + payload


def test_extended_xmp_declaring_gigabytes_allocates_nothing_of_that_size(tmp_path):
    buf = io.BytesIO()
    Image.new("RGB", (32, 24), (90, 90, 90)).save(buf, "JPEG")
    guid = b"0123456789ABCDEF0123456789ABCDEF"
    main = (
        b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF '
        b'xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description '
        b'xmlns:GDepth="http://ns.google.com/photos/1.0/depthmap/" '
        b'xmlns:xmpNote="http://ns.adobe.com/xmp/note/" GDepth:Format="RangeInverse" '
        b'GDepth:Near="1" GDepth:Far="5" xmpNote:HasExtendedXMP="' + guid + b'"/>'
        b"</rdf:RDF></x:xmpmeta>"
    )
    three_gib = (3 << 30).to_bytes(4, "big")
    chunk = XMP_EXT_HEADER + guid + three_gib + (0).to_bytes(4, "big") + b"<x:xmpmeta/>"
    data = buf.getvalue()
    data = data[:2] + _app1(XMP_HEADER + main) + _app1(chunk) + data[2:]
    path = tmp_path / "bomb.jpg"
    path.write_bytes(data)
    (depth, notes), peak = _peak(lambda: read_embedded_depth(path, 32, 24))
    assert depth is None and "more than the whole file" in notes[0]
    assert peak < ALLOC_LIMIT


def _tiled_tiff_bomb(path, side: int) -> None:
    """A side×side 8-bit TIFF of zeros, zlib-tiled: a few hundred kB on disk."""
    import tifffile

    tile = np.zeros((2048, 2048), np.uint8)
    count = (-(-side // 2048)) ** 2
    tifffile.imwrite(
        path, (tile for _ in range(count)), shape=(side, side), dtype=np.uint8,
        tile=(2048, 2048), compression="zlib", photometric="minisblack",
    )  # fmt: skip


@pytest.mark.parametrize("as_depth", [False, True])
def test_a_compressed_tiff_over_the_pixel_limit_is_refused_before_decoding(tmp_path, as_depth):
    path = tmp_path / "bomb.tif"
    _tiled_tiff_bomb(path, 18000)  # 324 MP > the 300 MP default
    assert path.stat().st_size < 4 << 20
    read = (lambda: read_map(path, "depth map")) if as_depth else (lambda: load_image(path))
    err, peak = _peak(read)
    assert isinstance(err, BokehkitError), err
    assert "over the 300 MP limit" in str(err) and limits.ENV_MAX_PIXELS in str(err)
    assert peak < ALLOC_LIMIT


def test_the_pixel_limit_can_be_raised_or_lowered(tmp_path, monkeypatch):
    Image.new("RGB", (300, 200)).save(tmp_path / "a.png")
    monkeypatch.setenv(limits.ENV_MAX_PIXELS, "50000")
    with pytest.raises(BokehkitError, match="300×200 .* over the 0.05 MP limit"):
        load_image(tmp_path / "a.png")
    with pytest.raises(BokehkitError, match="over the 0.05 MP limit"):
        read_map(tmp_path / "a.png", "focus mask")
    monkeypatch.setenv(limits.ENV_MAX_PIXELS, "60000")
    assert load_image(tmp_path / "a.png").size == (300, 200)


def test_a_png_bomb_is_refused_from_its_header(tmp_path, monkeypatch):
    monkeypatch.setenv(limits.ENV_MAX_PIXELS, "1000000")
    Image.new("L", (4000, 4000)).save(tmp_path / "bomb.png")  # 16 MP of zeros: 16 kB
    err, peak = _peak(lambda: load_image(tmp_path / "bomb.png"))
    assert isinstance(err, BokehkitError) and "over the 1 MP limit" in str(err)
    assert peak < 8 << 20


def test_a_npy_map_is_checked_from_its_header(tmp_path, monkeypatch):
    monkeypatch.setenv(limits.ENV_MAX_PIXELS, "1000")
    np.save(tmp_path / "d.npy", np.zeros((100, 100), np.float32))
    with pytest.raises(BokehkitError, match="over the 0.001 MP limit"):
        read_map(tmp_path / "d.npy", "depth map")
    monkeypatch.delenv(limits.ENV_MAX_PIXELS)
    head = (tmp_path / "d.npy").read_bytes()[:128]
    (tmp_path / "cut.npy").write_bytes(head + b"\0" * 16)  # header of 100×100, 16 bytes
    with pytest.raises(BokehkitError, match="shorter than its header"):
        read_map(tmp_path / "cut.npy", "depth map")


def test_a_bkraw_header_over_the_limit_or_a_device_is_refused(tmp_path):
    header = {"width": 100000, "height": 100000, "channels": "RGBA", "dtype": "float32"}
    path = tmp_path / "huge.bkraw"
    path.write_bytes(rb.MAGIC + json.dumps(header).encode() + b"\n" + b"\0" * 64)
    err, peak = _peak(lambda: rb.read_buffer(path))
    assert isinstance(err, BokehkitError) and "over the 300 MP limit" in str(err)
    assert peak < 1 << 20
    with pytest.raises(BokehkitError, match="not a regular file"):
        rb.read_buffer("/dev/zero")


def test_a_zip_bombed_checkpoint_is_refused_from_its_directory(tmp_path):
    pytest.importorskip("torch")
    from bokehkit.magicbokeh.safe_pickle import load_checkpoint

    path = tmp_path / "lora.pkl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
        with z.open("archive/data/0", "w", force_zip64=True) as member:
            block = b"\0" * (1 << 24)
            for _ in range(24):  # 384 MB of zeros, a few hundred kB deflated
                member.write(block)
    assert path.stat().st_size < 2 << 20
    err, peak = _peak(lambda: load_checkpoint(path))
    assert isinstance(err, BokehkitError) and "zip bomb" in str(err)
    assert peak < ALLOC_LIMIT


def test_render_memory_is_estimated_before_starting(monkeypatch):
    monkeypatch.setenv(limits.ENV_MEMORY_MB, "4096")
    limits.check_render_memory(6000, 4000, 1)  # 24 MP: fits in 4 GB
    with pytest.raises(BokehkitError, match=r"a 14000×14000 result needs about .* GB"):
        limits.check_render_memory(3500, 3500, 4)  # 196 MP out of 12 MP

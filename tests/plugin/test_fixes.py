"""The "no depth" fixes the panel offers, on the engine's side: installing a depth model
(the `install` request), and a phone photo's recorded depth sent with a render."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from models_helpers import FileServer, manifest
from PIL import Image

from bokehkit.progress import Progress
from bokehkit.serve import server
from bokehkit.store import ModelStore
from bokehkit.store import store as store_mod
from bokehkit.store.manifest import parse_manifest
from bokehkit_plugin import rawbuffer
from bokehkit_plugin.client import EngineClient, EngineError

REPO = Path(__file__).resolve().parents[2]

REAL_ENGINE = [sys.executable, "-m", "bokehkit"]
ENGINE_ENV = {"PYTHONPATH": str(REPO / "core")}
WEIGHTS = os.urandom(4096)


def test_install_request_fetches_the_depth_model_and_the_ping_then_has_depth(tmp_path, monkeypatch):
    """One click on "Install depth model": the engine downloads it (progress), and its ping
    says renders now have depth."""
    monkeypatch.setenv("BOKEHKIT_MODELS", str(tmp_path / "store"))
    with FileServer() as files:
        files.files["/small.pth"] = WEIGHTS
        sources = [{"type": "file", "url": files.url("/small.pth")}]
        m = parse_manifest(manifest("depth-anything-v2-small", "small.pth", WEIGHTS, sources), "t")
        monkeypatch.setattr(store_mod, "load_manifest", lambda *a: m)
        assert server.depth_status() == {
            "available": False,
            "reason": "no depth model is installed",
            "install": "depth-anything-v2-small",
        }
        seen = []
        got = server.install_model("depth-anything-v2-small", Progress(lambda f, t: seen.append(t)))
    assert got == "depth-anything-v2-small"
    assert ModelStore().file_path(got).read_bytes() == WEIGHTS
    assert server.depth_status() == {"available": True, "model": "depth-anything-v2-small"}
    assert seen[0].startswith("installing") and seen[-1].startswith("installed")


def test_install_request_takes_only_what_the_fixes_need(tmp_path):
    with EngineClient(REAL_ENGINE, ENGINE_ENV, str(tmp_path)) as client:
        with pytest.raises(EngineError, match="plug-ins may install .*not 'realesrgan-x4plus'"):
            client.install_model("realesrgan-x4plus")
        assert client.ping()["type"] == "pong"  # it lives on
    assert list(tmp_path.iterdir()) == []  # no job folder left


def test_a_photo_without_phone_depth_is_one_line_and_nothing_else(tmp_path):
    """ "Phone's depth" on a photo a phone did not record depth in: a one-line error that
    names the photo (the client copied it into the job folder under its own name)."""
    rgb = np.full((24, 36, 3), 128, np.uint8)
    Image.fromarray(rgb).save(tmp_path / "IMG_0042.jpg")
    image = rawbuffer.RawImage(36, 24, rgb.tobytes(), "RGB", "RGBA", "uint8", "srgb")
    (tmp_path / "jobs").mkdir()
    with EngineClient(REAL_ENGINE, ENGINE_ENV, str(tmp_path / "jobs")) as client:
        with pytest.raises(EngineError, match=r"^IMG_0042\.jpg holds no depth map a phone"):
            client.render(
                image, {"focus_source": "auto"}, depth_photo=str(tmp_path / "IMG_0042.jpg")
            )
        with pytest.raises(EngineError, match="cannot read the photo"):
            client.render(image, {"focus_source": "auto"}, depth_photo=str(tmp_path / "gone.jpg"))
    assert list((tmp_path / "jobs").iterdir()) == []

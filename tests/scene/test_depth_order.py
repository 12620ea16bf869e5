"""Where the pipeline takes depth from, in order: the given map → the depth the phone
embedded in the photo → an installed depth model → the fallback; the report says which.
No real depth model is needed: the model store and `estimate_depth` are stood in for."""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
from phone_depth_files import encode_google, gdepth_jpeg, image_bytes, photo_jpeg, scene_depth
from PIL import Image

import bokehkit.store
from bokehkit.errors import BokehkitError
from bokehkit.io.image import load_image
from bokehkit.pipeline import RenderSettings, render_file, render_image
from bokehkit.scene.depth import DepthMap

W, H = 48, 32


@pytest.fixture
def phone_photo(tmp_path):
    z = scene_depth(W // 2, H // 2)
    p = tmp_path / "portrait.jpg"
    p.write_bytes(gdepth_jpeg(W, H, image_bytes(encode_google(z, "RangeInverse"))))
    return p


@pytest.fixture
def plain_photo(tmp_path):
    p = tmp_path / "plain.jpg"
    p.write_bytes(photo_jpeg(W, H))
    return p


@pytest.fixture
def depth_png(tmp_path):
    p = tmp_path / "given.png"
    Image.fromarray(np.tile(np.linspace(0, 255, W).astype(np.uint8), (H, 1))).save(p)
    return p


@pytest.fixture
def fake_model(monkeypatch):
    """An 'installed' depth model whose estimate is a constant ramp; records its calls."""
    calls = []

    def estimate_depth(linear_rgb, model_id, progress):
        calls.append(model_id)
        h, w = linear_rgb.shape[:2]
        ramp = np.tile(np.linspace(0.0, 1.0, w, dtype=np.float32), (h, 1))
        return DepthMap(ramp, False, f"estimated by {model_id}")

    installed = {"depth-anything-v2-small"}
    monkeypatch.setattr(
        bokehkit.store,
        "installed_path",
        lambda model_id, store=None: f"/models/{model_id}" if model_id in installed else None,
    )
    module = types.ModuleType("bokehkit.scene.depth_models")
    module.estimate_depth = estimate_depth
    monkeypatch.setitem(sys.modules, "bokehkit.scene.depth_models", module)
    return calls


def settings(**kw) -> RenderSettings:
    base = {"focus_point": (W / 4, H / 2), "auto_subject": False, "grain": 0.0}
    base.update(kw)
    return RenderSettings(**base)


def source_of(photo, **kw):
    _, report = render_image(load_image(photo), settings(**kw))
    return report


def test_a_given_map_comes_first(phone_photo, depth_png, fake_model):
    report = source_of(phone_photo, depth_path=str(depth_png))
    assert report.depth_source.startswith("given.png")
    assert fake_model == []


def test_the_phones_depth_comes_before_a_model(phone_photo, fake_model):
    report = source_of(phone_photo)
    assert "GDepth" in report.depth_source and "recorded by the phone" in report.depth_source
    assert "depth:" in report.lines()[0]
    assert fake_model == []


def test_an_installed_model_comes_before_the_fallback(plain_photo, fake_model):
    report = source_of(plain_photo)
    assert report.depth_source == "estimated by depth-anything-v2-small"
    assert fake_model == ["depth-anything-v2-small"]


def test_the_phones_depth_can_be_skipped(phone_photo, fake_model):
    report = source_of(phone_photo, embedded_depth=False)
    assert report.depth_source == "estimated by depth-anything-v2-small"


def test_the_fallback_comes_last(plain_photo, fake_model):
    report = source_of(plain_photo, depth_model=False)
    assert report.depth_source.startswith("none given")
    assert fake_model == []


def test_no_model_installed_means_the_fallback(plain_photo):
    report = source_of(plain_photo)  # the test store is empty
    assert report.depth_source.startswith("none given")


def test_a_model_that_cannot_run_leaves_a_note(plain_photo, fake_model, monkeypatch):
    monkeypatch.setitem(sys.modules, "bokehkit.scene.depth_models", None)  # no package / no torch
    report = source_of(plain_photo)
    assert report.depth_source.startswith("none given")
    assert any("depth-anything-v2-small is installed but cannot run" in n for n in report.notes)

    def broken(*_):
        raise BokehkitError("the weights are damaged")

    module = types.ModuleType("bokehkit.scene.depth_models")
    module.estimate_depth = broken
    monkeypatch.setitem(sys.modules, "bokehkit.scene.depth_models", module)
    report = source_of(plain_photo)
    assert report.depth_source.startswith("none given")
    assert any("the weights are damaged" in n for n in report.notes)


def test_unusable_embedded_depth_falls_through_with_a_note(tmp_path, fake_model):
    z = scene_depth(W // 2, W // 2)  # square map, 3:2 photo
    p = tmp_path / "odd.jpg"
    p.write_bytes(gdepth_jpeg(W, H, image_bytes(encode_google(z, "RangeInverse"))))
    report = source_of(p)
    assert report.depth_source == "estimated by depth-anything-v2-small"
    assert any("odd.jpg was ignored" in n and "does not fit" in n for n in report.notes)


def test_the_photo_itself_named_as_depth_means_its_embedded_depth(phone_photo, plain_photo):
    report = source_of(phone_photo, depth_path=str(phone_photo))
    assert "GDepth" in report.depth_source
    with pytest.raises(BokehkitError, match="holds no depth map"):
        source_of(plain_photo, depth_path=str(plain_photo))


def test_metric_phone_depth_allows_a_focus_distance(phone_photo, tmp_path):
    out = tmp_path / "out.jpg"
    report = render_file(phone_photo, out, settings(focus_point=None, focus_distance_m=0.8))
    assert out.is_file() and report.focus_source == "focus distance 0.8 m"
    assert report.max_coc_px > 0


def test_focus_distance_without_metric_depth_still_fails(plain_photo):
    with pytest.raises(BokehkitError, match="needs a metric depth map"):
        source_of(plain_photo, focus_point=None, focus_distance_m=2.0, depth_model=False)


def test_magicbokeh_prefers_its_own_dadepth(plain_photo, fake_model, monkeypatch):
    """With DA-V2 large and DAdepth installed, classical takes large, magicbokeh DAdepth
    (the depth it was trained with)."""
    import bokehkit.pipeline as pipeline
    from bokehkit.render import renderer_class

    class _Keep(renderer_class("magicbokeh")):  # its policy, without its model
        def __init__(self):
            pass

        def describe(self):
            return None

        def render(self, job, progress):
            return job.linear_rgb

    installed = {"depth-anything-v2-large", "dadepth", "depth-anything-v2-small"}
    monkeypatch.setattr(
        bokehkit.store, "installed_path",
        lambda model_id, store=None: f"/m/{model_id}" if model_id in installed else None,
    )  # fmt: skip
    assert source_of(plain_photo).depth_source == "estimated by depth-anything-v2-large"
    monkeypatch.setattr(pipeline, "get_renderer", lambda name, **kw: _Keep())
    report = source_of(plain_photo, engine="magicbokeh")
    assert report.depth_source == "estimated by dadepth"
    assert fake_model == ["depth-anything-v2-large", "dadepth"]

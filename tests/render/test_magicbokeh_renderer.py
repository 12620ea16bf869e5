"""Without a complete bundle the magicbokeh engine names what is missing, never falls back."""

from __future__ import annotations

import pytest

pytest.importorskip("torch")

from bokehkit.errors import BokehkitError  # noqa: E402
from bokehkit.magicbokeh import bundle  # noqa: E402
from bokehkit.render import get_renderer  # noqa: E402
from bokehkit.render.magicbokeh import model_status  # noqa: E402


def test_missing_bundle_names_files_and_command(tmp_path):
    ok, reason = model_status(store=tmp_path, runtime="torch")
    assert not ok and f"no MagicBokeh model at {tmp_path / 'magicbokeh'}" in reason
    assert "bokehkit models import magicbokeh --sd21" in reason and "--checkpoint" in reason
    (tmp_path / "magicbokeh").mkdir()
    (tmp_path / "magicbokeh" / "vae_config.json").write_text("{}")
    ok, reason = model_status(store=tmp_path, runtime="torch")  # some there: name the rest
    for name in ("magicbokeh.json", *bundle.FILES):
        assert (name in reason) == (name != "vae_config.json")
    with pytest.raises(BokehkitError, match="models import magicbokeh"):
        get_renderer("magicbokeh", store=tmp_path)


def test_partly_missing_bundle(tmp_path):
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "unet.safetensors").write_bytes(b"x")
    ok, reason = model_status("mine", store=tmp_path)
    assert not ok and "unet.safetensors" not in reason.split("lacks")[1].split(";")[0]
    assert "vae.safetensors" in reason and "--name mine" in reason


def test_server_ping_reports_the_reason(tmp_path, monkeypatch):
    from bokehkit.serve.server import engines_status

    monkeypatch.setenv("BOKEHKIT_MODELS", str(tmp_path))
    entry = engines_status()["magicbokeh"]
    assert entry["available"] is False and "models import magicbokeh" in entry["reason"]

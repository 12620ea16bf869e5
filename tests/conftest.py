import pytest


@pytest.fixture(autouse=True)
def _empty_model_store(tmp_path_factory, monkeypatch):
    """Renders in tests never see models the developer installed (which would change focus
    and results); tests that need a model install it into their own store."""
    if "BOKEHKIT_MODELS" not in __import__("os").environ:
        monkeypatch.setenv("BOKEHKIT_MODELS", str(tmp_path_factory.mktemp("models")))

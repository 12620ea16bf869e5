"""The model store against damaged and wrong files, and on the light engine
(docs/security.md): `list`, `verify` and a render agree on a damaged file; an unpinned
import must be the right network; Real-ESRGAN installs without safetensors or torch."""

from __future__ import annotations

import hashlib
import pickle
import sys
import zipfile

import numpy as np
import pytest
from models_helpers import manifest, sha

from bokehkit.commands import main
from bokehkit.store import ModelDamaged, ModelStore
from bokehkit.store import store as store_mod
from bokehkit.store.manifest import parse_manifest

MODEL = bytes(np.random.default_rng(7).integers(0, 256, 3 << 20, dtype=np.uint8))


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    """A store with model "tiny" installed by import; the CLI sees the same manifest."""
    m = parse_manifest(
        manifest("tiny", "tiny.onnx", MODEL, [{"type": "file", "url": "http://127.0.0.1:9/x"}]),
        "test",
    )
    monkeypatch.setattr(store_mod, "load_manifest", lambda: m)
    f = tmp_path / "tiny.onnx"
    f.write_bytes(MODEL)
    store = ModelStore(tmp_path / "store", m)
    store.import_files("tiny", [f])
    return store


def _damage(path, offset: int) -> None:
    with open(path, "r+b") as f:  # same size: only a hash can tell
        f.seek(offset)
        f.write(b"\xde\xad\xbe\xef")


@pytest.mark.parametrize("where", ["start", "inside"])
def test_list_verify_and_load_agree_on_a_damaged_file(tiny, capsys, where):
    root = str(tiny.root)
    assert main(["models", "--store", root, "list"]) == 0
    assert capsys.readouterr().out.startswith("tiny\tinstalled")
    path = tiny.require("tiny")
    _damage(path, 10 if where == "start" else (3 << 20) // 3)  # in a sample, or between
    assert main(["models", "--store", root, "list"]) == 0
    listed = capsys.readouterr().out
    assert main(["models", "--store", root, "verify", "tiny"]) == 2
    verified = capsys.readouterr().out
    assert "DAMAGED" in listed and "DAMAGED" in verified, (listed, verified)
    fresh = ModelStore(tiny.root, tiny.manifest)  # a render's own store object
    with pytest.raises(ModelDamaged, match="run: bokehkit models verify tiny"):
        fresh.require("tiny")
    path.write_bytes(MODEL)  # put right: trusted again
    assert ModelStore(tiny.root, tiny.manifest).require("tiny") == path


def test_a_render_refuses_a_damaged_isnet(tmp_path, monkeypatch):
    from bokehkit import store as models
    from bokehkit.scene import subject

    monkeypatch.setattr(models.ModelStore, "is_damaged", lambda self, model_id: True)
    monkeypatch.setattr(
        models.ModelStore, "problem", lambda self, model_id: "model isnet is damaged; run: x"
    )
    with pytest.raises(ModelDamaged, match="damaged"):
        subject.model_path()
    from PIL import Image

    Image.new("RGB", (40, 30), (100, 90, 80)).save(tmp_path / "p.png")
    assert main(["render", str(tmp_path / "p.png"), "-o", str(tmp_path / "o.png"), "-q"]) == 2
    assert not (tmp_path / "o.png").exists()


# ---------------------------------------------------------- import: the right network


def _state_dict_zip(path, shapes: dict[str, tuple[int, ...]]) -> None:
    """A torch.save-style zip of a state dict of these shapes, written opcode by opcode
    (no torch needed, and the pickle names torch's own helpers as a real one does)."""

    def value(x) -> bytes:
        return pickle.dumps(x, protocol=2)[2:-1]  # without PROTO and STOP

    def global_(module: str, name: str) -> bytes:
        return b"c" + module.encode() + b"\n" + name.encode() + b"\n"

    body = b""
    for i, (key, shape) in enumerate(shapes.items()):
        storage = (b"(" + value("storage") + global_("torch", "FloatStorage") + value(str(i))
                   + value("cpu") + value(1) + b"tQ")  # fmt: skip
        args = b"(" + storage + value(0) + value(shape) + value((1,) * len(shape)) + b"t"
        body += value(key) + global_("torch._utils", "_rebuild_tensor_v2") + args + b"Rs"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", b"\x80\x02}" + body + b".")
        for i in range(len(shapes)):
            z.writestr(f"archive/data/{i}", b"\0\0\0\0")


def _vit(width: int, blocks: int) -> dict[str, tuple[int, ...]]:
    shapes = {"pretrained.pos_embed": (1, 1370, width)}
    shapes.update({f"pretrained.blocks.{i}.norm1.weight": (width,) for i in range(blocks)})
    return shapes


def test_an_unpinned_import_must_be_the_network_the_id_names(tmp_path, capsys):
    store = tmp_path / "store"

    def imported(model_id: str, path) -> int:
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        return main(["models", "--store", str(store), "import", model_id, str(path),
                     "--sha256", digest, "-q"])  # fmt: skip

    junk = tmp_path / "depth_anything_v2_vitb.pth"
    junk.write_bytes(b"any file at all")
    assert imported("depth-anything-v2-base", junk) == 2
    assert "not a torch.save checkpoint" in capsys.readouterr().err
    small = tmp_path / "small.pth"
    _state_dict_zip(small, _vit(384, 12))
    assert imported("depth-anything-v2-base", small) == 2
    err = capsys.readouterr().err
    assert "holds a Depth-Anything-V2 vits network" in err and err.count("\n") == 1
    assert not (store / "depth-anything-v2-base").exists()
    base = tmp_path / "base.pth"
    _state_dict_zip(base, _vit(768, 12))
    assert imported("depth-anything-v2-base", base) == 0


def test_the_shape_reader_runs_nothing(tmp_path):
    from bokehkit.scene.depth_models.inspect import checkpoint_shapes

    class Evil:
        def __reduce__(self):
            return (print, ("the pickle ran code",))

    path = tmp_path / "evil.pth"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("archive/data.pkl", pickle.dumps({"x": Evil()}, protocol=2))
    assert checkpoint_shapes(path) == {}  # print became an inert record, never called


# ---------------------------------------------------------- Real-ESRGAN, light engine


def test_realesrgan_installs_on_the_light_engine(tmp_path, monkeypatch):
    from bokehkit.sr import ncnn_convert, realesrgan
    from bokehkit.sr.layout import conv_order

    config = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 1, "num_grow_ch": 4}
    rng = np.random.default_rng(0)
    state = {}
    for name in conv_order(config["num_block"]):
        shape = ncnn_convert._expected_shape(name, config)
        state[f"{name}.weight"] = rng.standard_normal(shape).astype(np.float32)
        state[f"{name}.bias"] = rng.standard_normal(shape[0]).astype(np.float32)
    param, binary = ncnn_convert.to_ncnn(state, config, "float32")
    files = {"realesrgan-x4plus.param": param.encode(), "realesrgan-x4plus.bin": binary}
    raw = manifest("realesrgan-x4plus", "realesrgan-x4plus.param", files[
        "realesrgan-x4plus.param"], [{"type": "file", "url": "http://127.0.0.1:9/x"}])  # fmt: skip
    raw["models"][0]["files"].append(
        {"name": "realesrgan-x4plus.bin", "sha256": sha(binary), "size": len(binary),
         "sources": [{"type": "file", "url": "http://127.0.0.1:9/y"}]}
    )  # fmt: skip
    store = ModelStore(tmp_path / "store", parse_manifest(raw, "test"))
    for name, data in files.items():
        (tmp_path / name).write_bytes(data)
        store.import_files("realesrgan-x4plus", [tmp_path / name])
    for module in ("torch", "safetensors", "safetensors.numpy", "safetensors.torch"):
        monkeypatch.setitem(sys.modules, module, None)  # the light engine has neither
    said = []
    made = realesrgan.finish_install(store, log=said.append)
    assert made[0].name == realesrgan.WEIGHTS and made[0].is_file()
    assert any("pip install -r requirements/torch-cpu.txt" in line for line in said), said
    available, reason = realesrgan.status(store)
    assert not available and "needs torch once" in reason
    monkeypatch.undo()
    pytest.importorskip("safetensors")
    from safetensors.numpy import load_file

    loaded = load_file(str(made[0]))  # our writer's file, read by the reference reader
    assert set(loaded) == set(state)
    assert all(np.array_equal(loaded[k], state[k]) for k in state)

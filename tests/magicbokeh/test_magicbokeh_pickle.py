"""The restricted unpickler for MagicBokeh's lora.pkl: real layout in, code never run."""

from __future__ import annotations

import io
import os
import pickle
import subprocess

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")

from magicbokeh_fixtures import make_lora_pkl, make_sd21, write_malicious_checkpoint  # noqa: E402

from bokehkit.errors import BokehkitError  # noqa: E402
from bokehkit.magicbokeh.safe_pickle import (  # noqa: E402
    PickledObject,
    load_checkpoint,
    module_config,
    module_state_dict,
)

CANARY_ENV = "BOKEHKIT_PICKLE_CANARY"
CALLS: list[str] = []


def canary(*args):  # a module-level function a pickle could name
    CALLS.append(repr(args))


@pytest.fixture(scope="module")
def official(tmp_path_factory):
    root = tmp_path_factory.mktemp("mb")
    sd21 = make_sd21(root / "sd21")
    ckpt = make_lora_pkl(root / "lora.pkl", sd21)
    return root / "lora.pkl", ckpt


def test_official_layout_loads_without_the_official_code(official):
    path, ref = official
    got = load_checkpoint(path)
    assert sorted(got) == sorted(ref)
    assert got["rank_unet"] == ref["rank_unet"] and got["state_dict_attn"] == ref["state_dict_attn"]
    assert got["unet_lora_encoder_modules"] == ref["unet_lora_encoder_modules"]
    for key in ("state_dict_unet", "state_dict_vae", "processor_state_dict"):
        assert got[key].keys() == ref[key].keys()
        for name, t in ref[key].items():
            assert torch.equal(got[key][name], t), name
    cn = got["controlnet"]
    assert isinstance(cn, PickledObject)
    assert cn.pickled_class == "models.controlnet.ControlNetModel"
    sd, want = module_state_dict(cn), ref["controlnet"].state_dict()
    assert sd.keys() == want.keys()
    assert all(torch.equal(sd[k], want[k]) for k in want)
    cfg = module_config(cn)
    assert list(cfg["block_out_channels"]) == list(ref["controlnet"].config.block_out_channels)


class _Reduce:
    """Pickles as `func(*args)`: what an attacker writes into data.pkl."""

    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _payloads(tmp_path):
    flag = tmp_path / "pwned"
    code = f"open({str(flag)!r}, 'w').write('x'); import os; os.environ[{CANARY_ENV!r}] = '1'"
    return flag, {
        "os.system": _Reduce(os.system, f"touch {flag}"),
        "builtins.exec": _Reduce(exec, code),
        "builtins.eval": _Reduce(eval, f"__import__('os').system('touch {flag}')"),
        "subprocess.Popen": _Reduce(subprocess.Popen, ["touch", str(flag)]),
        "os.putenv": _Reduce(os.putenv, CANARY_ENV, "1"),
        "canary": _Reduce(canary, "ran"),
        # hidden deep inside an otherwise valid checkpoint, after real tensors
        "nested": {
            "rank_unet": 4,
            "state_dict_unet": {"w": torch.zeros(2)},
            "controlnet": [1, {"x": _Reduce(os.system, f"touch {flag}")}],
        },
        # reaching a callable by attribute
        "getattr": _Reduce(getattr, subprocess.Popen, "__init__"),
    }


@pytest.mark.parametrize("protocol", [2, 4])
def test_code_in_a_pickle_is_refused_and_never_runs(tmp_path, protocol):
    os.environ.pop(CANARY_ENV, None)
    flag, payloads = _payloads(tmp_path)
    for what, obj in payloads.items():
        path = tmp_path / f"{what}.pkl"
        write_malicious_checkpoint(path, pickle.dumps(obj, protocol=protocol))
        with pytest.raises(BokehkitError, match="refusing to load the checkpoint") as err:
            load_checkpoint(path)
        assert "nothing in it was run" in str(err.value), what
    assert not flag.exists()
    assert CANARY_ENV not in os.environ
    assert CALLS == []


def test_raw_opcodes_naming_dangerous_globals_are_refused(tmp_path):
    # Hand-written pickles (GLOBAL + REDUCE, INST, STACK_GLOBAL), not made by pickle.dumps.
    flag = tmp_path / "pwned"
    cmd = f"touch {flag}".encode()
    raw = {
        "global": b"cos\nsystem\n(S'" + cmd + b"'\ntR.",
        "inst": b"(S'" + cmd + b"'\nios\nsystem\n.",
        "posix": b"cposix\nsystem\n(S'" + cmd + b"'\ntR.",
        "stack_global": b"\x80\x04\x8c\x02os\x8c\x06system\x93\x8c"
        + bytes([len(cmd)])
        + cmd
        + b"\x85R.",
        "unknown_class": b"cmodels.evil\nThing\n)\x81.",
    }
    for what, data in raw.items():
        path = tmp_path / f"{what}.pkl"
        write_malicious_checkpoint(path, data)
        with pytest.raises(BokehkitError, match="refusing"):
            load_checkpoint(path)
    assert not flag.exists()


def test_inert_records_do_nothing_when_called(tmp_path):
    # A known class REDUCE'd with arguments only records them.
    data = b"cmodels.controlnet\nControlNetModel\n(S'rm -rf /'\ntR."
    path = tmp_path / "inert.pkl"
    write_malicious_checkpoint(path, data)
    obj = load_checkpoint(path)
    assert isinstance(obj, PickledObject) and obj.args == ("rm -rf /",)
    assert not callable(obj)


def test_not_a_checkpoint(tmp_path):
    p = tmp_path / "plain.pkl"
    p.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(BokehkitError, match="not a torch.save zip"):
        load_checkpoint(p)
    bad = tmp_path / "bad_storage.pkl"

    class _Pickler(pickle.Pickler):  # a tensor whose storage record the zip lacks
        def persistent_id(self, obj):
            return ("storage", torch.FloatStorage, "99", "cpu", 4) if obj == "S" else None

    buf = io.BytesIO()
    _Pickler(buf, protocol=2).dump(
        {"w": _Reduce(torch._utils._rebuild_tensor_v2, "S", 0, (4,), (1,))}
    )
    write_malicious_checkpoint(bad, buf.getvalue())
    with pytest.raises(BokehkitError, match="lacks the storage record"):
        load_checkpoint(bad)

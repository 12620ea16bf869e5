"""Convert Real-ESRGAN's ncnn export (.param text + .bin weights) into our RRDBNet's weights.

ncnn's `.param` is text: the magic 7767517, then "layer_count blob_count", then one layer a
line: ``type name n_in n_out in_blobs… out_blobs… key=value…``; a negative key -233xx holds
an array ("count,v1,v2,…") for parameter xx. A Convolution's keys: 0 outputs, 1 kernel
(11 its height if not square), 2 dilation, 3 stride, 4 padding, 5 bias present, 6 weight
count, 8 int8 scales present, 9 activation (2 = LeakyReLU, slope in -23310).

The `.bin` holds, for each layer with weights in `.param` order, what that layer loads: a
Convolution's weights (outputs × inputs × kh × kw, the same layout as torch) as a blob whose
first 4 bytes say how it is stored, then its bias as plain float32. The 4-byte tag:
0x01306B47 float16 (padded to 4 bytes), 0x000D4B38 int8, 0x0002C056 or 0 plain float32;
any other non-zero tag: a 256-entry float32 table followed by one uint8 index per weight
(padded to 4 bytes). Everything is little-endian.

The graph of realesrgan-x4plus is checked against RRDBNet's (the convolutions' shapes and
activations, the residual scales, the two nearest ×2 resizes) before its weights are
mapped, so a different network is refused rather than silently mis-loaded. Only numpy is
needed here; the result is a safetensors file our torch model loads.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import BokehkitError
from ..store.download import file_sha256
from .layout import conv_order, has_activation

MAGIC = 7767517
TAG_FP16 = 0x01306B47
TAG_INT8 = 0x000D4B38
TAG_FP32_SCALED = 0x0002C056
#: Layer types that carry no weights in the .bin (all that an RRDBNet export uses).
WEIGHTLESS = {"Input", "Split", "Concat", "Eltwise", "BinaryOp", "Interp", "ReLU", "Noop"}
#: Bumped when the conversion changes, so that older converted files are redone.
CONVERTER_VERSION = "1"


@dataclass
class Layer:
    type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    params: dict[int, object] = field(default_factory=dict)

    def get(self, key: int, default=None):
        return self.params.get(key, default)


def _number(text: str) -> int | float:
    if any(c in text for c in ".eE") and not text.lstrip("-").isdigit():
        return float(text)
    return int(text)


def parse_param(text: str) -> list[Layer]:
    """The layers of an ncnn text .param."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if not lines or lines[0] != str(MAGIC):
        raise BokehkitError("not an ncnn .param file (its first line is not 7767517)")
    try:
        layer_count, _blob_count = (int(v) for v in lines[1].split())
    except (IndexError, ValueError):
        raise BokehkitError("ncnn .param: bad layer/blob count line") from None
    layers = []
    for ln in lines[2:]:
        tok = ln.split()
        try:
            n_in, n_out = int(tok[2]), int(tok[3])
            ins = tok[4 : 4 + n_in]
            outs = tok[4 + n_in : 4 + n_in + n_out]
            params: dict[int, object] = {}
            for kv in tok[4 + n_in + n_out :]:
                k, v = kv.split("=", 1)
                key = int(k)
                if key <= -23300:  # an array: "count,v1,v2,…"
                    vals = v.split(",")
                    params[-23300 - key] = [_number(x) for x in vals[1 : 1 + int(vals[0])]]
                else:
                    params[key] = _number(v)
        except (IndexError, ValueError):
            raise BokehkitError(f"ncnn .param: cannot read the line {ln[:60]!r}") from None
        layers.append(Layer(tok[0], tok[1], ins, outs, params))
    if len(layers) != layer_count:
        raise BokehkitError(f"ncnn .param: {len(layers)} layers, but it says {layer_count}")
    return layers


def _align4(n: int) -> int:
    return (n + 3) & ~3


class _BinReader:
    def __init__(self, data: bytes) -> None:
        self.data = memoryview(data)
        self.pos = 0

    def take(self, n: int) -> memoryview:
        if self.pos + n > len(self.data):
            raise BokehkitError(
                f"ncnn .bin ends at byte {len(self.data)}, {self.pos + n} needed: wrong "
                "or truncated weights file"
            )
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def fp32(self, count: int) -> np.ndarray:
        return np.frombuffer(self.take(4 * count), "<f4").astype(np.float32)

    def tagged(self, count: int) -> tuple[np.ndarray, str]:
        """A blob stored with its 4-byte storage tag (ncnn's load type 0)."""
        head = bytes(self.take(4))
        tag = int.from_bytes(head, "little")
        if tag == TAG_FP16:
            raw = self.take(_align4(2 * count))
            return np.frombuffer(raw[: 2 * count], "<f2").astype(np.float32), "float16"
        if tag == TAG_INT8:
            raise BokehkitError("ncnn .bin: int8-quantised weights are not supported")
        if tag in (TAG_FP32_SCALED, 0):
            return self.fp32(count), "float32"
        table = self.fp32(256)
        index = np.frombuffer(self.take(_align4(count))[:count], np.uint8)
        return table[index], "uint8 table"


def read_weights(layers: list[Layer], data: bytes) -> dict[str, dict[str, np.ndarray]]:
    """Each Convolution's weights (4-D, torch layout) and bias, by ncnn layer name."""
    r = _BinReader(data)
    out: dict[str, dict[str, np.ndarray]] = {}
    for layer in layers:
        if layer.type in WEIGHTLESS:
            continue
        if layer.type != "Convolution":
            raise BokehkitError(f"ncnn layer type {layer.type} ({layer.name}) is not supported")
        n_out = int(layer.get(0, 0))
        kw = int(layer.get(1, 0))
        kh = int(layer.get(11, kw))
        count = int(layer.get(6, 0))
        if layer.get(8, 0):
            raise BokehkitError(f"{layer.name}: int8 convolutions are not supported")
        if n_out <= 0 or kw <= 0 or count % (n_out * kh * kw):
            raise BokehkitError(f"{layer.name}: inconsistent convolution parameters")
        n_in = count // (n_out * kh * kw)
        w, storage = r.tagged(count)
        entry = {"weight": w.reshape(n_out, n_in, kh, kw)}
        if layer.get(5, 0):
            entry["bias"] = r.fp32(n_out)
        entry["storage"] = storage  # type: ignore[assignment]
        out[layer.name] = entry
    if r.pos != len(r.data):
        raise BokehkitError(
            f"ncnn .bin has {len(r.data) - r.pos} bytes more than the .param's layers use"
        )
    return out


def _check_graph(layers: list[Layer], names: list[str]) -> None:
    """Refuse anything that is not an RRDBNet ×4 export like realesrgan-x4plus."""
    convs = [la for la in layers if la.type == "Convolution"]
    for la, name in zip(convs, names, strict=True):
        act = int(la.get(9, 0))
        slope = (la.params.get(10) or [0.0])[0] if act == 2 else None
        ok = (
            int(la.get(1, 0)) == 3
            and int(la.get(11, 3)) == 3
            and int(la.get(2, 1)) == 1
            and int(la.get(3, 1)) == 1
            and int(la.get(4, 0)) == 1
            and int(la.get(5, 0)) == 1
            and (act == 2 and abs(slope - 0.2) < 1e-6 if has_activation(name) else act == 0)
        )
        if not ok:
            raise BokehkitError(f"ncnn layer {la.name} does not match RRDBNet's {name}")
    eltwise = [la for la in layers if la.type == "Eltwise"]
    for la in eltwise:
        coeffs = la.params.get(1) or []
        if int(la.get(0, 1)) != 1 or [round(float(c), 6) for c in coeffs] != [0.2, 1.0]:
            raise BokehkitError(f"ncnn layer {la.name} is not RRDBNet's 0.2·x + skip")
    interp = [la for la in layers if la.type == "Interp"]
    if len(interp) != 2 or any(
        int(la.get(0, 0)) != 1 or float(la.get(1, 0)) != 2.0 or float(la.get(2, 0)) != 2.0
        for la in interp
    ):
        raise BokehkitError("the ncnn graph does not upsample twice by nearest ×2")


def convert(param_text: str, bin_data: bytes) -> tuple[dict[str, np.ndarray], dict]:
    """RRDBNet state dict (numpy float32) and its configuration from ncnn files."""
    layers = parse_param(param_text)
    weights = read_weights(layers, bin_data)
    convs = [la for la in layers if la.type == "Convolution"]
    if len(convs) < 21 or (len(convs) - 6) % 15:
        raise BokehkitError(f"{len(convs)} convolutions: not an RRDBNet export")
    num_block = (len(convs) - 6) // 15
    names = conv_order(num_block)
    _check_graph(layers, names)
    first = weights[convs[0].name]["weight"]
    num_feat, num_in = first.shape[:2]
    grow = weights[convs[1].name]["weight"].shape[0]
    config = {
        "num_in_ch": int(num_in),
        "num_out_ch": int(weights[convs[-1].name]["weight"].shape[0]),
        "num_feat": int(num_feat),
        "num_block": num_block,
        "num_grow_ch": int(grow),
    }
    state: dict[str, np.ndarray] = {}
    storages = set()
    for la, name in zip(convs, names, strict=True):
        w = weights[la.name]
        want = _expected_shape(name, config)
        if w["weight"].shape != want:
            raise BokehkitError(f"{la.name}: weight {w['weight'].shape}, {name} needs {want}")
        state[f"{name}.weight"] = np.ascontiguousarray(w["weight"])
        state[f"{name}.bias"] = np.ascontiguousarray(w["bias"])
        storages.add(w["storage"])
    config["ncnn_storage"] = ",".join(sorted(storages))
    return state, config


def _expected_shape(name: str, c: dict) -> tuple[int, int, int, int]:
    f, g = c["num_feat"], c["num_grow_ch"]
    if name == "conv_first":
        return (f, c["num_in_ch"], 3, 3)
    if name == "conv_last":
        return (c["num_out_ch"], f, 3, 3)
    if name.startswith("body."):
        k = int(name[-1])
        return (f if k == 5 else g, f + (k - 1) * g, 3, 3)
    return (f, f, 3, 3)


def convert_files(param_path: Path, bin_path: Path, dest: Path) -> Path:
    """Convert an ncnn pair into `dest` (safetensors), written atomically; the metadata
    records the sources' SHA-256, the configuration and the converter's version."""
    state, config = convert(Path(param_path).read_text("utf-8"), Path(bin_path).read_bytes())
    meta = {
        "format": "bokehkit-rrdbnet",
        "config": json.dumps(config),
        "converter": CONVERTER_VERSION,
        "source_param_sha256": file_sha256(Path(param_path)),
        "source_bin_sha256": file_sha256(Path(bin_path)),
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.convert")
    try:
        write_safetensors(tmp, state, meta)
        os.chmod(tmp, 0o644)  # as the store's other files
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


_ST_DTYPES = {"float32": "F32", "float16": "F16", "int64": "I64", "int32": "I32", "uint8": "U8"}


def write_safetensors(path: Path, state: dict[str, np.ndarray], metadata: dict[str, str]) -> None:
    """A safetensors file from numpy arrays, without the safetensors package (the light
    engine has none): an 8-byte little-endian header length, the JSON header (each tensor's
    dtype, shape and byte range; `__metadata__`), padded with spaces to 8 bytes, then the
    tensors' little-endian bytes in header order."""
    header: dict[str, object] = {"__metadata__": dict(metadata)}
    arrays = []
    offset = 0
    for name in sorted(state):
        a = np.ascontiguousarray(state[name])
        a = a.astype(a.dtype.newbyteorder("<"), copy=False)
        header[name] = {
            "dtype": _ST_DTYPES[a.dtype.name],
            "shape": list(a.shape),
            "data_offsets": [offset, offset + a.nbytes],
        }
        arrays.append(a)
        offset += a.nbytes
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path, "wb") as f:
        f.write(len(text).to_bytes(8, "little"))
        f.write(text)
        for a in arrays:
            f.write(a.tobytes())
        f.flush()
        os.fsync(f.fileno())


def read_metadata(path: Path) -> dict[str, str]:
    """The metadata of a safetensors file (its JSON header), without loading the tensors."""
    with open(path, "rb") as fh:
        n = int.from_bytes(fh.read(8), "little")
        if not 0 < n < 1 << 26:
            raise BokehkitError(f"{path} is not a safetensors file")
        header = json.loads(fh.read(n))
    return header.get("__metadata__", {})


# ---------------------------------------------------------------------------- the reverse
STORAGES = ("float16", "float32", "uint8 table")


def to_ncnn(
    state: dict[str, np.ndarray], config: dict, storage: str | list[str] = "float16"
) -> tuple[str, bytes]:
    """An RRDBNet state dict as an ncnn .param/.bin pair laid out as Real-ESRGAN's export is
    (blob names aside): used to test the converter against ncnn itself on small networks.
    `storage` is one of STORAGES, or one per convolution ("uint8 table" stores the weights
    as indices into their own sorted unique values, so the weights must have at most 256)."""
    names = conv_order(config["num_block"])
    kinds = [storage] * len(names) if isinstance(storage, str) else list(storage)
    layers: list[tuple[str, str, list[str], list[str], str]] = []
    counter = iter(range(1 << 30))

    def blob() -> str:
        return f"b{next(counter)}"

    def conv(name: str, src: str, dst: str | None = None) -> str:
        w = state[f"{name}.weight"]
        out = dst or blob()
        p = f"0={w.shape[0]} 1=3 4=1 5=1 6={w.size}"
        if has_activation(name):
            p += " 9=2 -23310=1,2.000000e-01"
        layers.append(("Convolution", name.replace(".", "_"), [src], [out], p))
        return out

    def cat(srcs: list[str]) -> str:
        if len(srcs) == 1:
            return srcs[0]
        out = blob()
        layers.append(("Concat", f"cat{out}", list(srcs), [out], ""))
        return out

    def scaled_add(a: str, skip: str) -> str:
        out = blob()
        p = "0=1 -23301=2,2.000000e-01,1.000000e+00"
        layers.append(("Eltwise", f"add{out}", [a, skip], [out], p))
        return out

    layers.append(("Input", "input", [], ["data"], ""))
    first = conv("conv_first", "data")
    x = first
    for b in range(config["num_block"]):
        block_in = x
        for r in (1, 2, 3):
            feats = [x]
            for k in range(1, 6):
                feats.append(conv(f"body.{b}.rdb{r}.conv{k}", cat(feats)))
            x = scaled_add(feats[-1], x)
        x = scaled_add(x, block_in)
    body = conv("conv_body", x)
    x = blob()
    layers.append(("BinaryOp", "long_skip", [first, body], [x], "0=0"))
    for name in ("conv_up1", "conv_up2"):
        up = blob()
        layers.append(("Interp", f"up_{name}", [x], [up], "0=1 1=2.000000e+00 2=2.000000e+00"))
        x = conv(name, up)
    x = conv("conv_last", conv("conv_hr", x), "output")

    # ncnn wants a Split wherever a blob feeds more than one layer.
    uses: dict[str, int] = {}
    for _, _, ins, _, _ in layers:
        for i in ins:
            uses[i] = uses.get(i, 0) + 1
    taken: dict[str, int] = {}
    final = []
    for typ, name, ins, outs, p in layers:
        renamed = []
        for i in ins:
            if uses[i] > 1:
                renamed.append(f"{i}_splitncnn_{taken.get(i, 0)}")
                taken[i] = taken.get(i, 0) + 1
            else:
                renamed.append(i)
        final.append((typ, name, renamed, outs, p))
        for o in outs:
            if uses.get(o, 0) > 1:
                splits = [f"{o}_splitncnn_{j}" for j in range(uses[o])]
                final.append(("Split", f"split_{o}", [o], splits, ""))
    blobs = {o for _, _, _, outs, _ in final for o in outs}
    lines = [str(MAGIC), f"{len(final)} {len(blobs)}"]
    for typ, name, ins, outs, p in final:
        lines.append(" ".join([typ, name, str(len(ins)), str(len(outs)), *ins, *outs, p]).strip())
    param = "\n".join(lines) + "\n"

    parts = []
    for name, kind in zip(names, kinds, strict=True):
        w = np.ascontiguousarray(state[f"{name}.weight"], np.float32).ravel()
        if kind == "float16":
            raw = w.astype("<f2").tobytes()
            parts += [TAG_FP16.to_bytes(4, "little"), raw + b"\0" * (_align4(len(raw)) - len(raw))]
        elif kind == "float32":
            parts += [b"\0\0\0\0", w.astype("<f4").tobytes()]
        elif kind == "uint8 table":
            values, index = np.unique(w, return_inverse=True)
            if values.size > 256:
                raise ValueError(f"{name}: {values.size} distinct weights do not fit a table")
            table = np.zeros(256, "<f4")
            table[: values.size] = values
            idx = index.astype(np.uint8).tobytes()
            parts += [b"\1\0\0\0", table.tobytes(), idx + b"\0" * (_align4(len(idx)) - len(idx))]
        else:
            raise ValueError(f"unknown storage {kind!r}")
        parts.append(np.ascontiguousarray(state[f"{name}.bias"], "<f4").tobytes())
    return param, b"".join(parts)

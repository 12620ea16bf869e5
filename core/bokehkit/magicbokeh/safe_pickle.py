"""Read the published MagicBokeh ``lora.pkl`` without running anything in it.

The checkpoint is a ``torch.save`` zip (``<name>/data.pkl`` + ``<name>/data/<key>``
storages) whose pickle holds plain values, tensors and a whole pickled
``models.controlnet.ControlNetModel`` (the official repository's module tree, diffusers
0.25 classes inside). ``torch.load(weights_only=False)`` would import and call whatever
the pickle names; ``weights_only=True`` refuses the module objects.

`load_checkpoint` uses our own unpickler instead:

- tensors are rebuilt from the zip's storages by our own code (never torch's
  ``_rebuild_*`` helpers with pickled callables), on the CPU, whatever device they were
  saved from;
- plain containers (dict, list, tuple, set, OrderedDict) are rebuilt as themselves;
- the classes the official checkpoint is known to contain (`KNOWN_CLASSES`) become inert
  `PickledObject` records that only hold their constructor arguments and pickled state;
- every other global (``os.system``, ``builtins.eval``, ``subprocess.Popen``, any class
  not on the list) is refused with a BokehkitError *before* anything is called, so a
  malicious pickle stops at its first reference to one.

`module_state_dict` and `module_config` then read weights and configuration out of the
inert module tree.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from ..errors import BokehkitError

# ----------------------------------------------------------------------- known classes

# Module classes a pickled official ControlNet can reference: the repository's own
# `models` package (a patched copy of diffusers 0.25) and the diffusers 0.25 / torch.nn
# classes those modules are built from. Each becomes an inert record; none is imported.
_OFFICIAL = {
    "models.controlnet": ["ControlNetModel", "ControlNetConditioningEmbedding", "ControlNetOutput"],
    "models.unet_2d_blocks": [
        "CrossAttnDownBlock2D",
        "DownBlock2D",
        "UNetMidBlock2D",
        "UNetMidBlock2DCrossAttn",
        "CrossAttnUpBlock2D",
        "UpBlock2D",
    ],
    "models.unet_2d_condition": ["UNet2DConditionModel"],
    "models.transformer_2d": ["Transformer2DModel"],
    "models.attention": ["BasicTransformerBlock", "FeedForward"],
}
_DIFFUSERS = {
    "diffusers.models.attention_processor": [
        "Attention",
        "AttnProcessor",
        "AttnProcessor2_0",
        "XFormersAttnProcessor",
        "SlicedAttnProcessor",
    ],
    "diffusers.models.attention": ["BasicTransformerBlock", "FeedForward"],
    "diffusers.models.resnet": ["ResnetBlock2D", "Downsample2D", "Upsample2D"],
    "diffusers.models.downsampling": ["Downsample2D"],
    "diffusers.models.upsampling": ["Upsample2D"],
    "diffusers.models.embeddings": ["Timesteps", "TimestepEmbedding"],
    "diffusers.models.activations": ["GELU", "GEGLU", "ApproximateGELU"],
    "diffusers.models.lora": ["LoRACompatibleConv", "LoRACompatibleLinear"],
    "diffusers.models.transformer_2d": ["Transformer2DModel"],
    "diffusers.models.unet_2d_blocks": ["CrossAttnDownBlock2D", "DownBlock2D"],
    "diffusers.models.controlnet": ["ControlNetModel", "ControlNetConditioningEmbedding"],
}
_TORCH_NN = {
    "torch.nn.modules.conv": ["Conv2d"],
    "torch.nn.modules.linear": ["Linear", "Identity"],
    "torch.nn.modules.normalization": ["GroupNorm", "LayerNorm"],
    "torch.nn.modules.activation": ["SiLU", "GELU", "Mish", "ReLU"],
    "torch.nn.modules.dropout": ["Dropout"],
    "torch.nn.modules.container": ["ModuleList", "Sequential", "ModuleDict"],
}
KNOWN_CLASSES: frozenset[str] = frozenset(
    f"{mod}.{name}"
    for table in (_OFFICIAL, _DIFFUSERS, _TORCH_NN)
    for mod, names in table.items()
    for name in names
)

# Storage classes named in a storage's persistent id, and the dtypes they hold.
_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
    "UntypedStorage": torch.uint8,
}
_DTYPE_NAMES = {
    "float32", "float64", "float16", "bfloat16", "int64", "int32", "int16", "int8",
    "uint8", "bool",
}  # fmt: skip


class PickledObject:
    """An inert stand-in for an object of a known class: what the pickle said, nothing run.

    `pickled_class` is the dotted class path; `args` the constructor arguments the pickle
    gave; `state` what it passed to ``__setstate__`` (a module's ``__dict__``); `items`
    and `list_items` what it added with SETITEMS / APPENDS (dict and list subclasses).
    """

    pickled_class = "?"

    def __new__(cls, *args: Any, **kwargs: Any) -> PickledObject:
        obj = super().__new__(cls)
        object.__setattr__(obj, "args", args)
        object.__setattr__(obj, "state", None)
        object.__setattr__(obj, "items", {})
        object.__setattr__(obj, "list_items", [])
        return obj

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __setstate__(self, state: Any) -> None:
        object.__setattr__(self, "state", state)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.items[key] = value

    def append(self, value: Any) -> None:
        self.list_items.append(value)

    def extend(self, values: Any) -> None:
        self.list_items.extend(values)

    def __setattr__(self, name: str, value: Any) -> None:  # BUILD's slot state lands here
        raise BokehkitError(f"pickled {self.pickled_class} tries to set attribute {name!r}")

    def __repr__(self) -> str:
        return f"<pickled {self.pickled_class}>"

    @property
    def attributes(self) -> dict:
        """The object's pickled ``__dict__`` (empty when it had none)."""
        state = self.state
        if isinstance(state, tuple) and len(state) == 2:  # (dict state, slot state)
            state = state[0]
        return state if isinstance(state, dict) else {}


_inert_types: dict[str, type] = {}


def _inert_type(path: str) -> type:
    if path not in _inert_types:
        name = path.rsplit(".", 1)[-1]
        _inert_types[path] = type(name, (PickledObject,), {"pickled_class": path})
    return _inert_types[path]


# ---------------------------------------------------------------- safe rebuild helpers


class _Storage:
    """A storage read from the zip: a flat tensor of its dtype."""

    def __init__(self, flat: torch.Tensor) -> None:
        self.flat = flat


def _rebuild_tensor(storage, offset, size, stride, requires_grad=False, hooks=None, *meta):
    if not isinstance(storage, _Storage):
        raise BokehkitError("pickled tensor does not refer to a storage of the checkpoint")
    try:
        size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
        return torch.as_strided(storage.flat, size, stride, int(offset))
    except (TypeError, ValueError, RuntimeError) as exc:
        raise BokehkitError(f"pickled tensor has an invalid layout ({exc})") from None


def _rebuild_parameter(data, requires_grad=False, hooks=None, *state):
    if not isinstance(data, torch.Tensor):
        raise BokehkitError("pickled parameter does not hold a tensor")
    return data


def _rebuild_from_type_v2(func, new_type, args, state):
    if func not in (_rebuild_tensor, _rebuild_parameter) or not isinstance(args, tuple):
        raise BokehkitError("pickled tensor subclass is rebuilt by an unknown function")
    return func(*args)


def _device(*args):
    if not all(isinstance(a, (str, int)) for a in args):
        raise BokehkitError("pickled torch.device has unexpected arguments")
    return torch.device("cpu")  # everything is loaded on the CPU


def _reconstructor(cls, base, state):
    # copyreg._reconstructor (pickle protocols 0/1): only for the inert records.
    if isinstance(cls, type) and issubclass(cls, PickledObject):
        return cls()
    raise BokehkitError(f"pickle reconstructs {cls!r}, which is not a known class")


_FUNCTIONS = {
    "torch._utils._rebuild_tensor_v2": _rebuild_tensor,
    "torch._utils._rebuild_tensor": _rebuild_tensor,
    "torch._utils._rebuild_parameter": _rebuild_parameter,
    "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
    "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    "torch.device": _device,
    "torch.Size": torch.Size,
    "collections.OrderedDict": collections.OrderedDict,
    "builtins.set": set,
    "builtins.frozenset": frozenset,
    "builtins.dict": dict,
    "builtins.list": list,
    "builtins.tuple": tuple,
    "copyreg._reconstructor": _reconstructor,
    # diffusers' FrozenDict (a module's config) is an OrderedDict with attribute access.
    "diffusers.configuration_utils.FrozenDict": collections.OrderedDict,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, storages: dict[str, bytes] | zipfile.ZipFile, prefix: str):
        super().__init__(io.BytesIO(data))
        self._zip = storages
        self._prefix = prefix
        self._loaded: dict[str, _Storage] = {}

    def find_class(self, module: str, name: str) -> Any:
        # Protocol-2 pickles spell some modules the Python 2 way.
        module = {"__builtin__": "builtins", "copy_reg": "copyreg"}.get(module, module)
        path = f"{module}.{name}"
        if path in _FUNCTIONS:
            return _FUNCTIONS[path]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]  # only ever a marker inside a persistent id
        if module == "torch" and name in _DTYPE_NAMES:
            return getattr(torch, name)
        if path in KNOWN_CLASSES:
            return _inert_type(path)
        hint = ""
        if module.startswith("peft"):
            hint = " (the ControlNet holds peft LoRA layers: merge them before saving)"
        raise BokehkitError(
            f"refusing to load the checkpoint: its pickle references {path}, which is not "
            f"a tensor, a plain container or a known MagicBokeh class{hint}; "
            "nothing in it was run"
        )

    def persistent_load(self, pid: Any) -> _Storage:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise BokehkitError(f"checkpoint has an unknown persistent reference {pid!r:.80}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, torch.dtype) or not isinstance(key, str):
            raise BokehkitError("checkpoint has a malformed storage reference")
        if key not in self._loaded:
            name = f"{self._prefix}data/{key}"
            try:
                raw = self._zip.read(name)
            except KeyError:
                raise BokehkitError(f"checkpoint lacks the storage record {name}") from None
            flat = torch.frombuffer(bytearray(raw), dtype=torch.uint8) if raw else None
            if flat is None:
                flat = torch.empty(0, dtype=dtype)
            else:
                itemsize = torch.empty(0, dtype=dtype).element_size()
                if len(raw) % itemsize:
                    raise BokehkitError(f"storage {name} is not a whole number of {dtype}")
                flat = flat.view(dtype)
            if isinstance(numel, int) and numel * flat.element_size() > len(raw):
                raise BokehkitError(f"storage {name} is shorter than the pickle says")
            self._loaded[key] = _Storage(flat)
        return self._loaded[key]


def _pickle_record(z: zipfile.ZipFile) -> tuple[str, str]:
    """(record name of data.pkl, its folder prefix) in a torch.save zip."""
    names = [n for n in z.namelist() if n.endswith("data.pkl") and n.count("/") == 1]
    if len(names) != 1:
        raise BokehkitError("not a torch.save checkpoint (no single <name>/data.pkl inside)")
    prefix = names[0][: -len("data.pkl")]
    order = f"{prefix}byteorder"
    if order in z.namelist() and z.read(order).strip() not in (b"little", b""):
        raise BokehkitError("checkpoint was saved on a big-endian machine; not supported")
    return names[0], prefix


#: torch.save stores its records uncompressed, so what a checkpoint unpacks to is about its
#: own size; this much more (for a re-zipped copy) is allowed, and nothing beyond.
UNPACKED_SLACK = 4
UNPACKED_EXTRA_BYTES = 64 << 20


def _check_sizes(z: zipfile.ZipFile, path: Path) -> None:
    """Refuse a zip bomb from its directory, before a byte of it is decompressed (zipfile
    never returns more than a member's declared size, so the directory bounds the memory)."""
    declared = sum(info.file_size for info in z.infolist())
    allowed = UNPACKED_SLACK * path.stat().st_size + UNPACKED_EXTRA_BYTES
    if declared > allowed:
        raise BokehkitError(
            f"{path}: unpacks to {declared / 1e6:.0f} MB from {path.stat().st_size / 1e6:.1f} "
            "MB; a torch.save checkpoint is not compressed like that (a zip bomb?): refused"
        )


def load_checkpoint(path: str | Path) -> Any:
    """Unpickle a ``torch.save`` zip safely (see the module docstring); BokehkitError if it
    is not one or if its pickle names anything we do not rebuild ourselves."""
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise BokehkitError(
            f"{path} is not a torch.save zip checkpoint (legacy or damaged file?); "
            "MagicBokeh's lora.pkl is one"
        )
    with zipfile.ZipFile(path) as z:
        _check_sizes(z, path)
        record, prefix = _pickle_record(z)
        unpickler = _RestrictedUnpickler(z.read(record), z, prefix)
        try:
            return unpickler.load()
        except BokehkitError:
            raise
        except (pickle.UnpicklingError, EOFError, TypeError, ValueError, AttributeError) as exc:
            raise BokehkitError(f"{path}: damaged checkpoint pickle ({exc})") from None


# ------------------------------------------------------------ reading the inert modules


def _children(obj: PickledObject) -> Iterator[tuple[str, PickledObject | None]]:
    yield from (obj.attributes.get("_modules") or {}).items()


def module_state_dict(module: PickledObject, prefix: str = "") -> dict[str, torch.Tensor]:
    """The ``state_dict()`` the pickled module would have: parameters and persistent
    buffers, dotted names, contiguous CPU tensors."""
    if not isinstance(module, PickledObject):
        raise BokehkitError(f"expected a pickled module at {prefix or 'top level'}")
    attrs = module.attributes
    out: dict[str, torch.Tensor] = {}
    skip = attrs.get("_non_persistent_buffers_set") or set()
    for table in ("_parameters", "_buffers"):
        for name, tensor in (attrs.get(table) or {}).items():
            if tensor is None or (table == "_buffers" and name in skip):
                continue
            if not isinstance(tensor, torch.Tensor):
                raise BokehkitError(f"{prefix}{name} in the pickled module is not a tensor")
            out[prefix + name] = tensor.contiguous().clone()
    for name, child in _children(module):
        if child is not None:
            out.update(module_state_dict(child, f"{prefix}{name}."))
    return out


def module_config(module: PickledObject) -> dict:
    """The diffusers config (``register_to_config`` arguments) of a pickled model."""
    attrs = module.attributes
    config = attrs.get("_internal_dict")
    if isinstance(config, PickledObject):  # a FrozenDict pickled as a known dict type
        config = config.items
    if not isinstance(config, dict):
        raise BokehkitError(f"the pickled {module.pickled_class} carries no diffusers config")
    return {k: v for k, v in config.items() if isinstance(k, str)}


def module_classes(module: PickledObject) -> set[str]:
    """Every class path in the pickled module tree (to check what was saved)."""
    out = {module.pickled_class}
    for _, child in _children(module):
        if child is not None:
            out |= module_classes(child)
    return out

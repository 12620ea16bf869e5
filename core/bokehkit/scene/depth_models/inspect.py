"""What network a depth checkpoint holds, read without torch and without running it.

`bokehkit models import depth-anything-v2-base FILE --sha256 HEX` takes a file the manifest
does not pin: its hash only proves the user has the file they meant. This reader checks it
is that network: a ``torch.save`` zip whose state dict has Depth-Anything-V2's position
embeddings, of the right width, and the right number of transformer blocks.

The pickle is read by our own unpickler: tensors become their shapes, the few torch helpers
a state dict names become our own functions, and any other class an inert record; nothing
the file names is imported or called.
"""

from __future__ import annotations

import collections
import io
import pickle
import zipfile
from pathlib import Path

from ...errors import BokehkitError
from .specs import POS_GRID, DepthNet

#: A state dict's pickle is a few hundred kB; anything far larger is not one.
MAX_PICKLE_BYTES = 64 << 20


class _Inert:
    """Stands for any class the pickle names: keeps what it was given, does nothing."""

    def __init__(self, *args, **kwargs) -> None:
        self.args, self.state = args, None

    def __setstate__(self, state) -> None:
        self.state = state

    def __setitem__(self, key, value) -> None:
        pass

    def append(self, value) -> None:
        pass

    def extend(self, values) -> None:
        pass


class Shape(tuple):
    """A tensor, as its shape."""


def _tensor(storage, offset, size, *rest) -> Shape:
    return Shape(int(n) for n in size)


def _parameter(data, *rest):
    return data


class _ShapeUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name in ("_rebuild_tensor_v2", "_rebuild_tensor"):
            return _tensor
        if module == "torch._utils" and name == "_rebuild_parameter":
            return _parameter
        return type(name, (_Inert,), {})  # inert: never the real thing

    def persistent_load(self, pid):
        return None  # storages hold the numbers; only the shapes are wanted


def checkpoint_shapes(path: str | Path) -> dict[str, tuple[int, ...]]:
    """Tensor name → shape of a torch.save state dict (a training checkpoint's "model"
    entry, keys without DDP's "module." prefix); BokehkitError if it is not one."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as z:
            records = [i for i in z.infolist() if i.filename.endswith("/data.pkl")]
            if len(records) != 1 or records[0].file_size > MAX_PICKLE_BYTES:
                raise BokehkitError(f"{path.name} is not a torch.save checkpoint")
            data = z.read(records[0])
    except (zipfile.BadZipFile, OSError, EOFError):
        raise BokehkitError(f"{path.name} is not a torch.save checkpoint") from None
    try:
        obj = _ShapeUnpickler(io.BytesIO(data)).load()
    except Exception:  # noqa: BLE001 - any malformed pickle is "not a checkpoint"
        raise BokehkitError(f"{path.name}: its pickle cannot be read") from None
    if isinstance(obj, dict) and isinstance(obj.get("model"), dict):
        obj = obj["model"]
    if not isinstance(obj, dict):
        raise BokehkitError(f"{path.name} holds no state dict")
    return {
        str(k).removeprefix("module."): tuple(v) for k, v in obj.items() if isinstance(v, Shape)
    }


def check_checkpoint(net: DepthNet, path: str | Path) -> None:
    """BokehkitError unless `path` holds `net`'s network (width and blocks)."""
    from .checkpoint import describe

    path = Path(path)
    shapes = checkpoint_shapes(path)
    pos = shapes.get("pretrained.pos_embed")
    if pos is None or len(pos) != 3 or pos[1] != POS_GRID * POS_GRID + 1:
        raise BokehkitError(
            f"{path.name} is not a Depth-Anything-V2 checkpoint (no 37×37 position "
            f"embeddings): not imported as {net.model_id}"
        )
    blocks = len({k.split(".")[2] for k in shapes if k.startswith("pretrained.blocks.")})
    if (pos[2], blocks) != (net.embed_dim, net.depth):
        raise BokehkitError(
            f"{path.name} holds {describe(pos[2], blocks)}, but {net.model_id} is "
            f"{describe(net.embed_dim, net.depth)}: not imported"
        )

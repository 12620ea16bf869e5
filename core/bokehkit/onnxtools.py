"""ONNX export and onnxruntime sessions shared by the learned models (depth, SR).

torch is imported only by `export_onnx`, onnxruntime only by `session`.
"""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import warnings
from pathlib import Path

from .errors import BokehkitError

_lock = threading.Lock()
_sessions: dict[tuple, object] = {}


def export_onnx(
    model,
    example,
    dest: str | Path,
    input_name: str,
    output_name: str,
    dynamic_shapes,
    opset: int = 18,
) -> Path:
    """Export `model` (dynamo exporter, weights inside the file) to `dest`, atomically."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.export")
    try:
        quiet_export(model, (example,), tmp, [input_name], [output_name], dynamic_shapes, opset)
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def quiet_export(
    model,
    args: tuple,
    path: str | Path,
    input_names: list[str],
    output_names: list[str],
    dynamic_shapes,
    opset: int = 18,
    external_data: bool = False,
) -> None:
    """torch.onnx.export with the dynamo exporter, without its chatter on stdout and in
    the log ("torchvision is not installed", and the like)."""
    import torch

    quiet = logging.getLogger("torch.onnx")
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model.eval(),
                args,
                str(path),
                input_names=input_names,
                output_names=output_names,
                dynamic_shapes=dynamic_shapes,
                opset_version=opset,
                dynamo=True,
                external_data=external_data,
            )
    finally:
        quiet.setLevel(level)


def session(path: str | Path, threads: int | None = None):
    """A CPU onnxruntime session for `path`, kept while the file is unchanged (one at a time:
    these models are large)."""
    import onnxruntime as ort

    path = Path(path)
    key = (str(path), path.stat().st_mtime_ns, threads)
    with _lock:
        sess = _sessions.get(key)
        if sess is None:
            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads or os.cpu_count() or 1
            opts.log_severity_level = 3
            try:
                sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
            except Exception as exc:  # noqa: BLE001 - a damaged file: say what to do
                raise BokehkitError(
                    f"cannot load {path} ({type(exc).__name__}); delete it and run again: "
                    "it is exported again from the model's weights"
                ) from None
            _sessions.clear()
            _sessions[key] = sess
    return sess

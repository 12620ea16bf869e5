"""One photo of `bokehkit batch`, as a local worker process or a Ray task runs it
(batch.py, batch_ray.py): the render, its result record, the output's hash."""

from __future__ import annotations

import argparse
import copy
import hashlib
import time
from pathlib import Path

from ..errors import BokehkitError
from ..options import settings_from_args


def _file_hash(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def render_task(task: dict, args: argparse.Namespace, out_dir: str) -> dict:
    """Render one photo; never raises: {"status", "seconds", "error", "sha256"}."""
    from ..pipeline import render_file
    from ..progress import Progress

    started = time.monotonic()
    result = {"input": task["input"], "output": task["output"], "status": "failed"}
    try:
        photo_args = copy.copy(args)
        for dest, path in task["options"].items():
            setattr(photo_args, dest, path)
        out = Path(out_dir) / task["output"]
        out.parent.mkdir(parents=True, exist_ok=True)
        view = "depth" if args.depth_view else "bokeh"
        render_file(task["input"], out, settings_from_args(photo_args), Progress(), view=view)
        result.update(status="rendered", sha256=_file_hash(out))
    except BokehkitError as exc:
        result["error"] = str(exc)
    except MemoryError:
        result["error"] = "out of memory"
    except Exception as exc:  # noqa: BLE001 - one photo never stops the batch
        result["error"] = f"internal error: {type(exc).__name__}: {exc}"
    result["seconds"] = round(time.monotonic() - started, 3)
    return result


def failure(task: dict, error: str) -> dict:
    """The result of a photo whose worker never answered."""
    return {
        "input": task["input"],
        "output": task["output"],
        "status": "failed",
        "seconds": 0.0,
        "error": error,
    }

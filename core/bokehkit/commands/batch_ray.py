"""`bokehkit batch --ray`: the batch's photos as Ray tasks.

Ray nodes need not share a disk with the machine that runs the batch: each task carries
its photo and sidecars as bytes, renders them in a private folder on its node with the same
`render_task` as a local worker, and returns the output's bytes, which are written here.
Only this module imports ray (an optional extra, requirements/ray.txt).
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
from pathlib import Path

from ..errors import BokehkitError


def _render_shipped(task: dict, files: dict[str, bytes], args: argparse.Namespace) -> dict:
    """On a Ray worker: write the shipped files, render, send the output back."""
    from .batch_tasks import render_task

    folder = Path(tempfile.mkdtemp(prefix="bokehkit-ray-"))
    try:
        local = dict(task, options={})
        for dest, data in files.items():
            source = task["input"] if dest == "input" else task["options"][dest]
            name = dest + Path(source).suffix
            (folder / name).write_bytes(data)
            if dest == "input":
                local["input"] = str(folder / name)
            else:
                local["options"][dest] = str(folder / name)
        local["output"] = "out" + Path(task["output"]).suffix
        result = render_task(local, args, str(folder))
        result.update(input=task["input"], output=task["output"])
        if result["status"] == "rendered":
            result["data"] = (folder / local["output"]).read_bytes()
        return result
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def run_on_ray(todo: list[dict], args, out_dir: Path, address: str, jobs: int, finished) -> None:
    try:
        import ray
    except ImportError:
        raise BokehkitError(
            "--ray needs Ray in the engine: pip install -r requirements/ray.txt"
        ) from None
    from .batch_tasks import _file_hash, failure
    from .remote_render import write_atomically

    started_here = False
    if not ray.is_initialized():
        try:
            if address == "auto" and not os.environ.get("RAY_ADDRESS"):
                # A cluster for this run only, on this machine and its loopback.
                ray.init(
                    num_cpus=jobs,
                    include_dashboard=False,
                    log_to_driver=False,
                    _node_ip_address="127.0.0.1",
                )
            else:
                target = os.environ.get("RAY_ADDRESS") if address == "auto" else address
                ray.init(address=target, log_to_driver=False)
        except Exception as exc:  # noqa: BLE001 - Ray raises many kinds; all mean the same
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise BokehkitError(f"--ray {address}: cannot start or join Ray ({first})") from None
        started_here = True
    args_copy = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "run"})
    remote = ray.remote(num_cpus=1)(_render_shipped)
    try:
        refs = {}
        for task in todo:
            files = {"input": Path(task["input"]).read_bytes()}
            for dest, path in task["options"].items():
                files[dest] = Path(path).read_bytes()
            refs[remote.remote(task, files, args_copy)] = task
        pending = list(refs)
        while pending:
            done, pending = ray.wait(pending, num_returns=1)
            task = refs[done[0]]
            try:
                result = ray.get(done[0])
            except Exception as exc:  # noqa: BLE001 - a worker died: this photo failed
                result = failure(task, f"the Ray task failed ({type(exc).__name__})")
            data = result.pop("data", None)
            if data is not None:
                out = out_dir / task["output"]
                out.parent.mkdir(parents=True, exist_ok=True)
                write_atomically(out, data)
                result["sha256"] = _file_hash(out)
            finished(result)
    finally:
        if started_here:
            ray.shutdown()

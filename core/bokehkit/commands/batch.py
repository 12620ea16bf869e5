"""`bokehkit batch`: many photos, local worker processes or a Ray cluster, resumable.

Per photo, depth and masks come as for a single render (embedded depth, a depth model,
ISNet), or from sidecar files beside it: `NAME.depth.EXT` (as --depth), `NAME.focus.EXT`
(as --focus-mask) and `NAME.blur.EXT` (as --blur-mask). Outputs are written atomically
(render_file); `OUT_DIR/.bokehkit-batch.json` records, per output, a key of the input's,
sidecars' and settings' contents and the output's SHA-256, so a re-run skips what is done
and redoes what is missing, changed or damaged. One photo's failure is recorded in
`OUT_DIR/summary.json` and the batch goes on.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from pathlib import Path

from .. import __version__
from ..errors import BokehkitError
from ..options import add_render_options, settings_from_args
from .batch_tasks import _file_hash, failure, render_task

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".tif", ".tiff", ".webp", ".heic", ".heif")
#: Sidecar kinds: NAME.<kind>.EXT beside the photo, and the render option each stands for.
SIDECARS = {"depth": "depth", "focus": "focus_mask", "blur": "blur_mask"}
MANIFEST = ".bokehkit-batch.json"
SUMMARY = "summary.json"
EXIT_SOME_FAILED = 1


def register(sub) -> None:
    """Add `batch` to the main parser's sub-commands."""
    p = sub.add_parser("batch", help="render many photos (folders, local workers or Ray)")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="photos or folders (recursive)")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR", help="output folder")
    p.add_argument("--jobs", type=int, default=None, help="worker processes (default: cores)")
    p.add_argument(
        "--ray",
        default="none",
        metavar="none|auto|ADDRESS",
        help="run on Ray: auto = $RAY_ADDRESS or a local cluster for this run (pip install "
        "-r requirements/ray.txt)",
    )
    p.add_argument("-q", "--quiet", action="store_true", help="no progress lines")
    add_render_options(p)
    p.set_defaults(run=run_batch)


# ---------------------------------------------------------------------------- the plan
def find_photos(inputs: list[str], out_dir: Path) -> list[tuple[Path, Path]]:
    """(photo, output path relative to OUT_DIR) for every image in `inputs`; sidecars and
    anything inside OUT_DIR are not photos."""
    found: list[tuple[Path, Path]] = []
    out_resolved = out_dir.resolve()
    for text in inputs:
        root = Path(text)
        if root.is_dir():
            for path in sorted(p for p in root.rglob("*") if p.is_file()):
                if _is_photo(path) and out_resolved not in path.resolve().parents:
                    found.append((path, path.relative_to(root)))
        elif root.is_file():
            if not _is_photo(root):
                kinds = ", ".join(IMAGE_SUFFIXES)
                raise BokehkitError(f"{root}: not a photo bokehkit reads ({kinds})")
            found.append((root, Path(root.name)))
        else:
            raise BokehkitError(f"{root}: no such file or folder")
    seen: set[Path] = set()
    unique = []
    for photo, rel in found:
        n, candidate = 2, rel
        while candidate in seen:  # two photos of the same name from different inputs
            candidate = rel.with_name(f"{rel.stem}-{n}{rel.suffix}")
            n += 1
        seen.add(candidate)
        unique.append((photo, candidate))
    return unique


def _is_photo(path: Path) -> bool:
    if path.suffix.lower() not in IMAGE_SUFFIXES or path.name.startswith("."):
        return False
    parts = path.name.split(".")
    return not (len(parts) >= 3 and parts[-2].lower() in SIDECARS)


def sidecars(photo: Path) -> dict[str, Path]:
    """{render option: sidecar file} found beside `photo` (NAME.depth.*, NAME.focus.*, …)."""
    found = {}
    for kind, dest in SIDECARS.items():
        for candidate in sorted(photo.parent.glob(f"{_glob_escape(photo.stem)}.{kind}.*")):
            if candidate.suffix.lower() in (*IMAGE_SUFFIXES, ".npy") and candidate.is_file():
                found[dest] = candidate
                break
    return found


def _glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def settings_words(args: argparse.Namespace) -> list[str]:
    """The render options given, as command-line words (what the manifest key hashes)."""
    from .remote_render import remote_argv

    return remote_argv(args)[0]


def make_tasks(args: argparse.Namespace, out_dir: Path) -> list[dict]:
    words = settings_words(args)
    tasks = []
    for photo, rel in find_photos(args.inputs, out_dir):
        files = {"input": photo, **sidecars(photo)}
        key = hashlib.sha256(json.dumps([__version__, words]).encode())
        for name, path in sorted(files.items()):
            key.update(f"{name}:{_file_hash(path)};".encode())
        options = {dest: str(path) for dest, path in files.items() if dest != "input"}
        tasks.append(
            {"input": str(photo), "output": str(rel), "options": options, "key": key.hexdigest()}
        )
    return tasks


# ------------------------------------------------------------------------ the batch
class Manifest:
    """OUT_DIR/.bokehkit-batch.json: {output: {"key", "sha256"}} of outputs known good."""

    def __init__(self, out_dir: Path) -> None:
        self.path = out_dir / MANIFEST
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            self.done = data["done"] if isinstance(data.get("done"), dict) else {}
        except (OSError, ValueError, AttributeError, KeyError):
            self.done = {}

    def complete(self, task: dict, out_dir: Path) -> bool:
        entry = self.done.get(task["output"])
        out = out_dir / task["output"]
        if not isinstance(entry, dict) or entry.get("key") != task["key"] or not out.is_file():
            return False
        return entry.get("sha256") == _file_hash(out)  # a damaged output is redone

    def record(self, task: dict, sha256: str) -> None:
        self.done[task["output"]] = {"key": task["key"], "sha256": sha256}
        write_json(self.path, {"version": 1, "done": self.done})


def write_json(path: Path, data) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    temp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    os.replace(temp, path)


def _check_args(args: argparse.Namespace) -> None:
    for dest, flag in (
        ("depth", "--depth"),
        ("focus_mask", "--focus-mask"),
        ("blur_mask", "--blur-mask"),
    ):
        if getattr(args, dest):
            raise BokehkitError(
                f"{flag} names one file; in a batch, give each photo NAME.depth.*, "
                "NAME.focus.* or NAME.blur.* beside it (docs/scale-out.md)"
            )
    if args.reference or args.save_float or args.seed is not None:
        raise BokehkitError("--reference, --seed and --save-float are for single renders")
    if args.jobs is not None and not 1 <= args.jobs <= 256:
        raise BokehkitError(f"--jobs must be from 1 to 256, not {args.jobs}")


def run_batch(args: argparse.Namespace) -> int:
    _check_args(args)
    out_dir = Path(args.output)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise BokehkitError(f"{out_dir}: cannot make the output folder ({exc.strerror})") from None
    from ..pipeline import check_settings

    check_settings(settings_from_args(args))  # bad options are a usage error, before any photo
    tasks = make_tasks(args, out_dir)
    if not tasks:
        raise BokehkitError("no photos found in the inputs")
    manifest = Manifest(out_dir)
    results: list[dict] = []
    todo = []
    for task in tasks:
        if manifest.complete(task, out_dir):
            results.append(
                {
                    "input": task["input"],
                    "output": task["output"],
                    "status": "skipped",
                    "seconds": 0.0,
                }
            )
        else:
            todo.append(task)
    progress = BatchProgress(len(tasks), len(results), quiet=args.quiet)
    by_output = {t["output"]: t for t in todo}

    def finished(result: dict) -> None:
        if result["status"] == "rendered":
            manifest.record(by_output[result["output"]], result.pop("sha256"))
        results.append(result)
        progress.done(result)

    jobs = args.jobs or os.cpu_count() or 1
    if todo:
        if args.ray != "none":
            from .batch_ray import run_on_ray

            run_on_ray(todo, args, out_dir, args.ray, jobs, finished)
        else:
            run_locally(todo, args, out_dir, jobs, finished)
    order = {t["output"]: i for i, t in enumerate(tasks)}
    results.sort(key=lambda r: order[r["output"]])
    counts = {s: sum(r["status"] == s for r in results) for s in ("rendered", "skipped", "failed")}
    write_json(out_dir / SUMMARY, {**counts, "seconds": progress.elapsed(), "photos": results})
    print(
        f"{counts['rendered']} rendered, {counts['skipped']} skipped, {counts['failed']} failed "
        f"in {progress.elapsed():.1f} s; summary: {out_dir / SUMMARY}"
    )
    return EXIT_SOME_FAILED if counts["failed"] else 0


def run_locally(todo: list[dict], args, out_dir: Path, jobs: int, finished) -> None:
    args_copy = argparse.Namespace(**{k: v for k, v in vars(args).items() if k != "run"})
    if jobs == 1 or len(todo) == 1:
        for task in todo:
            finished(render_task(task, args_copy, str(out_dir)))
        return
    with ProcessPoolExecutor(max_workers=min(jobs, len(todo))) as pool:
        futures = {pool.submit(render_task, t, args_copy, str(out_dir)): t for t in todo}
        pending = set(futures)
        while pending:
            done, pending = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                task = futures[future]
                try:
                    finished(future.result())
                except Exception as exc:  # noqa: BLE001 - a worker process died
                    why = f"the worker process died ({type(exc).__name__})"
                    finished(failure(task, why))


class BatchProgress:
    """One line per finished photo, with the share done and an ETA from the pace so far."""

    def __init__(self, total: int, skipped: int, quiet: bool = False) -> None:
        self.total, self.count, self.rendered = total, skipped, 0
        self.quiet = quiet
        self._started = time.monotonic()
        if skipped and not quiet:
            sys.stderr.write(f"{skipped} of {total} photos already done; skipping them\n")

    def elapsed(self) -> float:
        return round(time.monotonic() - self._started, 3)

    def done(self, result: dict) -> None:
        self.count += 1
        self.rendered += 1
        if self.quiet:
            return
        left = self.total - self.count
        eta = self.elapsed() / self.rendered * left
        what = result["status"] if result["status"] != "failed" else f"FAILED: {result['error']}"
        sys.stderr.write(
            f"[{self.count}/{self.total}] {result['output']}: {what} ({result['seconds']:.1f} s)"
            f"; ETA {_duration(eta) if left else 'done'}\n"
        )
        sys.stderr.flush()


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    return f"{seconds // 60} min {seconds % 60:02d} s" if seconds >= 60 else f"{seconds} s"

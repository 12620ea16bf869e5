"""The engine side of `bokehkit render --remote` (commands/remote_render.py): a
`render_file` request names the uploaded photo and the render options as command-line
words, parsed by the same parser as a local render (options.py), and runs `render_file`
in the client's job folder (docs/protocol.md)."""

from __future__ import annotations

from ..errors import BokehkitError
from ..options import FILE_OPTIONS, LOCAL_ONLY, render_parser, settings_from_args
from ..pipeline import render_file
from ..progress import Progress
from .jobdirs import _NAME, JobFolders


def render_uploaded_file(request: dict, folders: JobFolders, progress: Progress) -> dict:
    """Run a `render_file` request (docs/protocol.md) and return its result event."""
    folder = folders.folder(request.get("job_dir"))
    names = {"input": request.get("input"), "output": request.get("output")}
    for key, name in names.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise BokehkitError(f"render_file: {key} must be a plain file name, not {name!r}")
    argv = request.get("argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise BokehkitError("render_file: argv must be a list of strings")
    args = render_parser().parse_args(argv)
    for dest in LOCAL_ONLY:
        if getattr(args, dest) not in (None, False):
            raise BokehkitError(f"render_file: --{dest.replace('_', '-')} is not for remote")
    if not _NAME.fullmatch(args.model):  # a bundle in the engine's store, never a path
        raise BokehkitError(f"render_file: --model must be a bundle name, not {args.model!r}")
    for dest in (names["input"], *[getattr(args, d) for d in FILE_OPTIONS]):
        if dest is not None:
            with folders.open(request.get("job_dir"), dest, "render_file"):
                pass  # a plain regular file in this client's job folder, else refused
    for dest in FILE_OPTIONS:
        if getattr(args, dest) is not None:
            setattr(args, dest, str(folder / getattr(args, dest)))
    view = "depth" if args.depth_view else "bokeh"
    output = folder / names["output"]
    report = render_file(
        folder / names["input"], output, settings_from_args(args), progress, view=view
    )
    return {"type": "result", "file": names["output"], "report": report.lines()}

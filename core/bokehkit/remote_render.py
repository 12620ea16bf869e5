"""`bokehkit render --remote HOST:PORT`: the same render, on an engine elsewhere.

The client uploads the photo and the files its options name (depth map, masks) into a job
folder on the engine, with the render options as command-line words; the engine parses
them with the very same parser and runs the very same `render_file`, and the client
downloads the file it wrote. So the result is byte for byte the file a local render would
write (pixels, ICC profile, EXIF), whatever options exist now or are added later.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .errors import BokehkitError
from .jobdirs import _NAME, JobFolders
from .progress import Progress

#: Render options that name files: they are uploaded and renamed in the job folder.
FILE_OPTIONS = {"depth": "depth", "focus_mask": "focus-mask", "blur_mask": "blur-mask"}
#: Options a remote render refuses: they write files on the engine's side.
LOCAL_ONLY = ("reference", "save_float", "seed")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # never sys.exit inside the engine
        raise BokehkitError(f"render options: {message}")


def _render_parser() -> argparse.ArgumentParser:
    from .cli import _add_render_options

    parser = _Parser(prog="bokehkit render", add_help=False)
    _add_render_options(parser)
    return parser


def _job_name(stem: str, path: str | os.PathLike) -> str:
    suffix = "".join(c for c in Path(path).suffix.lower() if c.isalnum() or c == ".")[:12]
    return stem + suffix


# ------------------------------------------------------------------------ the engine side
def render_uploaded_file(request: dict, folders: JobFolders, progress: Progress) -> dict:
    """Run a `render_file` request (docs/protocol.md) and return its result event."""
    from .cli import _settings
    from .pipeline import render_file

    folder = folders.folder(request.get("job_dir"))
    names = {"input": request.get("input"), "output": request.get("output")}
    for key, name in names.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise BokehkitError(f"render_file: {key} must be a plain file name, not {name!r}")
    argv = request.get("argv")
    if not isinstance(argv, list) or not all(isinstance(a, str) for a in argv):
        raise BokehkitError("render_file: argv must be a list of strings")
    args = _render_parser().parse_args(argv)
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
    report = render_file(folder / names["input"], output, _settings(args), progress, view=view)
    return {"type": "result", "file": names["output"], "report": report.lines()}


# ------------------------------------------------------------------------ the client side
def add_remote_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("remote engine (docs/scale-out.md)")
    g.add_argument("--remote", metavar="HOST:PORT", help="render on `bokehkit serve --tls`")
    g.add_argument("--token-file", metavar="FILE", help="with --remote: the engine's token")
    g.add_argument(
        "--fingerprint", metavar="SHA256:…", help="with --remote: the certificate it printed"
    )


def plugin_package():
    """bokehkit_plugin (its remote client is standard library only), importable from a
    development checkout too."""
    try:
        import bokehkit_plugin.remote  # noqa: F401
    except ImportError:
        plugin_dir = Path(__file__).resolve().parents[2] / "plugin"
        if (plugin_dir / "bokehkit_plugin").is_dir() and str(plugin_dir) not in sys.path:
            sys.path.append(str(plugin_dir))
        import bokehkit_plugin.remote  # noqa: F401
    import bokehkit_plugin

    return bokehkit_plugin


def remote_argv(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The render options given (those not at their defaults) as command-line words, with
    files renamed for the job folder; and {job-folder name: local path} to upload."""
    argv: list[str] = []
    uploads: dict[str, str] = {}
    for dest in LOCAL_ONLY:
        if getattr(args, dest, None) not in (None, False):
            raise BokehkitError(f"--{dest.replace('_', '-')} cannot be used with --remote")
    for action in _render_parser()._actions:
        if not action.option_strings or not hasattr(args, action.dest):
            continue
        value = getattr(args, action.dest)
        if value == action.default:
            continue
        flag = action.option_strings[0]
        if action.nargs == 0:  # store_true / store_false: the flag itself
            argv.append(flag)
            continue
        if action.dest in FILE_OPTIONS:
            name = _job_name(FILE_OPTIONS[action.dest], value)
            uploads[name] = value
            value = name
        elif isinstance(value, tuple):
            value = ",".join(repr(float(v)) for v in value)
        argv += [flag, str(value)]
    return argv, uploads


def render_remote(args: argparse.Namespace, inp: Path, out: Path, on_progress) -> list[str]:
    """Render `inp` into `out` on the engine `args.remote`; the report's lines. Any failure
    (unreachable, wrong token or certificate, dropped connection) is one BokehkitError and
    leaves `out` untouched."""
    from .imageio import format_for_path
    from .pipeline import check_output_folder

    if not args.token_file or not args.fingerprint:
        raise BokehkitError("--remote needs --token-file FILE and --fingerprint SHA256:…")
    plugin = plugin_package()
    remote, client_mod = plugin.remote, plugin.client
    if inp.resolve() == out.resolve():
        raise BokehkitError("the output would overwrite the input photo: choose another name")
    format_for_path(out)
    check_output_folder(out)
    if not inp.is_file():
        raise BokehkitError(f"{inp}: no such photo")
    argv, uploads = remote_argv(args)
    uploads = {_job_name("photo", inp): str(inp), **uploads}
    output_name = _job_name("result", out)
    try:
        client = remote.RemoteEngineClient(
            args.remote, remote.read_token(args.token_file), args.fingerprint
        )
        with client:
            client.ping()
            with client.raw_job() as (job_id, folder):
                for name, path in uploads.items():
                    client._put_file(job_id, folder, name, path)
                request = {"type": "render_file", "id": job_id, "job_dir": folder}
                request.update(input=next(iter(uploads)), output=output_name, argv=argv)
                client._send(request)
                event = client._wait(job_id, ("result",), on_progress, None)
                data = client.download(job_id, folder, str(event.get("file")))
    except client_mod.Cancelled:
        raise BokehkitError("the engine cancelled the render") from None
    except client_mod.EngineError as exc:
        raise BokehkitError(str(exc)) from None
    write_atomically(out, data)
    return [str(line) for line in event.get("report") or []]


def run_remote(args: argparse.Namespace, inp: Path, out: Path, bar) -> int:
    """`bokehkit render --remote`: as `bokehkit render` prints it."""
    lines = render_remote(args, inp, out, bar)
    if not args.quiet:
        for line in lines:
            print(line)
    print(f"wrote {out}")
    return 0


def write_atomically(path: Path, data: bytes) -> None:
    temp = path.with_name(f".{path.name}.{os.getpid()}.remote.tmp")
    try:
        with open(temp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise

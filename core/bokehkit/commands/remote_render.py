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
from pathlib import Path

from ..errors import BokehkitError
from ..options import FILE_OPTIONS, LOCAL_ONLY, job_name, render_parser


# ------------------------------------------------------------------------ the client side
def add_remote_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("remote engine (docs/scale-out.md)")
    g.add_argument("--remote", metavar="HOST:PORT", help="render on `bokehkit serve --tls`")
    g.add_argument("--token-file", metavar="FILE", help="with --remote: the engine's token")
    g.add_argument(
        "--fingerprint", metavar="SHA256:…", help="with --remote: the certificate it printed"
    )


def plugin_package():
    """bokehkit_plugin, installed with the engine (its remote client is standard library
    only)."""
    import bokehkit_plugin
    import bokehkit_plugin.remote  # noqa: F401

    return bokehkit_plugin


def remote_argv(args: argparse.Namespace) -> tuple[list[str], dict[str, str]]:
    """The render options given (those not at their defaults) as command-line words, with
    files renamed for the job folder; and {job-folder name: local path} to upload."""
    argv: list[str] = []
    uploads: dict[str, str] = {}
    for dest in LOCAL_ONLY:
        if getattr(args, dest, None) not in (None, False):
            raise BokehkitError(f"--{dest.replace('_', '-')} cannot be used with --remote")
    for action in render_parser()._actions:
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
            name = job_name(FILE_OPTIONS[action.dest], value)
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
    from ..io.image import format_for_path
    from ..pipeline import check_output_folder

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
    uploads = {job_name("photo", inp): str(inp), **uploads}
    output_name = job_name("result", out)
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

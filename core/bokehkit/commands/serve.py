"""`bokehkit serve`: the engine for the GIMP and Krita plug-ins (docs/protocol.md)."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BokehkitError


def _cmd_serve(args: argparse.Namespace) -> int:
    from ..serve import server, tcp  # the engine's session code: only for this command

    job_base = args.job_base
    if job_base is not None and not Path(job_base).is_dir():
        raise BokehkitError(f"--job-base {job_base}: no such folder")
    if args.tcp:
        if not args.token_file:
            raise BokehkitError("--tcp needs --token-file FILE (the token clients must send)")
        host, port = server.parse_address(args.tcp)
        token = server.read_token(args.token_file)
        hello = args.hello_timeout
        if not (hello > 0 and hello < 3600):  # NaN fails too
            raise BokehkitError(f"--hello-timeout must be from 0 to 3600 s, not {hello:g}")
        return tcp.serve_tcp(host, port, token, hello, job_base=job_base, tls=args.tls)
    if args.tls:
        raise BokehkitError("--tls is for --tcp HOST:PORT")
    return server.serve_stdio(job_base)


def register(sub: argparse._SubParsersAction) -> None:
    """Add `serve` to the main parser's sub-commands."""
    p = sub.add_parser("serve", help="serve the GIMP/Krita plug-ins (docs/protocol.md)")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument(
        "--stdio", action="store_true", help="requests on stdin, events on stdout (default)"
    )
    mode.add_argument("--tcp", metavar="HOST:PORT", help="listen for clients (renders in turn)")
    p.add_argument("--token-file", metavar="FILE", help="with --tcp: the token clients send")
    p.add_argument("--tls", action="store_true", help="with --tcp: TLS, self-signed, pinned")
    p.add_argument(
        "--hello-timeout",
        metavar="S",
        type=float,
        default=10.0,
        help="with --tcp: seconds a client has to send its hello line (default 10)",
    )
    p.add_argument(
        "--job-base",
        metavar="DIR",
        default=None,
        help="where the engine makes job folders (default: the temp folder; for --tcp, a "
        "folder shared with the clients)",
    )
    p.set_defaults(run=_cmd_serve)

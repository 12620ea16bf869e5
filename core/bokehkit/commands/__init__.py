"""The `bokehkit` command line: one module per command, each adding its own sub-parser
(`register`); this package assembles them and maps errors to exit codes once."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading

from .. import __version__
from ..errors import BokehkitError
from ..progress import Cancelled
from . import batch, demo, install, models, render, serve

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 70
EXIT_CANCELLED = 130
#: The commands, in the order `bokehkit --help` lists them.
COMMANDS = (render, demo, serve, models, install, batch)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bokehkit", description="Photorealistic lens bokeh and super-resolution."
    )
    parser.add_argument("--version", action="version", version=f"bokehkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    for command in COMMANDS:
        command.register(sub)
    return parser


def _interrupt_on_termination() -> dict:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so that a half-written output is removed; returns
    the handlers they had, for `main` to put back."""

    def interrupt(signum, frame) -> None:
        raise KeyboardInterrupt

    saved = {}
    if threading.current_thread() is not threading.main_thread():
        return saved
    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None:
            saved[sig] = signal.signal(sig, interrupt)
    return saved


def main(argv: list[str] | None = None) -> int:
    """Run the `bokehkit` command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments after the program name (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        The exit status: 0, `EXIT_USER_ERROR` (2: one line says what to fix),
        `EXIT_CANCELLED` (130) or `EXIT_INTERNAL_ERROR` (70).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    saved = _interrupt_on_termination() if getattr(args, "interruptible", False) else {}
    try:
        return _run(args)
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def _run(args: argparse.Namespace) -> int:
    try:
        return args.run(args)
    except BokehkitError as exc:
        _fail(f"error: {exc}")
        return EXIT_USER_ERROR
    except (Cancelled, KeyboardInterrupt):
        _fail("cancelled; nothing was written")
        return EXIT_CANCELLED
    except MemoryError:
        _fail("error: out of memory; try a smaller image or a lower --sr factor")
        return EXIT_INTERNAL_ERROR
    except BrokenPipeError:
        # The reader went away (`bokehkit models list | head -1`): not an error. Later
        # writes, and Python's own flush at exit, go nowhere instead of failing again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 0
    except Exception as exc:  # noqa: BLE001 - never a traceback for the user
        if args.debug:
            raise
        _fail(f"internal error: {type(exc).__name__}: {exc} (run with --debug for details)")
        return EXIT_INTERNAL_ERROR


def _fail(message: str) -> None:
    sys.stderr.write("\n" if sys.stderr.isatty() else "")
    sys.stderr.write(f"bokehkit: {message}\n")


if __name__ == "__main__":
    sys.exit(main())

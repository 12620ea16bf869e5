"""The `bokehkit` command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
import time
from pathlib import Path

from . import __version__
from .depth import KINDS, UNITS
from .errors import BokehkitError
from .highlights import DEFAULT_GAIN
from .pipeline import DEPTH_MODEL_IDS, RenderSettings, render_file
from .progress import Cancelled, Progress
from .refine import FocusRange, parse_focus_range
from .renderers import ENGINES

EXIT_USER_ERROR = 2
EXIT_INTERNAL_ERROR = 70
EXIT_CANCELLED = 130


class ProgressBar:
    """A one-line bar on a terminal; occasional plain lines when the output is a log."""

    def __init__(self, stream=sys.stderr, enabled: bool = True) -> None:
        self.stream = stream
        self.enabled = enabled
        self.tty = stream.isatty()
        self._last_print = 0.0
        self._last_text = ""
        self._started = time.monotonic()

    def __call__(self, fraction: float, text: str) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if self.tty:
            if now - self._last_print < 0.1 and fraction < 1.0:
                return
            filled = int(30 * fraction)
            bar = "#" * filled + "-" * (30 - filled)
            line = f"\r[{bar}] {fraction * 100:3.0f}% {text[:60]:<60}"
            self.stream.write(line)
            if fraction >= 1.0:
                self.stream.write("\n")
            self.stream.flush()
        else:
            stage = text.split(",")[0]
            if stage != self._last_text or now - self._last_print > 5 or fraction >= 1.0:
                elapsed = now - self._started
                self.stream.write(f"{fraction * 100:3.0f}% {text} ({elapsed:.1f} s)\n")
                self.stream.flush()
                self._last_text = stage
            else:
                return
        self._last_print = now


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers A,B, got {text!r}") from None
    return x, y


def _add_render_options(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("depth")
    g.add_argument("--depth", metavar="FILE", help="depth or disparity map (PNG, TIFF, .npy)")
    g.add_argument(
        "--depth-units",
        choices=UNITS,
        default="relative",
        help="'m', 'cm' or 'mm' for metric depth; 'relative' otherwise (default)",
    )
    g.add_argument(
        "--depth-kind",
        choices=KINDS,
        default=None,
        help="what the map holds (default: disparity; depth for metric units)",
    )
    g.add_argument(
        "--depth-near",
        choices=("bright", "dark"),
        default=None,
        help="which end of a relative map is near (default: bright for disparity)",
    )
    g.add_argument(
        "--depth-range",
        metavar="NEAR,FAR",
        type=_point,
        default=None,
        help="metres at the near and far ends of a relative map (makes it metric)",
    )
    g.add_argument(
        "--no-embedded-depth",
        dest="embedded_depth",
        action="store_false",
        help="without --depth: ignore the depth map a phone stored in the photo",
    )
    g.add_argument(
        "--depth-model",
        choices=("auto", "none", *DEPTH_MODEL_IDS),
        default="auto",
        help="without --depth (and embedded depth): 'auto' = the best depth model installed "
        "(default), 'none' = no model, or that model (it must be installed)",
    )
    g = p.add_argument_group(
        "focus (default: the mask, else the point, else the subject ISNet finds, else the centre)"
    )
    g.add_argument(
        "--focus-mask",
        "--mask",
        metavar="FILE",
        help="painted focus mask: white = sharp, soft edges respected",
    )
    g.add_argument("--focus-point", metavar="X,Y", type=_point, help="focus on this pixel")
    g.add_argument(
        "--focus-distance",
        metavar="M",
        type=float,
        help="focal plane distance in metres (metric depth)",
    )
    g.add_argument(
        "--focus-disparity",
        metavar="D",
        type=float,
        help="focal plane as a disparity (0…1 for relative maps)",
    )
    g.add_argument(
        "--focus-range",
        metavar="NEAR,FAR",
        help="keep a depth band sharp instead of one plane: fractions of the depth from 0 "
        "(nearest) to 1 (farthest), e.g. 0.2,0.4, or metres with metric depth, e.g. 1.5m,3m",
    )
    g.add_argument(
        "--blur-mask",
        metavar="FILE",
        help="refine brush: white = more blur; painted areas are pushed away from the focal "
        "plane in proportion (grey = part of the way)",
    )
    g.add_argument(
        "--no-auto-subject",
        dest="auto_subject",
        action="store_false",
        help="do not look for the subject with ISNet when nothing says where to focus",
    )
    g = p.add_argument_group("lens")
    g.add_argument(
        "--aperture", "-f", metavar="N", type=float, default=2.0, help="f-number (default 2)"
    )
    g.add_argument(
        "--focal-length",
        metavar="MM",
        type=float,
        default=None,
        help="35 mm-equivalent focal length (default: from EXIF, else 50)",
    )
    g.add_argument(
        "--sensor-width",
        metavar="MM",
        type=float,
        default=36.0,
        help="sensor width the focal length refers to (default 36)",
    )
    g.add_argument(
        "--strength",
        metavar="K",
        type=float,
        default=None,
        help="blur radius in px per unit disparity, instead of the lens model",
    )
    g.add_argument("--blades", type=int, default=0, help="aperture blades: 0 = circle, or 5–9")
    g.add_argument("--blade-rotation", metavar="DEG", type=float, default=0.0)
    g.add_argument(
        "--cat-eye",
        metavar="0-1",
        type=float,
        default=0.0,
        help="cat's-eye bokeh toward the corners (default 0, off)",
    )
    g = p.add_argument_group("look")
    g.add_argument(
        "--highlights",
        metavar="GAIN",
        type=float,
        default=DEFAULT_GAIN,
        help="clipped small lights get back the energy their size suggests, at most GAIN "
        f"times (default {DEFAULT_GAIN:g}, 1 = off)",
    )
    g.add_argument(
        "--grain",
        metavar="AMOUNT",
        type=float,
        default=1.0,
        help="noise put back into blurred areas, 1 = match the photo, 0 = none",
    )
    g.add_argument(
        "--sr", type=int, choices=(1, 2, 4), default=1, help="super-resolution factor (default 1)"
    )
    g.add_argument(
        "--upscaler",
        choices=("classical", "realesrgan"),
        default="classical",
        help="how --sr enlarges: classical (default) or realesrgan (Real-ESRGAN x4plus; "
        "bokehkit models install realesrgan-x4plus)",
    )
    g.add_argument(
        "--sr-detail",
        metavar="AMOUNT",
        type=float,
        default=None,
        help="with --upscaler realesrgan: how much of the network's own detail is kept over a "
        "Lanczos upscale, 0 (Lanczos) to 1 (Real-ESRGAN alone); default 0.25",
    )
    g.add_argument("--engine", choices=ENGINES, default="classical")
    g.add_argument(
        "--depth-view",
        action="store_true",
        help="write the depth the render would use instead of the bokeh: near warm, far dark, "
        "the focal plane green",
    )
    g = p.add_argument_group(
        "magicbokeh engine (blur from the lens as for classical, or --strength K: the "
        "official K, 0–32; with --reference K defaults to 32)"
    )
    g.add_argument("--model", metavar="NAME", default="magicbokeh", help="bundle name")
    g.add_argument(
        "--reference",
        action="store_true",
        help="the official inference.py pipeline, fp32 (needs --depth and --focus-mask)",
    )
    g.add_argument(
        "--device",
        choices=("auto", "cpu", "cuda", "mps"),
        default="auto",
        help="auto (default): CUDA, else Apple MPS, else the CPU",
    )
    g.add_argument(
        "--precision",
        choices=("auto", "fp32", "bf16", "fp16"),
        default="auto",
        help="auto (default): fp16 on GPUs; bf16 on CPUs that have it natively, else fp32; "
        "--reference is always fp32",
    )
    g.add_argument(
        "--runtime",
        choices=("auto", "torch", "onnx"),
        default="auto",
        help="auto (default): torch where installed, else the ONNX export (bokehkit models "
        "export-onnx magicbokeh; CPU, fp32)",
    )
    g.add_argument("--seed", type=int, default=None, help="sample the VAE latent with this seed")
    g.add_argument("--save-float", metavar="FILE.npy", help="also write float32 H×W×3 in [0, 1]")


def _focus_range(args: argparse.Namespace) -> FocusRange | None:
    if args.focus_range is None:
        return None
    others = [
        flag
        for flag, value in (
            ("--focus-point", args.focus_point),
            ("--focus-distance", args.focus_distance),
            ("--focus-disparity", args.focus_disparity),
        )
        if value is not None
    ]
    if others:
        raise BokehkitError(f"--focus-range sets the focus: drop {', '.join(others)}")
    return parse_focus_range(args.focus_range)


def _settings(args: argparse.Namespace) -> RenderSettings:
    metric = args.depth_units != "relative"
    return RenderSettings(
        engine=args.engine,
        depth_path=args.depth,
        depth_units=args.depth_units,
        depth_kind=args.depth_kind or ("depth" if metric else "disparity"),
        depth_near=args.depth_near,
        depth_range_m=args.depth_range,
        focus_mask_path=args.focus_mask,
        focus_point=args.focus_point,
        focus_distance_m=args.focus_distance,
        focus_disparity=args.focus_disparity,
        focus_range=_focus_range(args),
        blur_mask_path=args.blur_mask,
        f_number=args.aperture,
        focal_length_mm=args.focal_length,
        sensor_width_mm=args.sensor_width,
        strength=args.strength,
        blades=args.blades,
        blade_rotation_deg=args.blade_rotation,
        cat_eye=args.cat_eye,
        highlight_gain=args.highlights,
        grain=args.grain,
        sr_factor=args.sr,
        upscaler=args.upscaler,
        upscaler_options={} if args.sr_detail is None else {"detail": args.sr_detail},
        engine_options=(
            {
                "model": args.model,
                "device": args.device,
                "precision": args.precision,
                "runtime": args.runtime,
            }
            if args.engine == "magicbokeh"
            else {}
        ),
        embedded_depth=args.embedded_depth,
        depth_model=args.depth_model != "none",
        depth_model_id=None if args.depth_model in ("auto", "none") else args.depth_model,
        auto_subject=args.auto_subject,
    )


def _cmd_render(args: argparse.Namespace) -> int:
    inp = Path(args.input)
    out = Path(args.output) if args.output else inp.with_name(f"{inp.stem}-bokeh{inp.suffix}")
    if args.remote:  # the same render on an engine elsewhere
        from .remote_render import run_remote

        return run_remote(args, inp, out, ProgressBar(enabled=not args.quiet))
    if args.engine == "magicbokeh" and args.reference:
        if args.runtime == "onnx":
            raise BokehkitError("--reference runs the torch network: drop --runtime onnx")
        return _render_magicbokeh_reference(args, inp, out)
    if args.reference or args.save_float or args.seed is not None:
        raise BokehkitError(
            "--reference, --seed and --save-float are for --engine magicbokeh --reference"
        )
    bar = ProgressBar(enabled=not args.quiet)
    view = "depth" if args.depth_view else "bokeh"
    report = render_file(inp, out, _settings(args), Progress(bar), view=view)
    if not args.quiet:
        for line in report.lines():
            print(line)
    print(f"wrote {out}")
    return 0


def _render_magicbokeh_reference(args: argparse.Namespace, inp: Path, out: Path) -> int:
    from .renderers.magicbokeh import render_reference_file

    bar = ProgressBar(enabled=not args.quiet)
    render_reference_file(
        inp, out, depth_path=args.depth, focus_mask_path=args.focus_mask,
        strength=args.strength, model=args.model, device=args.device, seed=args.seed,
        save_float=args.save_float, progress=Progress(bar),
    )  # fmt: skip
    if args.save_float:
        print(f"wrote {args.save_float}")
    print(f"wrote {out}")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from .sample import render_demo

    bar = ProgressBar(enabled=not args.quiet)
    result = render_demo(Path.cwd() / "bokehkit-demo", Progress(bar))
    print(f"wrote {result.output} (the photo: {result.original}; side by side: {result.compare})")
    return 0


def _cmd_serve(args: argparse.Namespace) -> int:
    from . import server

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
        return server.serve_tcp(host, port, token, hello, job_base=job_base, tls=args.tls)
    if args.tls:
        raise BokehkitError("--tls is for --tcp HOST:PORT")
    return server.serve_stdio(job_base)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bokehkit", description="Photorealistic lens bokeh and super-resolution."
    )
    parser.add_argument("--version", action="version", version=f"bokehkit {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks on errors")
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("render", help="render bokeh into a photo")
    p.add_argument("input", help="the photo (PNG, JPEG, TIFF, WebP)")
    p.add_argument("-o", "--output", help="where to write (default: INPUT-bokeh.EXT)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or report")
    _add_render_options(p)
    from .remote_render import add_remote_options

    add_remote_options(p)
    p.set_defaults(run=_cmd_render)
    p = sub.add_parser("demo", help="render the bundled sample photo")
    p.add_argument("-q", "--quiet", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(run=_cmd_demo)
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
    from .models.cli import add_models_parser

    add_models_parser(sub)
    from .install_plugins import add_parsers as add_install_parsers

    add_install_parsers(sub)
    from .batch import add_parser as add_batch_parser

    add_batch_parser(sub)
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
    parser = build_parser()
    args = parser.parse_args(argv)
    saved = _interrupt_on_termination() if args.command in ("render", "demo") else {}
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

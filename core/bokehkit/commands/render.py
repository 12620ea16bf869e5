"""`bokehkit render`: one photo, with the depth, focus, lens and output options."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import BokehkitError
from ..options import add_render_options, settings_from_args
from ..pipeline import render_file
from ..progress import Progress
from .bar import ProgressBar
from .remote_render import add_remote_options


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
    report = render_file(inp, out, settings_from_args(args), Progress(bar), view=view)
    if not args.quiet:
        for line in report.lines():
            print(line)
    print(f"wrote {out}")
    return 0


def _render_magicbokeh_reference(args: argparse.Namespace, inp: Path, out: Path) -> int:
    from .reference import render_reference_file

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


def register(sub: argparse._SubParsersAction) -> None:
    """Add `render` to the main parser's sub-commands."""
    p = sub.add_parser("render", help="render bokeh into a photo")
    p.add_argument("input", help="the photo (PNG, JPEG, TIFF, WebP)")
    p.add_argument("-o", "--output", help="where to write (default: INPUT-bokeh.EXT)")
    p.add_argument("-q", "--quiet", action="store_true", help="no progress or report")
    add_render_options(p)
    add_remote_options(p)
    p.set_defaults(run=_cmd_render, interruptible=True)

"""The render options as command-line words, and the `RenderSettings` they make: one parser
for `bokehkit render`, `bokehkit batch` and the renders a remote client sends the engine
as words (serve/uploads.py), so a remote render is the local one."""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from .errors import BokehkitError
from .pipeline import DEPTH_MODEL_IDS, RenderSettings
from .render import ENGINES
from .render.highlights import DEFAULT_GAIN
from .scene.depth import KINDS, UNITS
from .scene.refine import FocusRange, parse_focus_range

#: Render options that name files: a remote render uploads them and renames them in the
#: job folder.
FILE_OPTIONS = {"depth": "depth", "focus_mask": "focus-mask", "blur_mask": "blur-mask"}
#: Options a remote render refuses: they write files on the engine's side.
LOCAL_ONLY = ("reference", "save_float", "seed")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str):  # never sys.exit inside the engine
        raise BokehkitError(f"render options: {message}")


def render_parser() -> argparse.ArgumentParser:
    """The render options alone, raising BokehkitError instead of exiting."""
    parser = _Parser(prog="bokehkit render", add_help=False)
    add_render_options(parser)
    return parser


def job_name(stem: str, path: str | os.PathLike) -> str:
    """A file's name in a remote job folder: `stem` and the file's own suffix."""
    suffix = "".join(c for c in Path(path).suffix.lower() if c.isalnum() or c == ".")[:12]
    return stem + suffix


def _point(text: str) -> tuple[float, float]:
    try:
        x, y = (float(v) for v in text.replace(" ", "").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected two numbers A,B, got {text!r}") from None
    return x, y


def add_render_options(p: argparse.ArgumentParser) -> None:
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


def settings_from_args(args: argparse.Namespace) -> RenderSettings:
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

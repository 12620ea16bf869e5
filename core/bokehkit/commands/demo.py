"""The bundled sample photo and `bokehkit demo`: no download, no option."""

from __future__ import annotations

import argparse
import json
import shutil
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from ..errors import BokehkitError
from ..pipeline import RenderSettings, render_file
from ..progress import Progress
from .bar import ProgressBar


@dataclass
class DemoResult:
    output: Path
    original: Path
    compare: Path


def sample_dir() -> Path:
    folder = Path(str(resources.files("bokehkit") / "data" / "sample"))
    if not (folder / "sample.json").is_file():
        raise BokehkitError(f"the bundled sample is missing from {folder}: reinstall bokehkit")
    return folder


def sample_settings(folder: Path | None = None) -> tuple[Path, RenderSettings]:
    """The sample photo and the settings the demo renders it with."""
    folder = folder or sample_dir()
    info = json.loads((folder / "sample.json").read_text())
    depth = info["depth"]
    settings = RenderSettings(
        depth_path=str(folder / depth["file"]),
        depth_kind=depth["kind"],
        depth_near=depth["near"],
        depth_range_m=(depth["z_min_m"], depth["z_max_m"]),
        focus_point=(float(info["focus"]["x"]), float(info["focus"]["y"])),
        f_number=info["suggested_f_number"],
        focal_length_mm=info["focal_length_mm"],
        sensor_width_mm=info["sensor_width_mm"],
    )
    return folder / info["image"]["file"], settings


def render_demo(out_dir: Path, progress: Progress | None = None) -> DemoResult:
    image, settings = sample_settings()
    out_dir.mkdir(parents=True, exist_ok=True)
    original = out_dir / ("sample" + image.suffix)
    shutil.copyfile(image, original)
    output = out_dir / ("sample-bokeh" + image.suffix)
    render_file(image, output, settings, progress)
    compare = out_dir / "sample-before-after.jpg"
    _side_by_side(original, output, compare)
    return DemoResult(output, original, compare)


def _side_by_side(left: Path, right: Path, out: Path) -> None:
    from PIL import Image

    with Image.open(left) as a, Image.open(right) as b:
        a, b = a.convert("RGB"), b.convert("RGB")
        gap = 8
        canvas = Image.new("RGB", (a.width + b.width + gap, max(a.height, b.height)), "white")
        canvas.paste(a, (0, 0))
        canvas.paste(b, (a.width + gap, 0))
        canvas.save(out, quality=90)


def _cmd_demo(args: argparse.Namespace) -> int:
    bar = ProgressBar(enabled=not args.quiet)
    result = render_demo(Path.cwd() / "bokehkit-demo", Progress(bar))
    print(f"wrote {result.output} (the photo: {result.original}; side by side: {result.compare})")
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    """Add `demo` to the main parser's sub-commands."""
    p = sub.add_parser("demo", help="render the bundled sample photo")
    p.add_argument("-q", "--quiet", action="store_true", help=argparse.SUPPRESS)
    p.set_defaults(run=_cmd_demo, interruptible=True)

"""One photo through the engine: image → focus → depth → optics → render → SR → image.

`render_file` is what the CLI and the plug-ins call; `render_image` does the same on an image
already in memory. Both report where the depth and the focus came from.
"""

from __future__ import annotations

import math
import os
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import BokehkitError
from .io.image import (
    LoadedImage,
    encode_linear,
    focal_length_35mm,
    format_for_path,
    load_image,
    save_image,
)
from .io.maps import max_code, read_map
from .io.orientation import display_size, exif_orientation, raw_from_display, raw_point
from .limits import check_render_memory
from .progress import Progress
from .render import Renderer, RenderJob, get_renderer, renderer_class
from .render.depth_edges import snap_depth_edges
from .render.grain import add_grain, estimate_noise
from .render.highlights import DEFAULT_GAIN, recover_highlights, separate_lights
from .render.resample import bilinear_up
from .scene import depth as depth_mod
from .scene import focus as focus_mod
from .scene import refine
from .scene.aperture import Aperture
from .scene.depth_models.specs import PREFERENCE
from .scene.optics import DEFAULT_FOCAL_LENGTH_MM, FULL_FRAME_WIDTH_MM, Lens, strength_k
from .sr.upscale import check_factor, get_upscaler

#: The largest blur radius rendered, as a fraction of the image's long side.
MAX_COC_FRACTION = 0.1


@dataclass
class RenderSettings:
    """Every choice a user can make for one render; None means "not given".

    Parameters
    ----------
    engine : str
        The renderer, ``"classical"`` or ``"magicbokeh"`` (render/__init__.py), with
        `engine_options` passed to it.
    depth_path, depth_units, depth_kind, depth_near, depth_range_m
        A depth or disparity map and how to read it (`bokehkit render --depth` and its
        options); without one, the phone's recorded depth (`depth_from_photo`,
        `embedded_depth`), an installed depth model (`depth_model`, `depth_model_id`) or
        the fallback around the focus region.
    focus_mask_path, focus_mask, focus_point, focus_range, focus_distance_m, focus_disparity
        Where the focus is: a painted mask (white = sharp), a pixel of the photo as
        displayed, a band of depth, or the focal plane directly; none of them: the subject
        ISNet finds (`auto_subject`), else the image centre.
    blur_mask_path, blur_mask
        The refine brush, white = more blur.
    f_number, focal_length_mm, sensor_width_mm, strength
        The lens (focal length None: EXIF's 35 mm equivalent, else 50 mm), or `strength`,
        blur px per unit of relative disparity, instead of it.
    blades, blade_rotation_deg, cat_eye
        The aperture's shape.
    highlight_gain, grain
        Clipped lights' largest brightening (1 = off) and the photo's grain put back
        (1 = match, 0 = off), where the renderer takes them.
    sr_factor, upscaler, upscaler_options
        Super-resolution ×1, ×2 or ×4 and how (sr/upscale.py).
    image_memo
        A dict kept by a caller that renders one image many times (the engine's
        previews): what depends on the image alone is computed once.
    """

    engine: str = "classical"
    depth_path: str | None = None
    depth_units: str = "relative"
    depth_kind: str = "disparity"
    depth_near: str | None = None
    depth_range_m: tuple[float, float] | None = None  # a relative map's (near, far) in metres
    depth_from_photo: str | None = None  # a phone photo whose recorded depth to use
    focus_mask_path: str | None = None
    focus_mask: np.ndarray | None = None  # library callers may pass the mask itself
    focus_point: tuple[float, float] | None = None
    focus_range: refine.FocusRange | None = None  # a depth band kept sharp, not one plane
    blur_mask_path: str | None = None  # refine brush: white = more blur
    blur_mask: np.ndarray | None = None
    focus_distance_m: float | None = None
    focus_disparity: float | None = None
    f_number: float = 2.0
    focal_length_mm: float | None = None  # None: EXIF 35 mm equivalent, else 50 mm
    sensor_width_mm: float = FULL_FRAME_WIDTH_MM
    strength: float | None = None  # K in px per unit relative disparity; overrides the lens
    blades: int = 0
    blade_rotation_deg: float = 0.0
    cat_eye: float = 0.0
    highlight_gain: float = DEFAULT_GAIN
    grain: float = 1.0
    sr_factor: int = 1
    upscaler: str = "classical"
    upscaler_options: dict = field(default_factory=dict)  # realesrgan: {"detail": 0..1}
    engine_options: dict = field(default_factory=dict)
    # Without a depth map: use the depth a phone embedded in the photo (GDepth, Dynamic
    # Depth), else an installed depth model's estimate; False skips that source.
    embedded_depth: bool = True
    depth_model: bool = True
    depth_model_id: str | None = None  # that depth model (it must be installed); None: the best
    # With no mask, point, distance or disparity: focus on the subject ISNet finds, if
    # installed (`bokehkit models install isnet`); False: the image centre, as before.
    auto_subject: bool = True
    # What depends on the image alone (ISNet's subject, a depth model's estimate, the
    # phone's depth), kept here by a caller that renders one image many times (the
    # engine's previews): each is computed once. None: nothing is kept.
    image_memo: dict | None = None


def _remembered(memo: dict | None, key: tuple, compute):
    """compute(), once per `key` when a memo is kept; exceptions are not remembered."""
    if memo is None:
        return compute()
    if key not in memo:
        memo[key] = compute()
    return memo[key]


@dataclass
class RenderReport:
    depth_source: str = ""
    focus_source: str = ""
    focal_length: str = ""
    strength_k: float = 0.0
    max_coc_px: float = 0.0
    output_size: tuple[int, int] = (0, 0)
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        w, h = self.output_size
        out = [
            f"depth: {self.depth_source}",
            f"focus: {self.focus_source}",
            f"lens: {self.focal_length}; largest blur radius {self.max_coc_px:.1f} px",
            f"output: {w}×{h} in {self.seconds:.1f} s",
        ]
        return out + self.notes


#: RenderSettings' numbers, by the command-line option that sets each.
_NUMBER_OPTIONS = {
    "f_number": "--aperture",
    "focal_length_mm": "--focal-length",
    "sensor_width_mm": "--sensor-width",
    "strength": "--strength",
    "blade_rotation_deg": "--blade-rotation",
    "cat_eye": "--cat-eye",
    "highlight_gain": "--highlights",
    "grain": "--grain",
    "focus_distance_m": "--focus-distance",
    "focus_disparity": "--focus-disparity",
}


def check_settings(settings: RenderSettings) -> None:
    """BokehkitError for a number no lens has: NaN or infinite anywhere (they would render a
    black image), and values outside what each option means."""

    def finite(value, option: str) -> None:
        if value is not None and not math.isfinite(float(value)):
            raise BokehkitError(f"{option} must be a finite number, not {float(value):g}")

    for name, option in _NUMBER_OPTIONS.items():
        finite(getattr(settings, name), option)
    for name, option in (("focus_point", "--focus-point"), ("depth_range_m", "--depth-range")):
        for value in getattr(settings, name) or ():
            finite(value, option)
    for key, value in settings.upscaler_options.items():
        if isinstance(value, float):
            finite(value, f"--sr-{key}")
    if settings.f_number <= 0:
        raise BokehkitError(f"--aperture must be a positive f-number, not {settings.f_number:g}")
    for value, option in ((settings.focal_length_mm, "--focal-length"),
                          (settings.sensor_width_mm, "--sensor-width")):  # fmt: skip
        if value is not None and value <= 0:
            raise BokehkitError(f"{option} must be positive, not {value:g} mm")
    if settings.grain < 0:
        raise BokehkitError(f"--grain must be 0 (none) or more, not {settings.grain:g}")
    if not 0.0 <= settings.cat_eye <= 1.0:
        raise BokehkitError(f"--cat-eye must be from 0 to 1, not {settings.cat_eye:g}")


def check_output_folder(output_path: Path) -> None:
    """BokehkitError now, before the render, when the result could not be written there."""
    folder = output_path.parent
    if not folder.is_dir():
        raise BokehkitError(f"output folder {folder} does not exist")
    if output_path.is_dir():
        raise BokehkitError(f"{output_path} is a folder: give a file name")
    from .io.image import probe_writable

    probe_writable(output_path)


def render_file(
    input_path: str | os.PathLike,
    output_path: str | os.PathLike,
    settings: RenderSettings,
    progress: Progress | None = None,
    view: str = "bokeh",
) -> RenderReport:
    """Render a photo file into an image file, written atomically only when all went well.

    Parameters
    ----------
    input_path : path
        The photo: PNG, JPEG, TIFF or WebP (8/16-bit integer or 32-bit float).
    output_path : path
        Where to write; the format follows the extension, the encoding follows the source
        (dtype, ICC profile, EXIF). Never the input file.
    settings : RenderSettings
        Depth, focus, lens, renderer and super-resolution.
    progress : Progress, optional
        Told the fraction done; cancels between steps when its event is set.
    view : {"bokeh", "depth"}
        The bokeh, or the depth the render would use (near warm, far dark, the focal plane
        green), never enlarged.

    Returns
    -------
    RenderReport
        Where depth and focus came from, the lens, the largest blur; ``lines()`` for text.

    Raises
    ------
    BokehkitError
        Bad input, settings or output folder, before any work where it can be told.
    Cancelled
        When `progress` was cancelled; nothing is written.
    """
    progress = progress or Progress()
    output_path = Path(output_path)
    if Path(input_path).resolve() == output_path.resolve():
        raise BokehkitError("the output would overwrite the input photo: choose another name")
    format_for_path(output_path)  # an unknown extension fails now, not after the render
    check_settings(settings)
    check_output_folder(output_path)
    progress.update(0.0, "reading the photo")
    image = load_image(input_path)
    linear, report, factor = render_view(image, settings, progress.span(0.02, 0.95), view)
    progress.update(0.96, "writing the result")
    encoded, alpha = encode_result(image, linear, factor)
    save_image(output_path, encoded, alpha, image.encoding)
    progress.update(1.0, "done")
    return report


#: What a render can produce: the bokeh, or the depth it would use (depth_view.py).
VIEWS = ("bokeh", "depth")


def render_view(
    image: LoadedImage, settings: RenderSettings, progress: Progress, view: str = "bokeh"
) -> tuple[np.ndarray, RenderReport, int]:
    """The bokeh (render_image) or the depth view; linear RGB, report, and the factor the
    output is enlarged by (the depth view is never enlarged)."""
    if view == "depth":
        return (*render_depth_view(image, settings, progress), 1)
    if view != "bokeh":
        raise BokehkitError(f"unknown view {view!r}: choose one of {', '.join(VIEWS)}")
    return (*render_image(image, settings, progress), settings.sr_factor)


def render_image(
    image: LoadedImage, settings: RenderSettings, progress: Progress | None = None
) -> tuple[np.ndarray, RenderReport]:
    """The pipeline on a loaded image: focus → depth → optics → render → super-resolution.

    Parameters
    ----------
    image : LoadedImage
        From `bokehkit.io.image.load_image` (or the engine's raw buffers).
    settings : RenderSettings
        Depth, focus, lens, renderer and super-resolution.
    progress : Progress, optional
        Told the fraction done; may cancel between tiles.

    Returns
    -------
    linear : numpy.ndarray
        H×W×3 float32 linear light at the output size (× `settings.sr_factor`); encode it
        with `encode_result` to write it like the source.
    report : RenderReport
        Where depth and focus came from, the lens, the largest blur.
    """
    progress = progress or Progress()
    started = time.perf_counter()
    report = RenderReport()
    width, height = image.size
    factor = settings.sr_factor
    check_settings(settings)
    check_factor(factor, width, height)
    check_render_memory(width, height, factor)
    report.notes.extend(f"note: {n}" for n in image.encoding.notes)
    # Masks, points and depth maps are given as the user sees the photo (EXIF orientation
    # applied); the render works on, and writes, the raw pixels.
    orientation = exif_orientation(image.encoding.exif)
    if orientation != 1 and settings.focus_point is not None:
        settings = replace(
            settings, focus_point=raw_point(*settings.focus_point, width, height, orientation)
        )

    # The renderer first: a missing model fails now, before any depth or subject work.
    renderer = get_renderer(settings.engine, **settings.engine_options)
    plan = plan_blur(image, settings, progress, report, orientation, renderer)
    mask, depth, focus, coc = plan.mask, plan.depth, plan.focus, plan.coc
    depth_coc = plan.depth_coc
    del plan
    progress.update(0.05, "preparing")

    # Highlight recovery and grain, where the renderer takes them (a learned renderer
    # takes the display-referred photo as it was trained and renders its own texture).
    encoded01 = image.encoded.astype(np.float32) / _full_scale(image.encoded.dtype)
    linear = image.linear_rgb
    lights = None
    if renderer.recovers_highlights and image.encoding.dtype != "float32":
        if renderer.draws_lights:
            linear, coc, lights = separate_lights(
                linear, encoded01, coc, settings.highlight_gain,
                depth_coc_px=depth_coc, disparity=depth.inverse_depth,
            )  # fmt: skip
        else:
            linear, coc = recover_highlights(
                linear, encoded01, coc, settings.highlight_gain,
                depth_coc_px=depth_coc, disparity=depth.inverse_depth,
            )  # fmt: skip
    del depth_coc
    grain = settings.grain if renderer.adds_grain else 0.0
    step = 1.0 / _full_scale(image.encoded.dtype) if image.encoded.dtype.kind in "ui" else 0.0
    sigma = estimate_noise(encoded01, step) if grain > 0 else np.zeros(3, np.float32)
    del encoded01

    # A learned upscaler is most of the work: give it most of the progress bar.
    sr_end = 0.1 if factor == 1 or settings.upscaler == "classical" else 0.6
    if factor > 1:
        progress.update(0.08, f"enlarging ×{factor}")
        sharpness = np.clip(1.0 - np.abs(coc), 0.0, 1.0)
        upscale = get_upscaler(settings.upscaler, **settings.upscaler_options)
        linear = upscale(linear, factor, sharpness, progress.span(0.08, sr_end))
        coc = bilinear_up(coc, factor, height * factor, width * factor) * factor
        if lights is not None:
            lights = lights.scaled(factor)
    report.max_coc_px = float(np.abs(coc).max(initial=0.0))

    description = renderer.describe()
    if description:
        report.notes.append(f"engine: {description}")
    cap = renderer.max_radius_px
    if cap is not None and report.max_coc_px > cap:
        report.notes.append(
            f"note: {renderer.name} renders blur radii up to {cap:g} px (the range it was "
            "trained on); larger ones are rendered at that"
        )
    job = RenderJob(
        linear_rgb=linear,
        signed_coc_px=coc,
        aperture=Aperture(settings.blades, settings.blade_rotation_deg, settings.cat_eye),
        disparity=depth.inverse_depth,
        focus_disparity=focus.inverse_depth,
        focus_mask=mask,
        lights=lights,
    )
    out = renderer.render(job, progress.span(sr_end, 0.95))
    if grain > 0:
        add_grain(out, coc, sigma, grain, seed=width * 7919 + height)
    report.output_size = (width * factor, height * factor)
    report.seconds = time.perf_counter() - started
    return out, report


@dataclass
class BlurPlan:
    """What the render needs before any pixel is blurred: the focus mask, the depth (after
    the Blur mask moved its painted pixels), the focal plane and each pixel's blur radius."""

    mask: np.ndarray | None
    depth: depth_mod.DepthMap
    focus: focus_mod.Focus
    coc: np.ndarray  # signed blur radius in source pixels, positive in front
    #: The same before depth-edge snapping moved pixels by their colour (`coc` itself where
    #: nothing was snapped): clipped lights have lost the colour snapping goes by.
    depth_coc: np.ndarray


def plan_blur(
    image: LoadedImage,
    settings: RenderSettings,
    progress: Progress,
    report: RenderReport,
    orientation: int = 1,
    renderer: Renderer | type[Renderer] | None = None,
) -> BlurPlan:
    """Focus mask, depth, focal plane (or band) and blur radii at the source size, as the
    `renderer` (default: `settings.engine`'s class) asks for them. Masks and depth maps are
    given as the photo is displayed (EXIF `orientation`); the plan is in the raw frame."""
    if renderer is None:
        renderer = renderer_class(settings.engine)
    width, height = image.size
    # Focus mask first: it may also stand in for missing depth.
    mask = _focus_mask(settings, width, height, orientation)
    subject = _auto_subject(image, mask, settings, report, progress)

    # Depth: the given map, else the depth the phone recorded in the photo, else an
    # installed depth model's estimate, else the fallback built around the focus region.
    given = (
        settings.depth_path,
        settings.depth_from_photo,
        settings.depth_units,
        settings.depth_kind,
        settings.depth_near,
        settings.depth_range_m,
        orientation,
    )
    depth = _remembered(
        settings.image_memo,
        ("given depth", *given),
        lambda: _given_depth(image, settings, width, height, orientation),
    )
    if depth is None and settings.embedded_depth:
        depth = _embedded_depth(image, width, height, report, settings.image_memo)
    if depth is None and settings.depth_model:
        depth = _model_depth(
            image, width, height, report, progress.span(0.0, 0.04), settings.depth_model_id,
            _depth_preference(renderer), settings.image_memo,
        )  # fmt: skip
    if depth is None:
        if settings.focus_distance_m is not None:
            raise BokehkitError("--focus-distance needs a metric depth map (--depth FILE)")
        region = mask if mask is not None else subject
        depth = depth_mod.fallback_depth(width, height, region, settings.focus_point)
    report.depth_source = depth.source

    # Focus: one plane, or the band a focus range keeps sharp.
    focus = _choose_focus(depth, mask, settings, subject)
    band = (focus.inverse_depth, focus.inverse_depth)
    if settings.focus_range is not None:
        band = refine.band_disparity(depth.inverse_depth, depth.metric, settings.focus_range)
        focus = focus_mod.Focus(0.5 * (band[0] + band[1]), settings.focus_range.describe())
    report.focus_source = focus.source

    blur = _blur_mask(settings, width, height, orientation)
    if blur is not None:  # the refine brush: painted pixels away from the focal plane
        moved = refine.push_away(depth.inverse_depth, band, blur)
        depth = depth_mod.DepthMap(moved, depth.metric, depth.source)
        report.notes.append("blur mask: painted areas pushed away from the focal plane")

    # Optics: blur radius per pixel, at the source size (scaled with the image for SR).
    focal_mm, focal_from = _focal_length(image, settings)
    lens = Lens(settings.f_number, focal_mm, settings.sensor_width_mm)
    coc = _signed_coc(depth, focus, band, lens, settings, width, report)
    report.focal_length = f"{focal_mm:g} mm ({focal_from}), f/{settings.f_number:g}"
    depth_coc = coc
    if renderer.snaps_depth_edges:  # not for a renderer trained on the depth as it is
        coc = snap_depth_edges(image.linear_rgb, coc)
    max_coc = MAX_COC_FRACTION * max(width, height)
    if np.abs(coc).max(initial=0.0) > max_coc:
        limit = max_coc * settings.sr_factor
        report.notes.append(f"note: blur limited to a radius of {limit:.0f} px")
    _keep_painted_sharp_and_limit(coc, mask, max_coc)
    if depth_coc is not coc:
        _keep_painted_sharp_and_limit(depth_coc, mask, max_coc)
    return BlurPlan(mask, depth, focus, coc, depth_coc)


def _keep_painted_sharp_and_limit(coc: np.ndarray, mask, max_coc: float) -> None:
    """In place: no blur where the focus mask is painted, none past `max_coc`."""
    if mask is not None:
        coc *= 1.0 - mask
    np.clip(coc, -max_coc, max_coc, out=coc)


def render_depth_view(
    image: LoadedImage, settings: RenderSettings, progress: Progress | None = None
) -> tuple[np.ndarray, RenderReport]:
    """The depth the render would use, coloured near to far with the focal plane marked
    (depth_view.py), as linear RGB at the source size; no renderer runs."""
    from .render.depth_view import depth_view

    progress = progress or Progress()
    started = time.perf_counter()
    report = RenderReport()
    orientation = exif_orientation(image.encoding.exif)
    plan = plan_blur(image, settings, progress, report, orientation)
    report.max_coc_px = float(np.abs(plan.coc).max(initial=0.0))
    report.output_size = image.size
    report.notes.append("output: the depth view (near warm, far dark, focal plane green)")
    view = depth_view(plan.depth.inverse_depth, plan.coc)
    report.seconds = time.perf_counter() - started
    return view, report


def _given_depth(
    image: LoadedImage, settings: RenderSettings, width: int, height: int, orientation: int = 1
):
    """The depth map the user named (as the photo is displayed), fitted to the image's raw
    pixels; None if none was named. A HEIF photo, or the input photo itself, named as the
    depth means the depth embedded in it (which phones store in the raw frame); so does
    `depth_from_photo` (a plug-in's "use the phone's depth")."""
    from .scene import phone_depth

    if settings.depth_from_photo:
        depth, _ = phone_depth.read_embedded_depth(
            settings.depth_from_photo, width, height, strict=True
        )
        return depth
    if not settings.depth_path:
        return None

    path = Path(settings.depth_path)
    source = image.encoding.source
    same = bool(source) and path.is_file() and Path(source).is_file() and path.samefile(source)
    if same or path.suffix.lower() in phone_depth.HEIF_SUFFIXES:
        depth, _ = phone_depth.read_embedded_depth(path, width, height, strict=True)
        return depth
    depth = depth_mod.load_depth(
        settings.depth_path,
        settings.depth_units,
        settings.depth_kind,
        settings.depth_near,
        settings.depth_range_m,
    )
    if orientation != 1:
        depth = replace(depth, inverse_depth=raw_from_display(depth.inverse_depth, orientation))
    return depth_mod.fit_to_image(depth, width, height)


def _embedded_depth(
    image: LoadedImage, width: int, height: int, report: RenderReport, memo: dict | None = None
):
    """The depth a phone recorded in the source JPEG, or None (with a note if it was found
    but could not be used)."""
    source = image.encoding.source
    if image.encoding.format != "JPEG" or not source or not Path(source).is_file():
        return None
    from .scene import phone_depth

    depth, notes = _remembered(
        memo,
        ("embedded depth", width, height),
        lambda: phone_depth.read_embedded_depth(source, width, height),
    )
    report.notes.extend(notes)
    return depth


#: Depth models tried, best first: the networks' own list (depth_models/specs.py).
DEPTH_MODEL_IDS = PREFERENCE


def _depth_preference(renderer: Renderer | type[Renderer]) -> tuple[str, ...]:
    """The depth models the renderer prefers first (MagicBokeh: its own DAdepth, which it
    was trained with), then the best general model."""
    first = renderer.preferred_depth_models
    return (*first, *(m for m in DEPTH_MODEL_IDS if m not in first))


def _model_depth(
    image: LoadedImage,
    width: int,
    height: int,
    report: RenderReport,
    progress,
    chosen: str | None = None,
    preference: tuple[str, ...] = DEPTH_MODEL_IDS,
    memo: dict | None = None,
):
    """An installed depth model's estimate; None when none is installed, or (with a note)
    when one is but cannot run here (no torch, a damaged file). Never downloads. A model
    the user `chosen` must be installed and run: otherwise BokehkitError says why."""
    from .store import ModelDamaged, installed_path

    def installed(model_id: str) -> bool:
        try:
            return installed_path(model_id) is not None
        except ModelDamaged:
            raise  # never used, never silently passed over
        except (BokehkitError, KeyError):  # not in this manifest
            return False

    if chosen is not None:
        if chosen not in DEPTH_MODEL_IDS:
            raise BokehkitError(
                f"unknown depth model {chosen!r}: choose one of {', '.join(DEPTH_MODEL_IDS)}"
            )
        if not installed(chosen):
            raise BokehkitError(
                f"depth model {chosen} is not installed; run: bokehkit models install {chosen}"
            )
    model_id = chosen or next((m for m in preference if installed(m)), None)
    if model_id is None:
        return None
    try:
        from .scene.depth_models import estimate_depth
    except ImportError as exc:  # the package or torch is missing
        if chosen:
            raise BokehkitError(f"depth model {chosen} cannot run here: {exc}") from None
        report.notes.append(f"note: depth model {model_id} is installed but cannot run: {exc}")
        return None
    progress.update(0.0, f"estimating depth ({model_id})")
    try:
        depth = _remembered(
            memo,
            ("depth model", model_id),
            lambda: estimate_depth(image.linear_rgb, model_id, progress),
        )
    except BokehkitError as exc:
        if chosen:
            raise
        report.notes.append(f"note: no depth from {model_id}: {exc}")
        return None
    return depth_mod.fit_to_image(depth, width, height)


def _focus_mask(
    settings: RenderSettings, width: int, height: int, orientation: int = 1
) -> np.ndarray | None:
    """The painted mask in the raw frame; it is painted on the photo as displayed."""
    shown_w, shown_h = display_size(width, height, orientation)
    if settings.focus_mask is not None:
        mask = np.asarray(settings.focus_mask, dtype=np.float32)
        if mask.shape != (shown_h, shown_w):
            raise BokehkitError(
                f"focus mask is {mask.shape[1]}×{mask.shape[0]} but the image is "
                f"{shown_w}×{shown_h}"
            )
        return focus_mod.check_mask(raw_from_display(mask, orientation))
    if settings.focus_mask_path:
        mask = focus_mod.load_mask(settings.focus_mask_path, shown_w, shown_h)
        return raw_from_display(mask, orientation)
    return None


def _blur_mask(
    settings: RenderSettings, width: int, height: int, orientation: int = 1
) -> np.ndarray | None:
    """The Blur refine brush in [0, 1], in the raw frame (it is painted on the photo as
    displayed); None when none was given or nothing is painted on it (an empty Blur channel
    changes nothing, it is no error)."""
    width, height = display_size(width, height, orientation)
    if settings.blur_mask is not None:
        blur, where = np.asarray(settings.blur_mask, dtype=np.float32), "blur mask"
    elif settings.blur_mask_path:
        blur, where = read_map(settings.blur_mask_path, "blur mask"), settings.blur_mask_path
        blur = blur / max_code(blur)
    else:
        return None
    if blur.shape != (height, width):
        raise BokehkitError(
            f"{where} is {blur.shape[1]}×{blur.shape[0]} but the image is {width}×{height}: "
            "paint the blur mask on the image itself"
        )
    blur = np.clip(np.nan_to_num(blur.astype(np.float32, copy=False)), 0.0, 1.0)
    if float(blur.max(initial=0.0)) < focus_mod.EMPTY_MASK_LEVEL:
        return None
    return raw_from_display(blur, orientation)


def _auto_subject(image, mask, settings: RenderSettings, report, progress) -> np.ndarray | None:
    """ISNet's soft subject mask when nothing says where to focus; None (with a note saying
    why) otherwise. Never downloads: a missing model only earns the install command.

    The mask chooses the focal plane only; it does not force sharpness as a painted mask
    does (`coc *= 1 - mask` below is for painted masks). A painted mask is the user's
    decision; ISNet's is a guess, and it often takes in things at other depths (an arm
    reaching to the camera, a table running back, the floor under a cat): forcing them
    sharp would override the depth map where it is right and cut a hard, sharp cut-out
    into the bokeh where the matte is wrong. Without a depth map the subject is put on the
    focal plane by the fallback depth anyway, so it is sharp without forcing."""
    if not settings.auto_subject or mask is not None or settings.focus_point is not None:
        return None
    if settings.focus_distance_m is not None or settings.focus_disparity is not None:
        return None
    from .scene import subject as subject_mod

    path = subject_mod.model_path()
    if path is None:
        report.notes.append(
            "note: to focus on the subject automatically, install ISNet: "
            f"bokehkit models install {subject_mod.MODEL_ID}"
        )
        return None
    progress.update(0.0, "finding the subject (ISNet)")
    try:
        found = _remembered(
            settings.image_memo,
            ("subject", str(path)),
            lambda: subject_mod.main_subject(
                subject_mod.subject_mask_linear(image.linear_rgb, path)
            ),
        )
    except BokehkitError as exc:  # no onnxruntime, a damaged file: the centre, and why
        report.notes.append(f"note: no automatic subject: {exc}; focused on the image centre")
        return None
    if float(found.max(initial=0.0)) < subject_mod.SUBJECT_LEVEL:
        report.notes.append("note: ISNet found no clear subject; focused on the image centre")
        return None
    return found


def _choose_focus(depth, mask, settings: RenderSettings, subject=None) -> focus_mod.Focus:
    """Explicit distance or disparity, else the mask, else the point, else the automatic
    subject (ISNet), else the image centre."""
    if settings.focus_distance_m is not None:
        return focus_mod.focus_from_distance(depth, settings.focus_distance_m)
    if settings.focus_disparity is not None:
        return focus_mod.focus_from_disparity(depth, settings.focus_disparity)
    if mask is not None:
        return focus_mod.focus_from_mask(depth, mask)
    if settings.focus_point is not None:
        return focus_mod.focus_from_point(depth, *settings.focus_point)
    if subject is not None:
        # The focal plane: weighted median depth over the confident part of the matte.
        confident = np.where(subject >= 0.5, subject, 0.0).astype(np.float32)
        found = focus_mod.focus_from_mask(depth, confident)
        found.source = "automatic subject (ISNet)"
        return found
    h, w = depth.shape
    found = focus_mod.focus_from_point(depth, w / 2, h / 2)
    found.source = "image centre (no mask, point or distance given)"
    return found


def _focal_length(image: LoadedImage, settings: RenderSettings) -> tuple[float, str]:
    if settings.focal_length_mm is not None:
        return settings.focal_length_mm, "given"
    from_exif = focal_length_35mm(image.encoding)
    if from_exif:
        return from_exif, "35 mm equivalent from EXIF"
    return DEFAULT_FOCAL_LENGTH_MM, "default"


def _signed_coc(depth, focus, band, lens: Lens, settings, width: int, report) -> np.ndarray:
    """Blur radius in px, positive in front of the focal plane, zero inside the focal band
    (see optics.py for the model)."""
    if settings.strength is not None:
        k = float(settings.strength)
        if k < 0:
            raise BokehkitError(f"--strength must be positive, not {k:g}")
    elif depth.metric:
        k = lens.k_metric_px_m(width)
    else:
        k = strength_k(lens, width, focus.inverse_depth)
    report.strength_k = k
    coc = refine.signed_distance_from_band(depth.inverse_depth, band)
    coc *= np.float32(k)
    return coc


def _full_scale(dtype) -> float:
    dtype = np.dtype(dtype)
    return float(np.iinfo(dtype).max) if dtype.kind in "ui" else 1.0


def encode_result(
    image: LoadedImage, linear: np.ndarray, factor: int
) -> tuple[np.ndarray, np.ndarray | None]:
    """The rendered linear image back in the source's code values, and its alpha (untouched,
    or enlarged with the image): what `render_file` writes and the engine server returns."""
    encoded = _encode_keeping_untouched(image, linear, factor)
    alpha = image.alpha
    if alpha is not None and factor > 1:
        alpha = _upscale_alpha(alpha, factor)
    return encoded, alpha


def _encode_keeping_untouched(image: LoadedImage, linear: np.ndarray, factor: int) -> np.ndarray:
    """Encode the result; pixels the render left as they were keep their exact code values."""
    encoded = encode_linear(linear, image.encoding)
    if factor == 1:
        same = np.all(np.abs(linear - image.linear_rgb) <= 1e-6, axis=-1)
        encoded[same] = image.encoded[same]
    return encoded


def _upscale_alpha(alpha: np.ndarray, factor: int) -> np.ndarray:
    from .sr.lanczos import resize_plane

    h, w = alpha.shape
    full = _full_scale(alpha.dtype)
    up = resize_plane(alpha.astype(np.float32), w * factor, h * factor)
    if alpha.dtype.kind in "ui":
        return np.clip(np.round(up), 0, full).astype(alpha.dtype)
    return up.astype(alpha.dtype)

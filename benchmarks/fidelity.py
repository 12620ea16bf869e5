"""Fidelity benchmark: the classical renderer against Blender Cycles thin-lens ground truth.

For every scene folder (``aif.png``, ``depth.npy``, ``meta.json``, ``bokeh_f{N}_d{D}.png``, as
written by the bench's ``gen_scene.py``; see ``/work/shared/bench/README.md``), every render
entry in its ``meta.json`` and every *depth variant*, this script renders

* ``classical``: our renderer through ``pipeline.render_file``, the function behind
  ``bokehkit render`` (``--depth D.npy --depth-units m --focus-distance D --aperture N
  --focal-length F --sensor-width S``, every other setting at its default except ``--grain``,
  which is 0 for the fidelity table: grain is noise that cannot correlate with the truth's
  own noise, which PSNR and SSIM punish by construction; it is judged apart, below);
* ``scatter``: the BokehMe-style classical scatter, no occlusion handling, in linear light:
  each source pixel of blur radius r spreads ``w = ½(1 + tanh(4(r − δ))) / (r² + 0.2)`` to
  every target at distance δ ≤ r + 1, and the result is ``Σ w·I / Σ w``. It is computed by
  FFT per radius bucket (0.125 px, linear in between), which matches the direct scatter to
  better than 50 dB (``--check-scatter``); it is cached under ``--out``.

Both get the same inputs: ``aif.png`` and the same (possibly degraded) depth, so the
comparison isolates the renderer. Depth variants, because real depth maps (phones,
Depth-Anything, a painted layer) never agree with the photo at thin structures and edges:

* ``exact``: the bench's depth (planar, sampled at pixel centres);
* ``blur``: inverse depth blurred by a Gaussian of σ = 1.5 px (a network's soft edges);
* ``shift``: moved one pixel right and one down (a misregistered map);
* ``q8``: inverse depth quantised to 256 levels between its extremes (an 8-bit PNG);
* ``lowres``: inverse depth averaged down ×4 and bilinearly enlarged (a phone's depth map).

``--photo-jpeg Q`` gives both renderers the AIF stored as a JPEG of quality Q with 4:2:0
chroma, as cameras and phones store photos, instead of the PNG (the truth stays the truth).

Scores (8-bit sRGB, the bench's own ``evaluate.py`` functions): PSNR, SSIM, the depth-edge
band PSNR, the difference to the scatter, and the **artefact fraction**: pixels whose worst
channel is off by more than 32/255 where the scatter's is off by less than 16/255 (errors a
naive method does not make). With ``--grain-check`` each exact render is made again with the
default grain and the noise of blurred, flat regions (robust σ of the 2×2 Haar diagonal
detail, in 8-bit sRGB) is compared with the truth's.

    python benchmarks/fidelity.py --data tune=/work/scenes/tune --data held=/work/scenes/held \\
        --out /tmp/fid [--variants exact,blur,shift,q8,lowres] [--grain-check] \\
        [--photo-jpeg Q] [--markdown FILE] [--worst-png FILE]

Scenes whose ``meta.json`` is missing or that lack a listed file are skipped (a set that is
still being rendered).
"""

from __future__ import annotations

import argparse
import csv
import datetime
import hashlib
import importlib
import importlib.util
import json
import math
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi
from scipy.fft import irfft2, next_fast_len, rfft2

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EVALUATE = Path("/work/shared/bench/evaluate.py")
VARIANTS = ("exact", "blur", "shift", "q8", "lowres")
#: Artefact: ours off by more than this (worst channel, 8-bit) ...
ARTEFACT_OURS = 32 / 255
#: ... where the scatter is off by less than this.
ARTEFACT_SCATTER = 16 / 255


# --------------------------------------------------------------------------- colour and inputs


def srgb_to_linear(x: np.ndarray) -> np.ndarray:
    """Piecewise sRGB EOTF (IEC 61966-2-1)."""
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def linear_to_srgb(y: np.ndarray) -> np.ndarray:
    """Inverse of :func:`srgb_to_linear`, clipped to [0, 1]."""
    y = np.clip(y, 0.0, 1.0)
    return np.where(y <= 0.0031308, 12.92 * y, 1.055 * np.power(y, 1 / 2.4) - 0.055)


def load_linear(path: Path) -> np.ndarray:
    """An 8-bit sRGB PNG as float32 linear RGB."""
    enc = np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0
    return srgb_to_linear(enc).astype(np.float32)


def save_srgb(path: Path, linear: np.ndarray) -> None:
    """Linear RGB to an 8-bit sRGB PNG."""
    path.parent.mkdir(parents=True, exist_ok=True)
    enc = np.round(linear_to_srgb(linear.astype(np.float64)) * 255).astype(np.uint8)
    Image.fromarray(enc).save(path)


def signed_coc_radius(depth_m: np.ndarray, k_px_m: float, focus_m: float) -> np.ndarray:
    """Blur radius in px, positive in front of the focal plane.

    ``k_px_m`` is meta.json's ``K_px_m``, the constant of the CoC *diameter*
    (``f²·W/(N·S)``), hence the half.
    """
    inv = 1.0 / np.clip(depth_m.astype(np.float64), 1e-3, None)
    return (0.5 * k_px_m * (inv - 1.0 / focus_m)).astype(np.float32)


def degrade_depth(depth_m: np.ndarray, variant: str) -> np.ndarray:
    """The bench's metric depth as a real depth source would give it (see the module doc)."""
    inv = 1.0 / np.clip(depth_m.astype(np.float64), 1e-3, None)
    if variant == "exact":
        return depth_m.astype(np.float32)
    if variant == "blur":
        inv = ndi.gaussian_filter(inv, 1.5, mode="nearest")
    elif variant == "shift":
        inv = np.pad(inv, ((1, 0), (1, 0)), mode="edge")[:-1, :-1]
    elif variant == "q8":
        lo, hi = inv.min(), inv.max()
        inv = lo + np.round((inv - lo) / max(hi - lo, 1e-12) * 255) / 255 * (hi - lo)
    elif variant == "lowres":
        h, w = inv.shape
        f = 4
        ph, pw = -h % f, -w % f
        a = np.pad(inv, ((0, ph), (0, pw)), mode="edge")
        small = a.reshape(a.shape[0] // f, f, a.shape[1] // f, f).mean(axis=(1, 3))
        # Bilinear on pixel centres back to the full grid.
        ys = (np.arange(h) + 0.5) / f - 0.5
        xs = (np.arange(w) + 0.5) / f - 0.5
        yy, xx = np.meshgrid(ys, xs, indexing="ij")
        inv = ndi.map_coordinates(small, [yy, xx], order=1, mode="nearest")
    else:
        raise SystemExit(f"fidelity: unknown depth variant {variant!r}")
    return (1.0 / inv).astype(np.float32)


# --------------------------------------------------------------------------- the scatter


def _scatter_kernel(r: float) -> np.ndarray:
    """The scatter's weight around one source of radius r: ½(1 + tanh(4(r − δ)))/(r² + 0.2)
    for δ ≤ r + 1."""
    reach = math.ceil(r) + 1
    yy, xx = np.mgrid[-reach : reach + 1, -reach : reach + 1]
    dist = np.hypot(xx, yy)
    k = 0.5 * (1.0 + np.tanh(4.0 * (r - dist))) / (r * r + 0.2)
    return np.where(dist <= r + 1.0, k, 0.0).astype(np.float32)


def render_scatter(linear: np.ndarray, radius: np.ndarray, step: float = 0.125) -> np.ndarray:
    """BokehMe-style scatter, by FFT per radius bucket (linear weights between buckets)."""
    r = np.abs(radius).astype(np.float32)
    h, w = r.shape
    pos = r / step
    lo = np.floor(pos).astype(np.int32)
    t = (pos - lo).astype(np.float32)
    reach = math.ceil(float(r.max(initial=0.0))) + 2
    shape = (
        next_fast_len(h + 2 * reach + 1, real=True),
        next_fast_len(w + 2 * reach + 1, real=True),
    )
    num = np.zeros((h, w, 4), np.float32)
    src = np.concatenate([linear, np.ones((h, w, 1), np.float32)], axis=-1)
    for b in np.union1d(np.unique(lo), np.unique(lo) + 1):
        wgt = np.where(lo == b, 1.0 - t, 0.0) + np.where(lo + 1 == b, t, 0.0)
        if not wgt.any():
            continue
        k = _scatter_kernel(b * step)
        kh = k.shape[0]
        kpad = np.zeros(shape, np.float32)
        kpad[:kh, :kh] = k
        spec = rfft2(src * wgt[..., None].astype(np.float32), s=shape, axes=(0, 1))
        spec *= rfft2(kpad, s=shape)[..., None]
        full = irfft2(spec, s=shape, axes=(0, 1))
        c = kh // 2
        num += full[c : c + h, c : c + w]
    return num[..., :3] / np.maximum(num[..., 3], 1e-12)[..., None]


def render_scatter_direct(linear: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """The same scatter, one shifted array per integer offset (slow; for checking)."""
    r = np.abs(radius).astype(np.float32)
    h, w = r.shape
    reach = math.ceil(float(r.max(initial=0.0))) + 1
    norm = 1.0 / (r * r + 0.2)
    num = np.zeros((h, w, 3), np.float32)
    den = np.zeros((h, w), np.float32)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            dist = math.hypot(dx, dy)
            if dist > reach or abs(dy) >= h or abs(dx) >= w:
                continue
            sy, ty = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
            sx, tx = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
            rs = r[sy, sx]
            wt = 0.5 * (1.0 + np.tanh(4.0 * (rs - dist))) * norm[sy, sx] * (rs + 1.0 >= dist)
            num[ty, tx] += wt[..., None] * linear[sy, sx]
            den[ty, tx] += wt
    return num / np.maximum(den, 1e-12)[..., None]


# --------------------------------------------------------------------------- data sets


def complete_scenes(data_dir: Path) -> tuple[list[Path], list[str]]:
    """Scene folders that have meta.json, aif.png, depth.npy and every listed bokeh file."""
    usable, skipped = [], []
    for sd in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        meta_path = sd / "meta.json"
        if not meta_path.exists():
            skipped.append(f"{sd.name}: no meta.json")
            continue
        meta = json.loads(meta_path.read_text())
        needed = ["aif.png", "depth.npy"] + [r["file"] for r in meta.get("renders", [])]
        missing = [f for f in needed if not (sd / f).exists()]
        if missing or not meta.get("renders"):
            skipped.append(f"{sd.name}: missing {', '.join(missing) or 'renders'}")
            continue
        usable.append(sd)
    return usable, skipped


def parse_data_arg(text: str) -> tuple[str, Path]:
    """``[LABEL=]DIR`` → (label, dir); the label defaults to the folder name."""
    label, _, path = text.rpartition("=") if "=" in text else ("", "", text)
    path = Path(path).expanduser().resolve()
    return label or path.name, path


def load_evaluate(path: Path):
    """The bench's scorer as a module (its metric functions, not its command line)."""
    spec = importlib.util.spec_from_file_location("bench_evaluate", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def source_fingerprint() -> str:
    """Short hash of the engine's sources: which code a number belongs to."""
    h = hashlib.sha256()
    for f in sorted((REPO / "core" / "bokehkit").rglob("*.py")):
        h.update(str(f.relative_to(REPO)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


# --------------------------------------------------------------------------- rendering


#: RenderSettings fields set with --setting NAME=VALUE, module constants set with --patch
#: (ablations; none by default).
OVERRIDES: dict = {}
PATCHES: dict = {}
#: JPEG quality of the photo both renderers get (None: the scene's PNG); set by --photo-jpeg.
PHOTO_JPEG: int | None = None


def photo_kind() -> str:
    return "png" if PHOTO_JPEG is None else f"jpeg{PHOTO_JPEG}"


def render_dir(scene: str, variant: str) -> str:
    """Where a scene's renders of one depth variant go, under pred/<renderer>/<set>/: the
    photo's kind in the name, so that PNG and JPEG runs never share a cached scatter."""
    suffix = "" if PHOTO_JPEG is None else f"-{photo_kind()}"
    return f"{scene}/{variant}{suffix}"


def photo_file(scene: Path, out: Path, label: str) -> Path:
    """The photo both renderers get: the scene's AIF, or it stored as a JPEG (4:2:0)."""
    if PHOTO_JPEG is None:
        return scene / "aif.png"
    path = out / "photo" / label / scene.name / f"aif_{photo_kind()}.jpg"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        image = Image.open(scene / "aif.png").convert("RGB")
        image.save(path, "JPEG", quality=PHOTO_JPEG, subsampling="4:2:0")
    return path


def render_ours(
    photo: Path, meta: dict, render: dict, depth_file: Path, out_png: Path, grain: float
) -> float:
    """Our renderer through render_file (what `bokehkit render` runs). Returns seconds."""
    from bokehkit.pipeline import RenderSettings, render_file

    settings = RenderSettings(
        depth_path=str(depth_file), depth_units="m", depth_kind="depth",
        focus_distance_m=float(render["focus_distance_m"]), f_number=float(render["fstop"]),
        focal_length_mm=float(meta["focal_length_mm"]),
        sensor_width_mm=float(meta["sensor_width_mm"]), grain=grain, **OVERRIDES,
    )  # fmt: skip
    out_png.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    render_file(photo, out_png, settings)
    return time.perf_counter() - t0


def load_png01(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def haar_noise(img255: np.ndarray, mask: np.ndarray, rounding: float = 0.0) -> float:
    """Noise σ (code values) of an sRGB image (0–255 scale, float) over the 2×2 blocks in
    `mask`: the RMS of the 2×2 Haar diagonal detail (which smooth gradients do not reach),
    its top 1 % left out (stray edges), less `rounding` (the variance of rounding to whole
    code values, 1/12, when the image was stored in 8 bits)."""
    h, w = (img255.shape[0] // 2) * 2, (img255.shape[1] // 2) * 2
    a = img255[:h, :w]
    d = np.abs(a[0::2, 0::2] - a[0::2, 1::2] - a[1::2, 0::2] + a[1::2, 1::2]) / 2.0
    m = mask[:h, :w].reshape(h // 2, 2, w // 2, 2).all(axis=(1, 3))
    if m.sum() < 200:
        return float("nan")
    values = d[m].ravel()  # every channel of every block
    v = np.sort(values)[: int(0.99 * values.size)]
    return float(np.sqrt(max(np.mean(v * v) - rounding, 0.0)))


def render_ours_float(
    photo: Path, meta: dict, render: dict, depth_file: Path, grain: float
) -> np.ndarray:
    """Our render in linear light, before it is rounded to 8 bits (for noise measurement)."""
    from bokehkit.io.image import load_image
    from bokehkit.pipeline import RenderSettings, render_image

    settings = RenderSettings(
        depth_path=str(depth_file), depth_units="m", depth_kind="depth",
        focus_distance_m=float(render["focus_distance_m"]), f_number=float(render["fstop"]),
        focal_length_mm=float(meta["focal_length_mm"]),
        sensor_width_mm=float(meta["sensor_width_mm"]), grain=grain, **OVERRIDES,
    )  # fmt: skip
    linear, _ = render_image(load_image(photo), settings)
    return linear


def flat_blurred_region(gt01: np.ndarray, coc_diam: np.ndarray, masks: dict) -> np.ndarray:
    """Pixels strongly blurred in the truth (CoC diameter ≥ 8 px), away from depth edges and
    highlights, where the truth's smoothed picture is flat (gradient < 1 code value/px)."""
    lum = gt01.mean(axis=-1) * 255.0
    smooth = ndi.gaussian_filter(lum, 3.0)
    grad = np.hypot(ndi.sobel(smooth, 0), ndi.sobel(smooth, 1)) / 8.0
    region = (coc_diam >= 8.0) & (grad < 1.0) & ~masks["edges"]
    if "hl" in masks:
        region &= ~masks["hl"]
    return ndi.binary_erosion(region, iterations=2)


# --------------------------------------------------------------------------- one data set


def run_set(
    label: str, data_dir: Path, out: Path, variants: list[str], ev, grain_check: bool, grain: float
) -> tuple[list[dict], list[str]]:
    scenes, skipped = complete_scenes(data_dir)
    for s in skipped:
        print(f"[{label}] skip {s}", flush=True)
    rows = []
    for sd in scenes:
        meta = json.loads((sd / "meta.json").read_text())
        depth = np.load(sd / "depth.npy").astype(np.float32)
        aif = load_png01(sd / "aif.png")
        aif_lin = ev.srgb2lin(aif)
        photo = photo_file(sd, out, label)
        lin = load_linear(photo)
        for variant in variants:
            dfile = out / "depth" / label / sd.name / f"{variant}.npy"
            dfile.parent.mkdir(parents=True, exist_ok=True)
            vdepth = degrade_depth(depth, variant)
            np.save(dfile, vdepth)
            for r in meta["renders"]:
                gt = load_png01(sd / r["file"])
                k_px_m, d_f = r["K_px_m"], r["focus_distance_m"]
                true_coc = ev.coc_map(depth.astype(np.float64), k_px_m, d_f)
                masks = ev.region_masks(depth.astype(np.float64), true_coc, aif_lin)
                stem = f"{render_dir(sd.name, variant)}/{r['file']}"
                ours_png = out / "pred" / "classical" / label / stem
                secs = render_ours(photo, meta, r, dfile, ours_png, grain)
                sc_png = out / "pred" / "scatter" / label / stem
                if not sc_png.exists():  # it never changes: cached
                    save_srgb(sc_png, render_scatter(lin, signed_coc_radius(vdepth, k_px_m, d_f)))
                ours, scat = load_png01(ours_png), load_png01(sc_png)
                mo, ms = ev.all_metrics(ours, gt, masks), ev.all_metrics(scat, gt, masks)
                err_o = np.abs(ours - gt).max(axis=-1)
                err_s = np.abs(scat - gt).max(axis=-1)
                artefact = float(np.mean((err_o > ARTEFACT_OURS) & (err_s < ARTEFACT_SCATTER)))
                row = dict(set=label, scene=sd.name, file=r["file"], variant=variant,
                           photo=photo_kind(),
                           fstop=r["fstop"], focus_m=d_f, coc_p99=r.get("coc_px_p99", float("nan")),
                           psnr=mo["psnr"], psnr_edges=mo["psnr_edges"], ssim=mo["ssim"],
                           psnr_focus=mo["psnr_focus"], psnr_defocus=mo["psnr_defocus"],
                           psnr_hl=mo.get("psnr_hl", float("nan")),
                           scatter_psnr=ms["psnr"], scatter_edges=ms["psnr_edges"],
                           scatter_ssim=ms["ssim"], d_psnr=mo["psnr"] - ms["psnr"],
                           d_edges=mo["psnr_edges"] - ms["psnr_edges"], artefact=artefact,
                           seconds=secs)  # fmt: skip
                if grain_check and variant == "exact":
                    # In float, both: Cycles' noise in blurred areas is well under one code
                    # value, so 8-bit rounding would swamp it.
                    region = flat_blurred_region(gt, true_coc, masks)
                    truth_file = sd / r["file"].replace(".png", "_linear.npy")
                    if truth_file.exists():
                        truth = np.load(truth_file).astype(np.float64)[..., :3]
                        row["noise_truth"] = haar_noise(linear_to_srgb(truth) * 255, region)
                    else:
                        row["noise_truth"] = haar_noise(gt * 255, region, 1 / 12)
                    grained = render_ours_float(photo, meta, r, dfile, 1.0)
                    row["noise_ours"] = haar_noise(linear_to_srgb(grained) * 255, region)
                    plain = render_ours_float(photo, meta, r, dfile, 0.0)
                    row["noise_nograin"] = haar_noise(linear_to_srgb(plain) * 255, region)
                    row["noise_ratio"] = (
                        row["noise_ours"] / row["noise_truth"]
                        if row["noise_truth"] > 0
                        else float("nan")
                    )
                rows.append(row)
                extra = (
                    f" noise {row['noise_ours']:.2f}/{row['noise_truth']:.2f}"
                    if "noise_ours" in row
                    else ""
                )
                print(
                    f"[{label}] {stem}: PSNR {row['psnr']:.2f} (scatter {row['scatter_psnr']:.2f},"
                    f" Δ {row['d_psnr']:+.2f}) edges Δ {row['d_edges']:+.2f} artefact "
                    f"{100 * artefact:.3f} %{extra} {secs:.1f} s",
                    flush=True,
                )
    return rows, skipped


# --------------------------------------------------------------------------- reports


def _nanmean(v):
    v = [x for x in v if not math.isnan(x)]
    return float(np.mean(v)) if v else float("nan")


def summarise(rows: list[dict]) -> dict:
    return {
        "n": len(rows),
        "psnr": _nanmean([r["psnr"] for r in rows]),
        "scatter_psnr": _nanmean([r["scatter_psnr"] for r in rows]),
        "d_psnr": _nanmean([r["d_psnr"] for r in rows]),
        "psnr_edges": _nanmean([r["psnr_edges"] for r in rows]),
        "scatter_edges": _nanmean([r["scatter_edges"] for r in rows]),
        "d_edges": _nanmean([r["d_edges"] for r in rows]),
        "ssim": _nanmean([r["ssim"] for r in rows]),
        "scatter_ssim": _nanmean([r["scatter_ssim"] for r in rows]),
        "worst_d_psnr": min(r["d_psnr"] for r in rows),
        "below_0_5": sum(r["d_psnr"] < -0.5 for r in rows),
        "artefact_mean": _nanmean([r["artefact"] for r in rows]),
        "artefact_max": max(r["artefact"] for r in rows),
        "over_0_1pct": sum(r["artefact"] > 0.001 for r in rows),
    }


def summary_table(groups: dict) -> list[str]:
    lines = [
        "| set | depth | renders | PSNR ours | scatter | Δ mean | Δ worst | below −0.5 dB | "
        "edges ours | scatter | Δ edges | SSIM ours | scatter | artefact mean | max | > 0.1 % |",
        "|" + "---|" * 16,
    ]
    for (label, variant), s in groups.items():
        lines.append(
            f"| {label} | {variant} | {s['n']} | {s['psnr']:.2f} | {s['scatter_psnr']:.2f} | "
            f"{s['d_psnr']:+.2f} | {s['worst_d_psnr']:+.2f} | {s['below_0_5']} | "
            f"{s['psnr_edges']:.2f} | {s['scatter_edges']:.2f} | {s['d_edges']:+.2f} | "
            f"{s['ssim']:.4f} | {s['scatter_ssim']:.4f} | {100 * s['artefact_mean']:.3f} % | "
            f"{100 * s['artefact_max']:.3f} % | {s['over_0_1pct']} |"
        )
    return lines


def per_render_table(rows: list[dict]) -> list[str]:
    lines = [
        "| render | PSNR | edges | SSIM | Δ scatter | Δ edges | artefact |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['scene']}/{r['file']} | {r['psnr']:.2f} | {r['psnr_edges']:.2f} | "
            f"{r['ssim']:.4f} | {r['d_psnr']:+.2f} | {r['d_edges']:+.2f} | "
            f"{100 * r['artefact']:.3f} % |"
        )
    return lines


def grain_lines(rows: list[dict]) -> list[str]:
    g = [r for r in rows if "noise_ratio" in r and not math.isnan(r["noise_ratio"])]
    if not g:
        return []
    ratios = np.array([r["noise_ratio"] for r in g])
    no = np.array([r["noise_nograin"] / r["noise_truth"] for r in g])
    inside = int(np.sum((ratios >= 0.75) & (ratios <= 1.25)))
    return [
        f"Grain (default, exact depth, {len(g)} renders with a flat blurred region): output "
        f"noise / truth noise = mean {ratios.mean():.2f}, median {np.median(ratios):.2f}, "
        f"range {ratios.min():.2f}–{ratios.max():.2f}; within ±25 % in {inside} of {len(g)} "
        f"(without grain: mean {no.mean():.2f})."
    ]


def worst_crops(
    rows: list[dict],
    data: dict[str, Path],
    out: Path,
    path: Path,
    n: int = 3,
    win: tuple[int, int] = (200, 140),
    zoom: int = 2,
) -> None:
    """For the n renders furthest below the scatter: AIF | ours | scatter | Cycles | where
    ours is worse, around the worst window, zoomed."""
    worst = sorted(rows, key=lambda r: r["d_psnr"])[:n]
    sheets = []
    for r in worst:
        sd = data[r["set"]] / r["scene"]
        stem = f"{render_dir(r['scene'], r['variant'])}/{r['file']}"
        gt = load_png01(sd / r["file"])
        ours = load_png01(out / "pred" / "classical" / r["set"] / stem)
        scat = load_png01(out / "pred" / "scatter" / r["set"] / stem)
        # The window where ours loses most to the scatter.
        loss = ((ours - gt) ** 2).sum(-1) - ((scat - gt) ** 2).sum(-1)
        ww, wh = win
        box = ndi.uniform_filter(loss, (wh, ww), mode="constant")
        cy, cx = np.unravel_index(np.argmax(box), box.shape)
        y0 = int(np.clip(cy - wh // 2, 0, gt.shape[0] - wh))
        x0 = int(np.clip(cx - ww // 2, 0, gt.shape[1] - ww))
        diff = np.clip(np.abs(ours - gt).max(-1) * 4, 0, 1)
        panels = [
            ("AIF", load_png01(photo_file(sd, out, r["set"]))),
            ("ours", ours),
            ("scatter", scat),
            ("Cycles", gt),
            ("|ours − Cycles| ×4", np.repeat(diff[..., None], 3, -1)),
        ]
        label_h, gap = 16, 4
        sheet = Image.new("RGB", (5 * (ww * zoom + gap) - gap, wh * zoom + label_h), "white")
        draw = ImageDraw.Draw(sheet)
        for i, (name, im) in enumerate(panels):
            crop = np.round(im[y0 : y0 + wh, x0 : x0 + ww] * 255).astype(np.uint8)
            tile = Image.fromarray(crop).resize((ww * zoom, wh * zoom), Image.NEAREST)
            sheet.paste(tile, (i * (ww * zoom + gap), label_h))
            draw.text((i * (ww * zoom + gap) + 3, 2), name, fill="black")
        draw.text((3 + 5 * 0, 2), "", fill="black")
        sheets.append((f"{r['set']} {stem} at x={x0} y={y0}: Δ {r['d_psnr']:+.2f} dB", sheet))
    title_h = 16
    total_h = sum(s.height + title_h for _, s in sheets)
    full = Image.new("RGB", (max(s.width for _, s in sheets), total_h), "white")
    draw = ImageDraw.Draw(full)
    y = 0
    for title, s in sheets:
        draw.text((3, y + 2), title, fill="black")
        full.paste(s, (0, y + title_h))
        y += s.height + title_h
    path.parent.mkdir(parents=True, exist_ok=True)
    full.save(path, optimize=True)
    print(f"worst renders → {path}")


# --------------------------------------------------------------------------- main


def check_scatter(data_dir: Path) -> int:
    """The FFT scatter against the direct one on the first render of the first scene."""
    sd = complete_scenes(data_dir)[0][0]
    meta = json.loads((sd / "meta.json").read_text())
    r = meta["renders"][0]
    lin = load_linear(sd / "aif.png")
    coc = signed_coc_radius(np.load(sd / "depth.npy"), r["K_px_m"], r["focus_distance_m"])
    a = linear_to_srgb(render_scatter(lin, coc))
    b = linear_to_srgb(render_scatter_direct(lin, coc))
    mse = float(np.mean((a - b) ** 2))
    print(
        f"{sd.name}/{r['file']}: FFT scatter vs direct scatter: "
        f"{10 * math.log10(1 / max(mse, 1e-20)):.1f} dB PSNR"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--data",
        action="append",
        required=True,
        metavar="[LABEL=]DIR",
        help="a folder of scene folders; repeatable",
    )
    ap.add_argument(
        "--out", required=True, type=Path, help="predictions, caches, CSV (not the repo)"
    )
    ap.add_argument(
        "--variants",
        default="exact,blur,shift,q8,lowres",
        help=f"depth variants, comma-separated, of {', '.join(VARIANTS)}",
    )
    ap.add_argument("--grain", type=float, default=0.0, help="grain of the scored renders (0)")
    ap.add_argument(
        "--grain-check",
        action="store_true",
        help="also render the exact variant with the default grain and compare noise",
    )
    ap.add_argument(
        "--photo-jpeg", type=int, metavar="Q", help="give both renderers the AIF as a JPEG"
    )
    ap.add_argument("--evaluate", type=Path, default=DEFAULT_EVALUATE)
    ap.add_argument("--markdown", type=Path, help="write the tables to this file")
    ap.add_argument("--worst-png", type=Path, help="crops of the three worst renders")
    ap.add_argument(
        "--setting",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="override a RenderSettings field (an ablation; reported in the table)",
    )
    ap.add_argument(
        "--patch",
        action="append",
        default=[],
        metavar="MODULE.NAME=JSON",
        help="set a module constant for this run (an ablation; reported in the table)",
    )
    ap.add_argument(
        "--check-scatter",
        action="store_true",
        help="only compare the FFT scatter with the direct one and exit",
    )
    a = ap.parse_args(argv)

    global PHOTO_JPEG
    PHOTO_JPEG = a.photo_jpeg
    data = dict(parse_data_arg(t) for t in a.data)
    for item in a.setting:
        name, _, value = item.partition("=")
        OVERRIDES[name] = json.loads(value)
    for item in a.patch:
        target, _, value = item.partition("=")
        module, _, name = target.rpartition(".")
        setattr(importlib.import_module(module), name, json.loads(value))
        PATCHES[target] = json.loads(value)
    if a.check_scatter:
        return check_scatter(next(iter(data.values())))
    variants = [v for v in a.variants.split(",") if v]
    for v in variants:
        if v not in VARIANTS:
            raise SystemExit(f"fidelity: unknown depth variant {v!r}")
    ev = load_evaluate(a.evaluate)
    out = a.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now()
    fingerprint = source_fingerprint()
    rows, skipped = [], {}
    for label, d in data.items():
        r, s = run_set(label, d, out, variants, ev, a.grain_check, a.grain)
        rows += r
        skipped[label] = s
    if source_fingerprint() != fingerprint:
        print("WARNING: bokehkit's sources changed during the run; the numbers mix versions")
        fingerprint += " (changed during the run!)"

    with open(out / "renders.csv", "w", newline="") as f:
        keys = sorted(
            {k for r in rows for k in r},
            key=lambda k: list(rows[0]).index(k) if k in rows[0] else 99,
        )
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    groups = {}
    for label in data:
        for v in variants:
            sel = [r for r in rows if r["set"] == label and r["variant"] == v]
            if sel:
                groups[(label, v)] = summarise(sel)
    cmd = "python benchmarks/fidelity.py " + " ".join(sys.argv[1:] if argv is None else argv)
    md = [
        f"Run {started:%Y-%m-%d %H:%M}, bokehkit sources `{fingerprint}`, grain {a.grain:g}"
        + f", photo {photo_kind()}"
        + (f", settings {OVERRIDES}" if OVERRIDES else "")
        + (f", patched {PATCHES}" if PATCHES else "")
        + ".",
        "",
        f"    {cmd}",
        "",
    ]
    for label, d in data.items():
        scenes = sorted({r["scene"] for r in rows if r["set"] == label})
        md.append(
            f"* **{label}**: `{d}`, {len(scenes)} scenes"
            + (f" ({len(skipped[label])} incomplete, skipped)" if skipped[label] else "")
        )
    md += [""] + summary_table(groups) + [""]
    md += grain_lines(rows)
    for label in data:
        sel = [r for r in rows if r["set"] == label and r["variant"] == "exact"]
        if sel:
            md += ["", f"#### {label}, exact depth, per render", ""] + per_render_table(sel)
    report = "\n".join(md) + "\n"
    print("\n" + report)
    (out / "summary.json").write_text(
        json.dumps({f"{k[0]}/{k[1]}": v for k, v in groups.items()}, indent=1)
    )
    if a.markdown:
        a.markdown.parent.mkdir(parents=True, exist_ok=True)
        a.markdown.write_text(report)
    if a.worst_png and rows:
        worst_crops(rows, data, out, a.worst_png)
    return 0


if __name__ == "__main__":
    sys.exit(main())

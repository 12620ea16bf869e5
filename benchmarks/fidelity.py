"""Fidelity benchmark: our `classical` renderer against Blender Cycles thin-lens ground truth.

For every scene folder (``aif.png``, ``depth.npy``, ``meta.json``, ``bokeh_f{N}_d{D}.png``, as
written by the bench's ``gen_scene.py``; see ``/work/shared/bench/README.md``) and every render
entry in its ``meta.json`` this script produces three predictions and scores them with the
bench's own ``evaluate.py``:

* ``classical``: our renderer, run through its command line exactly as a user would
  (``bokehkit render aif.png --depth depth.npy --depth-units m --focus-distance D ...``,
  cwd = the scene folder, default look settings, so highlight recovery and grain are on).
* ``scatter``: a BokehMe-style classical scatter without any occlusion handling, in linear
  light. Each source pixel with blur radius r spreads the weight
  ``w = ½(1 + tanh(4(r − δ))) / (r² + 0.2)`` to every target at distance δ ≤ r + 1 and the
  result is ``Σ w·I / Σ w``.
* ``gauss_buckets``: |r| rounded to 1 px buckets, the whole image blurred once per bucket by
  a Gaussian of σ = r/2 (a uniform disc of radius r has a per-axis variance of r²/4), and
  each pixel takes the image of its own bucket. No occlusion, no layering.

Both references read the same inputs as ours: ``aif.png`` decoded with the sRGB EOTF and the
blur radius from metric depth, ``r = K_px_m / 2 · (1/z − 1/d_f)`` (``K_px_m`` in meta.json is
the constant of the CoC *diameter*, bench README §3), positive in front of the focal plane.

    python benchmarks/fidelity.py --data [LABEL=]DIR [--data [LABEL=]DIR2 ...] --out DIR
        [--markdown FILE] [--crop SCENE/FILE@X,Y,W,H --crop-png FILE]

Scenes whose ``meta.json`` is missing or that lack any listed bokeh file are skipped (a set
that is still being rendered). Predictions, the scorer's JSON and logs go under ``--out``.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import math
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage as ndi

REPO = Path(__file__).resolve().parents[1]
DEFAULT_EVALUATE = Path("/work/shared/bench/evaluate.py")
METHODS = ("classical", "scatter", "gauss_buckets")
#: Columns of the summary table: (key in evaluate.py's JSON, header, higher is better).
METRICS = (
    ("psnr", "PSNR", True),
    ("ssim", "SSIM", True),
    ("ms_ssim", "MS-SSIM", True),
    ("gmsd", "GMSD ↓", False),
    ("psnr_focus", "PSNR in-focus", True),
    ("psnr_defocus", "PSNR defocus", True),
    ("psnr_edges", "PSNR edges", True),
    ("psnr_hl", "PSNR highlights", True),
)


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


# --------------------------------------------------------------------------- reference renderers


def render_scatter(linear: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """BokehMe-style classical scatter, no occlusion handling, normalised.

    Loops over the integer offsets (dx, dy) within the largest reach and adds every source
    pixel's weighted colour to the pixel at that offset, one shifted array per offset.
    """
    r = np.abs(radius).astype(np.float32)
    h, w = r.shape
    reach = math.ceil(float(r.max(initial=0.0))) + 1  # targets with δ ≤ r + 1
    norm = 1.0 / (r * r + 0.2)
    num = np.zeros((h, w, 3), np.float32)
    den = np.zeros((h, w), np.float32)
    for dy in range(-reach, reach + 1):
        for dx in range(-reach, reach + 1):
            dist = math.hypot(dx, dy)
            if dist > reach or dy <= -h or dy >= h or dx <= -w or dx >= w:
                continue
            # Source rows/cols that land inside the image after the shift, and their targets.
            sy, ty = slice(max(0, -dy), h - max(0, dy)), slice(max(0, dy), h - max(0, -dy))
            sx, tx = slice(max(0, -dx), w - max(0, dx)), slice(max(0, dx), w - max(0, -dx))
            rs = r[sy, sx]
            reaches = rs + 1.0 >= dist
            if not reaches.any():
                continue
            wt = 0.5 * (1.0 + np.tanh(4.0 * (rs - dist))) * norm[sy, sx]
            wt *= reaches
            num[ty, tx] += wt[..., None] * linear[sy, sx]
            den[ty, tx] += wt
    return num / np.maximum(den, 1e-12)[..., None]


def render_gauss_buckets(linear: np.ndarray, radius: np.ndarray) -> np.ndarray:
    """Depth-bucketed Gaussian blur: |r| in 1 px buckets, σ = r/2, no occlusion handling."""
    bucket = np.rint(np.abs(radius)).astype(np.int32)
    out = linear.copy()  # bucket 0 stays sharp
    for b in np.unique(bucket):
        if b == 0:
            continue
        sel = bucket == b
        sigma = b / 2.0  # per-axis std of a uniform disc of radius b
        blurred = ndi.gaussian_filter(linear, (sigma, sigma, 0), mode="reflect")
        out[sel] = blurred[sel]
    return out


REFERENCES = {"scatter": render_scatter, "gauss_buckets": render_gauss_buckets}


# --------------------------------------------------------------------------- data sets


def complete_scenes(data_dir: Path) -> tuple[list[Path], list[str]]:
    """Scene folders that have meta.json, aif.png, depth.npy and every listed bokeh file.

    Returns (usable scenes, reasons for the skipped ones).
    """
    usable, skipped = [], []
    for sd in sorted(p for p in data_dir.iterdir() if p.is_dir()):
        meta_path = sd / "meta.json"
        if not meta_path.exists():
            skipped.append(f"{sd.name}: no meta.json")
            continue
        try:
            meta = json.loads(meta_path.read_text())
        except json.JSONDecodeError:
            skipped.append(f"{sd.name}: meta.json unreadable")
            continue
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


def slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "_", text).strip("_").lower() or "data"


# --------------------------------------------------------------------------- running the methods


def find_bokehkit() -> Path:
    """The venv's `bokehkit` executable (the one users get from `pip install`)."""
    for cand in (REPO / ".venv" / "bin" / "bokehkit", Path(sys.executable).with_name("bokehkit")):
        if cand.exists():
            return cand
    found = shutil.which("bokehkit")
    if not found:
        sys.exit("fidelity: no `bokehkit` executable found (install the project into the venv)")
    return Path(found)


#: Run by the CLI's own interpreter: the bokehkit modules a classical render imports.
_LIST_MODULES = """
import sys
import bokehkit.cli, bokehkit.pipeline
from bokehkit.renderers import get_renderer
get_renderer("classical")
for name, mod in sorted(sys.modules.items()):
    if name.split(".")[0] == "bokehkit" and getattr(mod, "__file__", None):
        print(mod.__file__)
"""


def render_modules(exe: Path) -> list[Path]:
    """Source files of the bokehkit modules that `exe` loads to render (its #! interpreter)."""
    interp = exe.read_text(errors="replace").splitlines()[0].removeprefix("#!").strip()
    proc = subprocess.run([interp, "-c", _LIST_MODULES], capture_output=True, text=True,
                          check=False)
    files = [Path(ln) for ln in proc.stdout.split()]
    if proc.returncode != 0 or not files:  # fall back to the whole package in the repo
        return sorted((REPO / "core" / "bokehkit").rglob("*.py"))
    return files


def source_fingerprint(files: list[Path]) -> str:
    """Short hash of the renderer's sources.

    Others edit the tree while benchmarks run; the hash tells which code a number belongs to.
    """
    h = hashlib.sha256()
    for f in files:
        h.update(str(f).encode() + b"\0" + (f.read_bytes() if f.exists() else b""))
    return h.hexdigest()[:12]


def run_classical(exe: Path, scene: Path, meta: dict, render: dict, out_png: Path) -> dict:
    """Our renderer through its CLI, from inside the scene folder. Returns timings."""
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(exe), "render", "aif.png",
        "--depth", "depth.npy", "--depth-units", "m",
        "--focus-distance", repr(float(render["focus_distance_m"])),
        "--aperture", repr(float(render["fstop"])),
        "--focal-length", repr(float(meta["focal_length_mm"])),
        "--sensor-width", repr(float(meta["sensor_width_mm"])),
        "-o", str(out_png),
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=scene, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0 or not out_png.exists():
        raise RuntimeError(
            f"bokehkit exited {proc.returncode} on {scene.name}/{render['file']}:\n"
            f"{' '.join(cmd)}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
        )
    # The CLI reports its own pipeline time ("output: 640×426 in 1.5 s"), without start-up.
    m = re.search(r"^output: .* in ([0-9.]+) s", proc.stdout, re.MULTILINE)
    return {"wall_s": wall, "pipeline_s": float(m.group(1)) if m else float("nan"),
            "report": proc.stdout.strip()}


def render_set(label: str, data_dir: Path, out_dir: Path, exe: Path, sources: list[Path]) -> dict:
    """Render all three methods for one data set; returns scenes, timings and paths."""
    scenes, skipped = complete_scenes(data_dir)
    for s in skipped:
        print(f"[{label}] skip {s}", flush=True)
    if not scenes:
        raise SystemExit(f"fidelity: no complete scene in {data_dir}")
    base = out_dir / slug(label)
    # evaluate.py scores every scene folder with a meta.json, so give it only the usable ones.
    stage = base / "data"
    if stage.exists():
        shutil.rmtree(stage)
    stage.mkdir(parents=True)
    times = {m: 0.0 for m in METHODS}
    pipeline_s = 0.0
    notes = []
    fingerprints = set()
    for sd in scenes:
        (stage / sd.name).symlink_to(sd, target_is_directory=True)
        meta = json.loads((sd / "meta.json").read_text())
        depth = np.load(sd / "depth.npy")
        for r in meta["renders"]:
            fingerprints.add(source_fingerprint(sources))
            res = run_classical(exe, sd, meta, r, base / "pred" / "classical" / sd.name / r["file"])
            times["classical"] += res["wall_s"]
            pipeline_s += res["pipeline_s"]
            notes += [f"{sd.name}/{r['file']}: {ln}" for ln in res["report"].splitlines()
                      if ln.startswith("note")]
            for name, fn in REFERENCES.items():
                t0 = time.perf_counter()  # decode + render + encode, like the CLI's work
                lin = load_linear(sd / "aif.png")
                coc = signed_coc_radius(depth, r["K_px_m"], r["focus_distance_m"])
                save_srgb(base / "pred" / name / sd.name / r["file"], fn(lin, coc))
                times[name] += time.perf_counter() - t0
            print(f"[{label}] {sd.name} {r['file']}: classical {res['wall_s']:.1f} s "
                  f"(pipeline {res['pipeline_s']:.1f} s)", flush=True)
    fingerprints.add(source_fingerprint(sources))
    if len(fingerprints) > 1:
        print(f"[{label}] WARNING: bokehkit's sources changed during the run "
              f"({', '.join(sorted(fingerprints))}); the classical numbers mix versions",
              flush=True)
    n = sum(len(json.loads((sd / "meta.json").read_text())["renders"]) for sd in scenes)
    return {"label": label, "data": str(data_dir), "scenes": [s.name for s in scenes],
            "fingerprints": sorted(fingerprints), "skipped": skipped, "n_images": n,
            "times_s": times, "classical_pipeline_s": pipeline_s, "notes": notes, "base": base}


def score_set(info: dict, evaluate: Path) -> dict:
    """Run the bench's evaluate.py on the three prediction folders; returns its JSON."""
    base = info["base"]
    out_json = base / "eval.json"
    cmd = [sys.executable, str(evaluate), "--data", str(base / "data"), "--json", str(out_json),
           "--csv", str(base / "eval.csv")]
    for m in METHODS:
        cmd += ["--pred", f"{m}={base / 'pred' / m}"]
    with open(base / "eval.log", "w") as log:
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"fidelity: evaluate.py failed, see {base / 'eval.log'}")
    result = json.loads(out_json.read_text())
    for m in METHODS:  # a missing or mis-sized prediction is only a warning in evaluate.py
        got = result["summary"].get(m, {}).get("n", 0)
        if got != info["n_images"]:
            raise SystemExit(f"fidelity: {m} scored on {got} of {info['n_images']} images")
    return result


# --------------------------------------------------------------------------- tables


def _fmt(key: str, v: float) -> str:
    if math.isnan(v):  # region absent in every image
        return "–"
    return f"{v:.3f}" if key in ("ssim", "ms_ssim", "gmsd") else f"{v:.2f}"


def summary_table(info: dict, result: dict) -> list[str]:
    """Mean metrics per method, the best value per column in bold."""
    summ = result["summary"]
    head = "| method | " + " | ".join(h for _, h, _ in METRICS) + " | time total |"
    lines = [head, "|" + "---|" * (len(METRICS) + 2)]
    best = {}
    for key, _, higher in METRICS:
        vals = [summ[m][key] for m in METHODS if not math.isnan(summ[m][key])]
        best[key] = (max if higher else min)(vals) if vals else None
    for m in METHODS:
        cells = []
        for key, _, _ in METRICS:
            v = summ[m][key]
            s = _fmt(key, v)
            cells.append(f"**{s}**" if best[key] is not None and _fmt(key, best[key]) == s else s)
        lines.append(f"| {m} | " + " | ".join(cells) + f" | {info['times_s'][m]:.1f} s |")
    return lines


def per_scene_table(result: dict) -> list[str]:
    """Per scene (mean over its settings): PSNR and edge PSNR for each method."""
    rows = result["rows"]
    scenes = sorted({r["scene"] for r in rows})
    head = "| scene | " + " | ".join(f"{m} PSNR" for m in METHODS) + " | " + " | ".join(
        f"{m} edges" for m in METHODS) + " |"
    lines = [head, "|" + "---|" * (2 * len(METHODS) + 1)]
    for s in scenes:
        cells = []
        for key in ("psnr", "psnr_edges"):
            for m in METHODS:
                v = np.nanmean([r[key] for r in rows if r["scene"] == s and r["method"] == m])
                cells.append(_fmt(key, float(v)))
        lines.append(f"| {s} | " + " | ".join(cells) + " |")
    return lines


def markdown_report(sets: list[tuple[dict, dict]]) -> str:
    out = []
    for info, result in sets:
        out += [f"### {info['label']}: `{info['data']}`", "",
                f"{len(info['scenes'])} scenes, {info['n_images']} images: "
                + ", ".join(info["scenes"]) + ".", ""]
        fp = info["fingerprints"]
        out += [f"bokehkit source fingerprint: `{fp[0]}`." if len(fp) == 1 else
                f"**bokehkit's sources changed during this run** ({', '.join(fp)}): the "
                "classical numbers mix versions; rerun.", ""]
        if info["skipped"]:
            out += ["Skipped (incomplete): " + "; ".join(info["skipped"]) + ".", ""]
        out += summary_table(info, result) + [""]
        out += [(f"Time is the total over the set: `classical` is the CLI's wall time per call "
                 f"including Python start-up (its own pipeline time: "
                 f"{info['classical_pipeline_s']:.1f} s); the references are timed in-process "
                 "(PNG decode, render, encode)."), ""]
        out += per_scene_table(result) + [""]
        if info["notes"]:
            out += ["CLI notes: " + "; ".join(info["notes"]), ""]
    return "\n".join(out)


# --------------------------------------------------------------------------- crop figure


def crop_figure(spec: str, sets: list[tuple[dict, dict]], path: Path, zoom: int = 2) -> None:
    """AIF | classical | scatter | gauss_buckets | Cycles for one window, zoomed ×`zoom`.

    `spec` is ``SCENE/FILE@X,Y,W,H`` (FILE = the bokeh file name in meta.json).
    """
    m = re.fullmatch(r"([^/]+)/([^@]+)@(\d+),(\d+),(\d+),(\d+)", spec)
    if not m:
        raise SystemExit(f"fidelity: --crop wants SCENE/FILE@X,Y,W,H, got {spec!r}")
    scene, fname = m.group(1), m.group(2)
    x, y, w, h = (int(v) for v in m.group(3, 4, 5, 6))
    for info, _ in sets:
        if scene in info["scenes"]:
            break
    else:
        raise SystemExit(f"fidelity: scene {scene} is not in any data set")
    sd, base = Path(info["data"]) / scene, info["base"]
    panels = [("AIF", sd / "aif.png")]
    panels += [(mth, base / "pred" / mth / scene / fname) for mth in METHODS]
    panels += [("Cycles", sd / fname)]
    label_h, gap = 18, 4
    tiles = []
    for name, p in panels:
        im = Image.open(p).convert("RGB").crop((x, y, x + w, y + h))
        tiles.append((name, im.resize((w * zoom, h * zoom), Image.NEAREST)))
    sheet = Image.new("RGB", (len(tiles) * (w * zoom + gap) - gap, h * zoom + label_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (name, im) in enumerate(tiles):
        x0 = i * (w * zoom + gap)
        sheet.paste(im, (x0, label_h))
        draw.text((x0 + 4, 3), name, fill="black")
    path.parent.mkdir(parents=True, exist_ok=True)
    sheet.save(path, optimize=True)
    print(f"crop {scene}/{fname} at x={x} y={y} {w}×{h} → {path} "
          f"({path.stat().st_size / 1024:.0f} KB)")


# --------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", action="append", required=True, metavar="[LABEL=]DIR",
                    help="a folder of scene folders; repeatable")
    ap.add_argument("--out", required=True, type=Path,
                    help="where predictions, the scorer's JSON/CSV and logs go (not the repo)")
    ap.add_argument("--markdown", type=Path, help="also write the tables to this file")
    ap.add_argument("--evaluate", type=Path, default=DEFAULT_EVALUATE,
                    help=f"the bench's scorer (default {DEFAULT_EVALUATE})")
    ap.add_argument("--bokehkit", type=Path, default=None, help="the CLI (default: the venv's)")
    ap.add_argument("--crop", metavar="SCENE/FILE@X,Y,W,H",
                    help="window for the side-by-side crop figure")
    ap.add_argument("--crop-png", type=Path, help="where to write the crop figure")
    a = ap.parse_args(argv)

    exe = a.bokehkit or find_bokehkit()
    sources = render_modules(exe)
    a.out = a.out.resolve()
    a.out.mkdir(parents=True, exist_ok=True)
    started = datetime.datetime.now()
    sets = []
    for text in a.data:
        label, data_dir = parse_data_arg(text)
        info = render_set(label, data_dir, a.out, exe, sources)
        sets.append((info, score_set(info, a.evaluate)))

    header = [f"Run {started:%Y-%m-%d %H:%M}, bokehkit CLI `{exe}`, scorer `{a.evaluate}`.", ""]
    versions = sorted({fp for info, _ in sets for fp in info["fingerprints"]})
    if len(versions) > 1:  # the sets (or images within one) were rendered by different code
        header += [f"**Warning: the renderer's sources changed during the run** "
                   f"({', '.join(versions)}); the sets are not comparable. Rerun.", ""]
    report = "\n".join(header) + "\n" + markdown_report(sets)
    print("\n" + report)
    print("Total time per method over all sets:")
    for m in METHODS:
        print(f"  {m:14s} {sum(info['times_s'][m] for info, _ in sets):7.1f} s")
    if a.markdown:
        a.markdown.parent.mkdir(parents=True, exist_ok=True)
        a.markdown.write_text(report + "\n")
    summary = [{k: (str(v) if isinstance(v, Path) else v) for k, v in info.items()}
               | {"summary": res["summary"]} for info, res in sets]
    (a.out / "fidelity.json").write_text(json.dumps(summary, indent=1))
    if a.crop:
        crop_figure(a.crop, sets, a.crop_png or a.out / "fidelity-crop.png")
    return 0


if __name__ == "__main__":
    sys.exit(main())

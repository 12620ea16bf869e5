"""Seconds per megapixel of bokehkit's learned models on this CPU, in one table.

Rows, each run the way bokehkit runs it:

* ISNet (automatic subject), onnxruntime: `subject.subject_mask_linear` (the photo reduced
  to the network's fixed 1024×1024, the matte enlarged back);
* Real-ESRGAN x4plus, the "realesrgan" upscaler: `sr.realesrgan.upscale_realesrgan` ×4,
  tiled (256 px windows), with torch and with onnxruntime;
* Depth-Anything-V2 small, base and large (large is also DAdepth's network), as
  `depth_models.estimate_depth` runs them: the photo reduced to a short side of 518 px,
  the network, its output normalised and enlarged to the photo; torch and onnxruntime.

A model installed in the model store (--store; default $BOKEHKIT_MODELS, else the user's)
runs with its real weights; one that is not runs as a network of the same architecture
with random weights (the compute does not depend on the values): the "weights" column
says which. Nothing is downloaded. The onnxruntime rows of random networks include a
one-off export (its seconds are in "load").

Sizes: a 3:2 photo of --megapixels (default 1 MP) for ISNet and depth; Real-ESRGAN, a
hundred times slower per megapixel, enlarges a --sr-megapixels input (default 0.06 MP, to
about 1 MP), and its s/MP is per input megapixel. "load": reading (or, for random weights,
building and exporting) the network and starting its session; "run": the first call after
that (with --repeat N, the best of it and N more; the first call's one-off costs were
within the noise here); s/MP = run / megapixels. Times on a shared machine vary with the
other load on it.

    python benchmarks/models_speed.py [--store DIR] [--megapixels 1] [--sr-megapixels 0.06]
        [--only isnet realesrgan depth] [--depth small base large] [--backends torch onnx]
        [--repeat 0] [--json FILE] [--overlay docs/img/isnet-astronaut.png]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

from bokehkit.io.colour import srgb_to_linear
from bokehkit.scene import subject
from bokehkit.store import ModelStore

REPO = Path(__file__).resolve().parents[1]

REAL, RANDOM = "real", "random"


# ---------------------------------------------------------------------------- helpers
def photo(megapixels: float) -> np.ndarray:
    """scikit-image's astronaut resized to a 3:2 photo of `megapixels`, in linear light."""
    import skimage.data

    w = int(round((megapixels * 1e6 * 1.5) ** 0.5))
    im = Image.fromarray(skimage.data.astronaut()).resize((w, int(round(w / 1.5))), Image.BICUBIC)
    return srgb_to_linear(np.asarray(im, np.float32) / 255.0)


def timed(fn: Callable[[], object], repeat: int) -> tuple[float, float]:
    """(first call, best of it and `repeat` calls after it) in seconds."""
    times = []
    for _ in range(1 + repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return times[0], min(times)


def row(model, weights, backend, network_input, megapixels, load_s, first_s, run_s) -> dict:
    r = {
        "model": model,
        "weights": weights,
        "backend": backend,
        "network_input": network_input,
        "megapixels": round(megapixels, 3),
        "load_s": round(load_s, 1),
        "first_s": round(first_s, 2),
        "run_s": round(run_s, 2),
        "s_per_mp": round(run_s / megapixels, 3),
    }
    print(json.dumps(r), flush=True)
    return r


def random_onnx(model, example, name: str, input_name: str, output_name: str, shapes) -> Path:
    """Export a random-weight network to a temporary ONNX file (deleted at exit)."""
    import atexit
    import shutil

    from bokehkit import onnxtools

    folder = Path(tempfile.mkdtemp(prefix="models-speed-"))
    atexit.register(shutil.rmtree, folder, True)
    return onnxtools.export_onnx(
        model, example, folder / f"{name}.onnx", input_name, output_name, shapes
    )


def _frozen(model):
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


# ---------------------------------------------------------------------------- ISNet
def isnet_random():
    """ISNet-DIS as published (`ISNetDIS`, github.com/xuebinqin/DIS: a stride-2 stem, six
    residual U-blocks down and five up, the first side output as the matte), 44M random
    weights in fp32 (the installed model is the 8-bit quantised export of the same net)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    def cbr(cin: int, cout: int, dil: int = 1) -> nn.Module:
        conv = nn.Conv2d(cin, cout, 3, padding=dil, dilation=dil)
        return nn.Sequential(conv, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))

    def up(x, like):
        return F.interpolate(x, size=like.shape[2:], mode="bilinear", align_corners=False)

    class RSU(nn.Module):
        """Residual U-block of `height` levels; `dilated`: RSU-4F (dilations, no pooling)."""

        def __init__(self, height: int, cin: int, mid: int, cout: int, dilated: bool = False):
            super().__init__()
            self.dilated = dilated
            dil = [2**i if dilated else 1 for i in range(height - 1)]
            self.inp = cbr(cin, cout)
            self.enc = nn.ModuleList(cbr(mid if i else cout, mid, d) for i, d in enumerate(dil))
            self.bottom = cbr(mid, mid, 2 ** (height - 1) if dilated else 2)
            self.dec = nn.ModuleList(cbr(2 * mid, mid if i else cout, d) for i, d in enumerate(dil))

        def forward(self, x):
            top = h = self.inp(x)
            feats = []
            for i, conv in enumerate(self.enc):
                h = conv(h)
                feats.append(h)
                if not self.dilated and i < len(self.enc) - 1:
                    h = F.max_pool2d(h, 2, 2, ceil_mode=True)
            h = self.bottom(h)
            for i in reversed(range(len(self.enc))):
                h = self.dec[i](torch.cat([h, feats[i]], 1))
                if not self.dilated and i:
                    h = up(h, feats[i - 1])
            return h + top

    class ISNetDIS(nn.Module):
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv2d(3, 64, 3, stride=2, padding=1)
            self.down = nn.ModuleList([
                RSU(7, 64, 32, 64), RSU(6, 64, 32, 128), RSU(5, 128, 64, 256),
                RSU(4, 256, 128, 512), RSU(4, 512, 256, 512, True), RSU(4, 512, 256, 512, True),
            ])  # fmt: skip
            self.up = nn.ModuleList([
                RSU(7, 128, 16, 64), RSU(6, 256, 32, 64), RSU(5, 512, 64, 128),
                RSU(4, 1024, 128, 256), RSU(4, 1024, 256, 512, True),
            ])  # fmt: skip
            self.side = nn.Conv2d(64, 1, 3, padding=1)

        def forward(self, x):
            h, feats = self.stem(x), []
            for i, stage in enumerate(self.down):
                if i:
                    h = F.max_pool2d(h, 2, 2, ceil_mode=True)
                h = stage(h)
                feats.append(h)
            for i in reversed(range(len(self.up))):
                h = self.up[i](torch.cat([up(h, feats[i]), feats[i]], 1))
            return torch.sigmoid(up(self.side(h), x))

    return _frozen(ISNetDIS())


def bench_isnet(store: ModelStore, megapixels: float, repeat: int) -> list[dict]:
    import torch

    linear = photo(megapixels)
    h, w = linear.shape[:2]
    t = time.perf_counter()
    if store.is_installed("isnet"):
        path, weights = store.require("isnet"), REAL
    else:
        example = torch.zeros(1, 3, subject.INPUT_SIZE, subject.INPUT_SIZE)
        path = random_onnx(isnet_random(), example, "isnet", "input", "output", None)
        weights = RANDOM
    subject._sessions.clear()
    subject._session(path)
    load = time.perf_counter() - t

    def run():
        subject._last = None  # the preview cache would make repeats free
        subject.subject_mask_linear(linear, path)

    first, best = timed(run, repeat)
    size = f"{subject.INPUT_SIZE}×{subject.INPUT_SIZE}"
    subject._sessions.clear()
    return [row("ISNet", weights, "onnxruntime", size, w * h / 1e6, load, first, best)]


def save_overlay(path: Path, out: Path) -> None:
    """The astronaut with what ISNet leaves out tinted red, and the matte beside it."""
    import skimage.data

    rgb = skimage.data.astronaut()
    m = subject.subject_mask(rgb, path)[..., None]
    f = rgb / 255.0
    dim = 0.45 * f + 0.4 * np.array([0.9, 0.1, 0.1])
    panel = np.concatenate([f * m + dim * (1 - m), np.ones((512, 8, 3)), np.repeat(m, 3, -1)], 1)
    img = Image.fromarray((np.clip(panel, 0, 1) * 255 + 0.5).astype(np.uint8))
    img = img.resize((img.width // 2, img.height // 2), Image.LANCZOS)
    out.parent.mkdir(parents=True, exist_ok=True)
    img.save(out, optimize=True)
    print(f"wrote {out}")


# ---------------------------------------------------------------------------- Real-ESRGAN
def realesrgan_net(store: ModelStore, backend: str) -> tuple[Callable, str]:
    """(N×3×H×W → N×3×4H×4W, weights): the installed model, else random RRDBNet x4plus."""
    from bokehkit.sr import realesrgan

    if store.is_installed(realesrgan.MODEL_ID):
        return realesrgan.network(store, backend), REAL
    import torch

    from bokehkit.sr.rrdbnet import X4PLUS, RRDBNet

    net = _frozen(RRDBNet(**X4PLUS))
    if backend == "torch":

        def run(x):
            with torch.inference_mode():
                return net(torch.from_numpy(np.ascontiguousarray(x, np.float32))).numpy()

        return run, RANDOM
    example = torch.rand(1, 3, 32, 32)
    hh, ww = torch.export.Dim("height", min=1, max=8192), torch.export.Dim("width", min=1, max=8192)
    path = random_onnx(net, example, "realesrgan", "input", "output", {"x": {2: hh, 3: ww}})
    sess = realesrgan.onnx_session(path)

    def run_onnx(x):
        return sess.run(["output"], {"input": np.ascontiguousarray(x, np.float32)})[0]

    return run_onnx, RANDOM


def bench_realesrgan(
    store: ModelStore, megapixels: float, backends: list[str], repeat: int
) -> list[dict]:
    from bokehkit.sr import realesrgan

    linear = photo(megapixels)
    h, w = linear.shape[:2]
    rows = []
    for backend in backends:
        t = time.perf_counter()
        net, weights = realesrgan_net(store, backend)
        load = time.perf_counter() - t
        first, best = timed(
            lambda net=net: realesrgan.upscale_realesrgan(linear, 4, net=net), repeat
        )
        name = "onnxruntime" if backend == "onnx" else backend
        size = f"{realesrgan.TILE} px tiles"
        rows.append(
            row("Real-ESRGAN x4plus (×4)", weights, name, size, w * h / 1e6, load, first, best)
        )
    return rows


# ---------------------------------------------------------------------------- depth
def depth_net(store: ModelStore, model_id: str, backend: str) -> tuple[Callable, str]:
    """(N×3×h×w → N×h×w, weights): the installed checkpoint, else random weights."""
    from bokehkit.scene.depth_models import runtime, specs
    from bokehkit.scene.depth_models.checkpoint import build

    net = specs.net(model_id)
    if model_id in store.manifest.ids and store.is_installed(model_id):
        run, _ = runtime.network(net, store.require(model_id), backend, export=True)
        return run, REAL
    model = _frozen(build(net))
    if backend == "torch":
        return (lambda x: runtime.run_torch(model, x)), RANDOM
    import torch

    from bokehkit.scene.depth_models.specs import PATCH

    example = torch.zeros(1, 3, 3 * PATCH, 4 * PATCH)
    gh = torch.export.Dim("grid_h", min=2, max=1024)
    gw = torch.export.Dim("grid_w", min=2, max=1024)
    shapes = {"x": {2: PATCH * gh, 3: PATCH * gw}}
    path = random_onnx(model, example, model_id, runtime.INPUT_NAME, runtime.OUTPUT_NAME, shapes)
    runtime.onnx_session(path)
    return (lambda x: runtime.run_onnx(path, x)), RANDOM


def bench_depth(
    store: ModelStore, sizes: list[str], megapixels: float, backends: list[str], repeat: int
) -> list[dict]:
    from bokehkit import onnxtools
    from bokehkit.io.maps import resize_map
    from bokehkit.scene.depth_models import runtime

    linear = photo(megapixels)
    h, w = linear.shape[:2]
    rows = []
    for size in sizes:
        model_id = f"depth-anything-v2-{size}"
        for backend in backends:
            t = time.perf_counter()
            run, weights = depth_net(store, model_id, backend)
            load = time.perf_counter() - t
            x = runtime.prepare_input(linear)

            def once(run=run):
                out = run(runtime.prepare_input(linear))[0]
                return resize_map(runtime.normalise_disparity(out), w, h)

            first, best = timed(once, repeat)
            name = "onnxruntime" if backend == "onnx" else backend
            grid = f"{x.shape[3]}×{x.shape[2]}"
            rows.append(
                row(
                    f"Depth-Anything-V2 {size}", weights, name, grid, w * h / 1e6, load, first, best
                )
            )
            del run
            onnxtools._sessions.clear()  # one large session at a time
    return rows


# ---------------------------------------------------------------------------- the table
def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return f"{cpu}, {cores} cores, {platform.system()} {platform.machine()}"


def table(rows: list[dict]) -> str:
    lines = [
        "| model | weights | backend | network input | MP | load | run | s/MP |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(
            f"| {r['model']} | {r['weights']} | {r['backend']} | {r['network_input']} | "
            f"{r['megapixels']:.2f} | {r['load_s']:.1f} s | {r['run_s']:.2f} s | "
            f"**{r['s_per_mp']:.2f}** |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", help="model store (default: $BOKEHKIT_MODELS or the user's)")
    ap.add_argument("--megapixels", type=float, default=1.0, help="photo size (ISNet, depth)")
    ap.add_argument("--sr-megapixels", type=float, default=0.06, help="Real-ESRGAN's input")
    ap.add_argument("--only", nargs="+", choices=("isnet", "realesrgan", "depth"))
    ap.add_argument("--depth", nargs="+", default=["small", "base", "large"])
    ap.add_argument("--backends", nargs="+", choices=("torch", "onnx"), default=["torch", "onnx"])
    ap.add_argument("--repeat", type=int, default=0, help="more timed calls (the best counts)")
    ap.add_argument("--json", type=Path)
    ap.add_argument("--overlay", type=Path, help="also write ISNet's astronaut overlay here")
    args = ap.parse_args(argv)
    only = set(args.only or ("isnet", "realesrgan", "depth"))
    import onnxruntime
    import torch

    store = ModelStore(args.store)
    info = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine(),
        "python": platform.python_version(),
        "torch": f"{torch.__version__} ({torch.get_num_threads()} threads)",
        "onnxruntime": onnxruntime.__version__,
        "store": str(store.root),
        "load_average": round(os.getloadavg()[0], 1) if hasattr(os, "getloadavg") else "?",
    }
    header = (
        f"{info['date']}; {info['machine']}; Python {info['python']}, torch {info['torch']}, "
        f"onnxruntime {info['onnxruntime']}; photo {args.megapixels:g} MP (Real-ESRGAN: "
        f"{args.sr_megapixels:g} MP input, ×4); models from {info['store']}; load average "
        f"{info['load_average']} at the start"
    )
    print(header, flush=True)
    started = time.perf_counter()
    rows = []
    if "isnet" in only:
        rows += bench_isnet(store, args.megapixels, args.repeat)
    if "realesrgan" in only:
        rows += bench_realesrgan(store, args.sr_megapixels, args.backends, args.repeat)
    if "depth" in only:
        rows += bench_depth(store, args.depth, args.megapixels, args.backends, args.repeat)
    print(f"\n{header}; whole run {time.perf_counter() - started:.0f} s\n")
    print(table(rows))
    if args.overlay:
        save_overlay(store.require("isnet"), args.overlay)
    if args.json:
        args.json.write_text(json.dumps({"info": info, "rows": rows}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

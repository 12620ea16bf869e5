"""MagicBokeh speed on this CPU: reference mode vs the default (fast) mode, at the REAL
Stable Diffusion 2.1-base size with random weights (compute does not depend on values;
nothing is downloaded).

Reference mode runs VAE encode → injector + UNet → VAE decode on every 512² tile (18
tiles for 1562×1024). The default mode encodes the image once (tiled), runs the
injector + UNet on overlapping latent tiles, and decodes once (tiled). Each stage is
timed ONCE on one tile of the exact shape each mode uses, and the per-image figures are
EXTRAPOLATED as Σ (tile count × stage time): the tiles of one stage all have one shape,
so this is the whole-image cost up to the blending (milliseconds). Peak memory is the
process's resident set during each stage (sampled every 20 ms) above the loaded models.

    python benchmarks/magicbokeh_speed.py [--width 1562 --height 1024] [--threads 2]
                                          [--json FILE]
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import threading
import time
from pathlib import Path

import torch

from bokehkit.magicbokeh import fast
from bokehkit.magicbokeh import reference as ref
from bokehkit.magicbokeh.network import (
    BOKEH_LAYER,
    BokehLoRA,
    MagicBokehNetwork,
    alpha_bar,
    build_controlnet,
    build_unet,
    build_vae,
)
from bokehkit.magicbokeh.stages import TorchStages

REPO = Path(__file__).resolve().parents[1]

# SD 2.1-base (spec §3.1): the real channel counts.
UNET = dict(
    sample_size=64, in_channels=4, out_channels=4,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    block_out_channels=(320, 640, 1280, 1280), layers_per_block=2,
    attention_head_dim=(5, 10, 20, 20), cross_attention_dim=1024, norm_num_groups=32,
    use_linear_projection=True, upcast_attention=False,
)  # fmt: skip
CONTROLNET = dict(
    {k: v for k, v in UNET.items() if k not in ("sample_size", "out_channels", "up_block_types")},
    conditioning_channels=3, conditioning_embedding_out_channels=(16, 32, 96, 256),
)  # fmt: skip
VAE = dict(
    in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4, block_out_channels=(128, 256, 512, 512),
    layers_per_block=2, latent_channels=4, norm_num_groups=32, sample_size=512,
    scaling_factor=0.18215,
)  # fmt: skip
SCHEDULER = dict(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear")
RANK_ATTN = 64  # the spec's FLOP count assumes r_a = 64


def _randomise(model: torch.nn.Module, g: torch.Generator) -> None:
    model.to_empty(device="cpu")
    with torch.no_grad():
        for name, p in [*model.named_parameters(), *model.named_buffers()]:
            if name.endswith("bias"):
                p.zero_()
            elif p.ndim == 1:
                p.fill_(1.0)
            else:
                p.normal_(0, 0.02, generator=g)


def build_network() -> MagicBokehNetwork:
    g = torch.Generator().manual_seed(0)
    unet, cn, vae = build_unet(UNET), build_controlnet(CONTROLNET), build_vae(VAE)
    for m in (unet, cn, vae):
        _randomise(m, g)
    names = [n for n, _ in unet.named_modules() if BOKEH_LAYER.match(n)]
    lora = {}
    for n in names:
        lora[n] = BokehLoRA(dict(unet.named_modules())[n].to_q.in_features, RANK_ATTN)
        with torch.no_grad():
            for p in lora[n].parameters():
                p.normal_(0, 0.02, generator=g)
    net = MagicBokehNetwork(unet, cn, vae, lora, 1 / RANK_ATTN, alpha_bar(SCHEDULER))
    net.requires_grad_(False)
    return net.eval()


def _rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def timed(fn, *args):
    """(seconds, peak RSS above the start in bytes, result) of one call."""
    start_rss, peak, stop = _rss(), [0], threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], _rss())
            stop.wait(0.02)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = fn(*args)
    dt = time.perf_counter() - t0
    stop.set()
    th.join()
    return dt, max(0, max(peak[0], _rss()) - start_rss), out


def stage_times(net, lat_h: int, lat_w: int, label: str, default_mode: bool = False) -> dict:
    """Encode, core and decode timed on one (8·lat_h)×(8·lat_w) tile: through the torch
    network as reference mode calls it, or through `TorchStages` (channels-last inputs,
    the network's dtype) as the default mode does."""
    g = torch.Generator().manual_seed(1)
    img = torch.rand(1, 3, 8 * lat_h, 8 * lat_w, generator=g) * 2 - 1
    disp = torch.rand(1, 1, 8 * lat_h, 8 * lat_w, generator=g) * 0.2
    focus = (disp <= 0.1).float()
    if default_mode:
        st = TorchStages(net)
        img, disp, focus = img.numpy(), disp.numpy(), focus.numpy()
        encode, denoise, decode = st.encode, st.denoise, st.decode
    else:
        encode, denoise, decode = net.encode, net.denoise, net.decode
    r = {}
    r["encode"] = timed(encode, img)
    r["core"] = timed(denoise, r["encode"][2], disp, focus)
    r["decode"] = timed(decode, r["core"][2])
    out = {k: (round(v[0], 2), round(v[1] / 2**30, 2)) for k, v in r.items()}
    print(f"  {label}: " + ", ".join(f"{k} {s} s / {m} GiB" for k, (s, m) in out.items()),
          flush=True)  # fmt: skip
    return out


def _machine() -> str:
    machine = f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                return f"{line.split(':', 1)[1].strip()}, {os.cpu_count()} CPUs"
    except OSError:
        pass
    return machine


def default_mode(net, label: str, vae_tiles, core_tiles, h: int, w: int) -> dict:
    """The default mode's per-image time, extrapolated from one tile of each shape."""
    vae_shape, core_shape = vae_tiles[0][2:4], core_tiles[0][2:4]
    stage_times(net, 8, 8, f"{label} warm-up 64²", default_mode=True)
    vae_st = stage_times(net, *vae_shape, f"{label} VAE tile {8 * vae_shape[1]}×"
                         f"{8 * vae_shape[0]}", default_mode=True)  # fmt: skip
    if tuple(core_shape) == tuple(vae_shape):
        core_st = vae_st
    else:
        core_st = stage_times(net, *core_shape, f"{label} latent tile {core_shape[1]}×"
                              f"{core_shape[0]}", default_mode=True)  # fmt: skip
    parts = {
        "encode": len(vae_tiles) * vae_st["encode"][0],
        "core": len(core_tiles) * core_st["core"][0],
        "decode": len(vae_tiles) * vae_st["decode"][0],
    }
    total = sum(parts.values())
    return {"vae_stage": vae_st, "core_stage": core_st["core"],
            "parts_s": {k: round(v, 1) for k, v in parts.items()},
            "total_s": round(total, 1),
            "per_512_tile_equiv_s": round(total / ((h * w) / 512**2), 1),
            "peak_gib": max(max(v[1] for v in vae_st.values()), core_st["core"][1])}  # fmt: skip


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--width", type=int, default=1562)
    ap.add_argument("--height", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vae-tile", type=int, default=fast.VAE_TILE, help="pixels")
    ap.add_argument("--latent-overlap", type=int, default=fast.LATENT_OVERLAP, help="latents")
    ap.add_argument("--no-bf16", action="store_true", help="skip the bf16 default mode")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    w, h = args.width, args.height

    n_ref = len(ref.tile_positions(max(h, 512), max(w, 512)))
    ph, pw = (-(-n // fast.PAD_MULTIPLE) * fast.PAD_MULTIPLE for n in (h, w))
    vae_tiles = fast.tiles_2d(ph // 8, pw // 8, args.vae_tile // 8, fast.VAE_OVERLAP)
    core_tiles = fast.tiles_2d(ph // 8, pw // 8, fast.LATENT_TILE, args.latent_overlap, 8)
    vae_shape, core_shape = vae_tiles[0][2:4], core_tiles[0][2:4]
    machine = _machine()
    print(f"MagicBokeh speed, {w}×{h}, torch {torch.__version__}, {args.threads} threads")
    print(f"machine: {machine}; {datetime.date.today().isoformat()}")
    print(f"reference: {n_ref} pixel tiles of 512², fp32; default: padded to {pw}×{ph}, "
          f"{len(vae_tiles)} VAE tiles of {8 * vae_shape[1]}×{8 * vae_shape[0]} px, "
          f"{len(core_tiles)} latent tiles of {core_shape[1]}×{core_shape[0]}")  # fmt: skip

    t0 = time.perf_counter()
    net = build_network()
    print(f"built the random-weight network in {time.perf_counter() - t0:.0f} s "
          f"(RSS {_rss() / 2**30:.1f} GiB)", flush=True)  # fmt: skip
    # one small warm-up so one-off allocator/kernel set-up is not timed
    stage_times(net, 8, 8, "reference warm-up 64²")
    ref_st = stage_times(net, 64, 64, "reference tile 512² (fp32, as reference mode runs)")
    ref_tile = sum(v[0] for v in ref_st.values())
    ref_total = n_ref * ref_tile

    net = net.to(memory_format=torch.channels_last)  # as load_network gives the default mode
    modes = {"fp32": default_mode(net, "default fp32", vae_tiles, core_tiles, h, w)}
    if not args.no_bf16:
        modes["bf16"] = default_mode(net.to(torch.bfloat16), "default bf16", vae_tiles,
                                     core_tiles, h, w)  # fmt: skip
    result = {
        "date": datetime.date.today().isoformat(),
        "machine": machine,
        "torch": torch.__version__,
        "threads": args.threads,
        "size": [w, h],
        "reference": {"tiles": n_ref, "per_tile": ref_st, "tile_s": round(ref_tile, 1),
                      "total_s": round(ref_total, 1),
                      "peak_gib": max(v[1] for v in ref_st.values())},
        "default": {"vae_tiles": len(vae_tiles), "vae_tile_px": [8 * s for s in vae_shape],
                    "core_tiles": len(core_tiles), "core_tile_latent": list(core_shape),
                    **{k: v for k, v in modes.items()}},
        "ratios": {k: round(ref_total / v["total_s"], 2) for k, v in modes.items()},
    }  # fmt: skip
    print(
        f"reference:      {ref_tile:.1f} s per 512² tile × {n_ref} = {ref_total:.0f} s "
        f"(extrapolated), peak +{result['reference']['peak_gib']} GiB"
    )
    for name, m in modes.items():
        p = m["parts_s"]
        print(f"default {name}:  encode {p['encode']:.0f} s + core {p['core']:.0f} s + "
              f"decode {p['decode']:.0f} s = {m['total_s']:.0f} s (extrapolated; "
              f"{m['per_512_tile_equiv_s']:.1f} s per 512² of image), peak "
              f"+{m['peak_gib']} GiB; reference/default {result['ratios'][name]}×")  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

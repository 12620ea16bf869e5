#!/usr/bin/python3
"""Time GIMP's own ``gegl:lens-blur`` with a per-pixel radius map.

Runs INSIDE the Debian 13 host root (tests/hosts/hostroot.sh) with the system
``/usr/bin/python3`` and GEGL 0.4 through PyGObject; it needs only numpy besides.
The host-side entry point is ``benchmarks/gegl_reference.py``.

    python3 gegl_lens_blur.py --image in.npy --radius radius.npy [--out out.npy]
        [--threads N] [--repeat N] [--highlight-factor F] ...

Inputs: ``in.npy`` float32 H×W×3 linear RGB; ``radius.npy`` float32 H×W blur radius in px.
Prints one JSON line: {"op", "width", "height", "max_radius_px", "seconds", "threads", ...}.

How the op is driven (operations/common-cxx/lens-blur.cc in GEGL 0.4.62):
- ``radius`` is the maximum radius; the aux pad holds a mask in [0, 1] and each source
  pixel is spread over a disc of radius ``mask * radius`` (GEGL uses (r + 0.5)^2 discs);
  so aux = radius_px / max(radius_px) and radius = max(radius_px).
- ``linear-mask=True`` reads aux as "Y float" (our values as they are); the default False
  reads it as "Y' float", i.e. a gamma-encoded mask, which would distort the radii.
- ``highlight-factor`` (0..1, default 0 = off) boosts pixels whose luminance lies between
  ``highlight-threshold-low`` and ``-high``; ``clip`` keeps the output at the input extents.

Only the rendering of the graph (buffer-source -> lens-blur -> write-buffer) is timed;
building the GEGL buffers from numpy and reading the result back are not.
"""

import argparse
import json
import os
import sys
import time


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--image", required=True, help="float32 H×W×3 linear RGB .npy")
    ap.add_argument("--radius", required=True, help="float32 H×W radius (px) .npy")
    ap.add_argument("--out", help="write the result here (float32 H×W×3 .npy)")
    ap.add_argument(
        "--threads",
        type=int,
        default=0,
        help="GEGL worker threads (0 = GEGL's default: GEGL_THREADS or the core count)",
    )
    ap.add_argument("--repeat", type=int, default=1, help="render N times; 'seconds' is the best")
    ap.add_argument(
        "--tile-cache-mb",
        type=int,
        default=4096,
        help="GEGL tile cache; the default 512 MB is too small for 12 MP and swaps",
    )
    ap.add_argument("--highlight-factor", type=float, default=0.0)
    ap.add_argument("--highlight-threshold-low", type=float, default=0.0)
    ap.add_argument("--highlight-threshold-high", type=float, default=1.0)
    ap.add_argument("--no-clip", action="store_true", help="clip=False (output grows by radius)")
    return ap.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.threads > 0:  # must be set before Gegl.init
        os.environ["GEGL_THREADS"] = str(args.threads)

    import gi
    import numpy as np

    gi.require_version("Gegl", "0.4")
    from gi.repository import Gegl

    Gegl.init(None)
    config = Gegl.config()
    config.props.tile_cache_size = args.tile_cache_mb * 1024 * 1024

    image = np.load(args.image).astype(np.float32, copy=False)
    radius = np.load(args.radius).astype(np.float32, copy=False)
    if image.ndim != 3 or image.shape[2] != 3 or radius.shape != image.shape[:2]:
        sys.exit(f"bad shapes: image {image.shape}, radius {radius.shape}")
    h, w = radius.shape
    max_r = float(radius.max())

    # GEGL buffers: straight-alpha linear RGBA float input, linear Y float mask
    rgba = np.empty((h, w, 4), np.float32)
    rgba[..., :3] = image
    rgba[..., 3] = 1.0
    rect = Gegl.Rectangle.new(0, 0, w, h)
    in_buf = Gegl.Buffer.new("RGBA float", 0, 0, w, h)
    in_buf.set(rect, "RGBA float", rgba.tobytes())
    del rgba
    mask = radius / max_r if max_r > 0 else np.zeros_like(radius)
    aux_buf = Gegl.Buffer.new("Y float", 0, 0, w, h)
    aux_buf.set(rect, "Y float", np.ascontiguousarray(mask, np.float32).tobytes())
    del mask

    times = []
    out_buf = None
    for _ in range(max(1, args.repeat)):
        out_buf = Gegl.Buffer.new("RGBA float", 0, 0, w, h)
        graph = Gegl.Node()  # a fresh graph each time: no cached results
        src = graph.create_child("gegl:buffer-source")
        src.set_property("buffer", in_buf)
        aux = graph.create_child("gegl:buffer-source")
        aux.set_property("buffer", aux_buf)
        blur = graph.create_child("gegl:lens-blur")
        blur.set_property("radius", max_r)
        blur.set_property("linear-mask", True)
        blur.set_property("clip", not args.no_clip)
        blur.set_property("highlight-factor", args.highlight_factor)
        blur.set_property("highlight-threshold-low", args.highlight_threshold_low)
        blur.set_property("highlight-threshold-high", args.highlight_threshold_high)
        sink = graph.create_child("gegl:write-buffer")
        sink.set_property("buffer", out_buf)
        src.connect_to("output", blur, "input")
        aux.connect_to("output", blur, "aux")
        blur.connect_to("output", sink, "input")

        t0 = time.perf_counter()
        sink.process()
        times.append(time.perf_counter() - t0)
        del graph, src, aux, blur, sink

    if args.out:
        data = out_buf.get(rect, 1.0, "RGBA float", Gegl.AbyssPolicy.NONE)
        out = np.frombuffer(data, np.float32).reshape(h, w, 4)[..., :3]
        np.save(args.out, np.ascontiguousarray(out))

    print(
        json.dumps(
            {
                "op": "gegl:lens-blur",
                "width": w,
                "height": h,
                "max_radius_px": max_r,
                "seconds": min(times),
                "seconds_all": times,
                "threads": config.props.threads,
                "gegl_version": ".".join(str(v) for v in Gegl.get_version()),
                "tile_cache_mb": args.tile_cache_mb,
                "highlight_factor": args.highlight_factor,
                "clip": not args.no_clip,
                "linear_mask": True,
            }
        ),
        flush=True,
    )
    # GEGL can be slow to tear down a large tile cache; we are done
    os._exit(0)


if __name__ == "__main__":
    main()

"""A 24-megapixel photo renders within the memory the brief allows (≤ 4 GiB peak)."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
PEAK_LIMIT_GIB = 4.0


@pytest.mark.slow
def test_24_megapixel_render_stays_under_4_gib(tmp_path):
    w, h = 6000, 4000
    rng = np.random.default_rng(0)
    # Coarse colour blotches plus grain: real work for every stage, cheap to make.
    small = (rng.random((h // 50, w // 50, 3)) * 255).astype(np.uint8)
    photo = np.asarray(Image.fromarray(small).resize((w, h), Image.Resampling.BILINEAR))
    Image.fromarray(photo).save(tmp_path / "photo.jpg", quality=90)
    del photo
    ramp = np.linspace(0, 65535, h, dtype=np.float32)[:, None].repeat(w, 1)
    Image.fromarray(ramp.astype(np.uint16)).save(tmp_path / "depth.png")
    del ramp
    probe = (
        "import resource, sys; from bokehkit.commands import main; rc = main(sys.argv[1:]); "
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr); "
        "sys.exit(rc)"
    )
    args = [
        "render",
        str(tmp_path / "photo.jpg"),
        "--depth",
        str(tmp_path / "depth.png"),
        "--focus-disparity",
        "0.8",
        "--aperture",
        "1.4",
        "-o",
        str(tmp_path / "out.jpg"),
        "-q",
    ]
    done = subprocess.run(
        [sys.executable, "-c", probe, *args],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "core")},
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    peak_gib = int(done.stderr.strip().splitlines()[-1]) / 2**20
    print(f"peak RSS at 24 MP: {peak_gib:.2f} GiB")
    assert peak_gib <= PEAK_LIMIT_GIB
    with Image.open(tmp_path / "out.jpg") as out:
        assert out.size == (w, h)

"""`bokehkit batch` (issue 13): folders, sidecars, one bad photo, resuming, and Ray."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from bokehkit import commands as cli

REPO = Path(__file__).resolve().parents[2]
FAST = ["--depth-model", "none", "--no-auto-subject", "-f", "1.4"]


def _photos(folder: Path, n: int = 3, w: int = 48, h: int = 32) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    paths = []
    for i in range(n):
        path = folder / ("sub" if i == 2 else "") / f"p{i}.jpg"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path, quality=90)
        paths.append(path)
    depth = np.tile(np.linspace(255, 0, w, dtype=np.uint8), (h, 1))
    Image.fromarray(depth).save(folder / "p0.depth.png")  # a sidecar, not a photo
    return paths


def _summary(out: Path) -> dict:
    data = json.loads((out / "summary.json").read_text())
    return {Path(p["output"]).as_posix(): p for p in data["photos"]}


def test_a_folder_with_a_bad_photo_renders_the_others_and_exits_1(tmp_path, capsys):
    photos = _photos(tmp_path / "in")
    (tmp_path / "in" / "broken.png").write_bytes(b"\x89PNG not really")
    out = tmp_path / "out"
    assert cli.main(["batch", str(tmp_path / "in"), "-o", str(out), "--jobs", "1", *FAST]) == 1
    summary = _summary(out)
    assert set(summary) == {"p0.jpg", "p1.jpg", "sub/p2.jpg", "broken.png"}  # no sidecar
    assert summary["broken.png"]["status"] == "failed" and summary["broken.png"]["error"]
    assert all(summary[k]["status"] == "rendered" for k in ("p0.jpg", "p1.jpg", "sub/p2.jpg"))
    assert "ETA" in capsys.readouterr().err
    # The sidecar was used: the same file as a single render given it as --depth.
    single = tmp_path / "single.jpg"
    depth = str(tmp_path / "in" / "p0.depth.png")
    assert (
        cli.main(["render", str(photos[0]), "-o", str(single), "-q", "--depth", depth, *FAST]) == 0
    )
    assert (out / "p0.jpg").read_bytes() == single.read_bytes()
    assert not list(out.rglob("*.tmp"))


def test_a_resumed_batch_skips_done_photos_and_redoes_a_damaged_one(tmp_path):
    _photos(tmp_path / "in")
    out = tmp_path / "out"
    args = ["batch", str(tmp_path / "in"), "-o", str(out), "--jobs", "2", *FAST]
    assert cli.main(args) == 0
    good = (out / "p1.jpg").read_bytes()
    (out / "p1.jpg").write_bytes(good[: len(good) // 2])  # a damaged output
    assert cli.main(args) == 0
    summary = _summary(out)
    assert summary["p1.jpg"]["status"] == "rendered"
    assert summary["p0.jpg"]["status"] == summary["sub/p2.jpg"]["status"] == "skipped"
    assert (out / "p1.jpg").read_bytes() == good
    # Other settings are other outputs: nothing is skipped.
    assert cli.main([*args[:-1], "2.8"]) == 0
    assert {p["status"] for p in _summary(out).values()} == {"rendered"}


def test_usage_errors_exit_2(tmp_path, capsys):
    assert cli.main(["batch", str(tmp_path / "nothing"), "-o", str(tmp_path / "o")]) == 2
    _photos(tmp_path / "in", 1)
    args = ["batch", str(tmp_path / "in"), "-o", str(tmp_path / "o"), "--depth", "x.png"]
    assert cli.main(args) == 2
    assert "NAME.depth" in capsys.readouterr().err


@pytest.mark.skipif(
    subprocess.run([sys.executable, "-c", "import ray"], capture_output=True).returncode != 0,
    reason="Ray is not installed (requirements/ray.txt)",
)
def test_a_ray_batch_on_a_local_two_worker_cluster_equals_the_local_batch(tmp_path):
    _photos(tmp_path / "in")
    local = tmp_path / "local"
    assert cli.main(["batch", str(tmp_path / "in"), "-o", str(local), "--jobs", "1", *FAST]) == 0
    env = {**os.environ, "PYTHONPATH": str(REPO / "core"), "RAY_ADDRESS": ""}
    # Its sockets and logs in a short folder of our own (AF_UNIX paths are short), its
    # cluster token in a home of our own.
    env["RAY_TMPDIR"] = tempfile.mkdtemp(prefix="bkray", dir="/tmp")
    env["HOME"] = str(tmp_path / "home")
    on_ray = tmp_path / "ray-out"
    result = subprocess.run(
        [sys.executable, "-m", "bokehkit", "batch", str(tmp_path / "in"), "-o", str(on_ray),
         "--ray", "auto", "--jobs", "2", *FAST],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    shutil.rmtree(env["RAY_TMPDIR"], ignore_errors=True)
    assert result.returncode == 0, result.stderr[-2000:]
    for name in ("p0.jpg", "p1.jpg", "sub/p2.jpg"):
        assert (on_ray / name).read_bytes() == (local / name).read_bytes(), name
    assert {p["status"] for p in _summary(on_ray).values()} == {"rendered"}


def test_the_light_engine_and_the_plugins_never_import_ray():
    code = (
        "import sys, bokehkit.commands, bokehkit.serve.server, bokehkit.commands.batch, "
        "bokehkit.serve.tcp;"
        "import bokehkit_plugin.client, bokehkit_plugin.remote;"
        "assert 'ray' not in sys.modules, 'ray imported'"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO / "core")}
    subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, check=True)

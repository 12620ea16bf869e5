"""The plug-ins for real against a remote engine (issue 13): Krita 6.0 and GIMP 3.2 in
their Debian roots, with no engine inside the root at all (no venv mounted, no
BOKEHKIT_ENGINE) and a config written as `install-plugins --remote` writes it, render
through a TLS engine that runs on the host with its own temp folder: nothing is shared but
the loopback connection. The result layer must equal `bokehkit render` on the host."""

from __future__ import annotations

import json
import os
import subprocess
import time

import hostkit
import pytest
from test_hosts_krita import KRITARUNNER, PARAMS, RESULT, install, make_mask

HOST = hostkit.KRITAS[-1]  # Krita 6.0 (PyQt6)


@pytest.fixture(scope="module")
def remote_engine(tmp_path_factory):
    root = tmp_path_factory.mktemp("remote-engine")
    (root / "tmp").mkdir()
    (root / "token").write_text("krita-remote-token\n")
    env = {**os.environ, "PYTHONPATH": str(hostkit.REPO / "core"), "TMPDIR": str(root / "tmp")}
    env.update(BOKEHKIT_TLS_DIR=str(root / "tls"), BOKEHKIT_MODELS=str(root / "models"))
    proc = subprocess.Popen(
        [str(hostkit.VENV / "bin" / "python"), "-m", "bokehkit", "serve", "--tcp",
         "127.0.0.1:0", "--tls", "--token-file", str(root / "token")],
        env=env, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    lines = [proc.stderr.readline() for _ in range(3)]
    assert "listening on" in lines[2], lines
    yield {
        "address": "127.0.0.1:" + lines[2].rsplit(":", 1)[1].strip(),
        "fingerprint": lines[0].split()[-1],
        "token": root / "token",
        "tmp": root / "tmp",
    }
    proc.kill()
    proc.wait()


def test_krita_renders_on_a_remote_engine_over_tls(remote_engine, tmp_path):
    hostkit.require_hostroot(HOST)
    job = hostkit.make_job(tmp_path / "job")
    install(job / "home")
    make_mask(job / "mask.raw", job / "mask.png")
    (job / "token").write_bytes(remote_engine["token"].read_bytes())
    config = job / "home" / ".config" / "bokehkit"
    config.mkdir(parents=True, exist_ok=True)
    remote = {k: remote_engine[k] for k in ("address", "fingerprint")}
    remote["token_file"] = "/job/token"  # as install-plugins --remote writes it
    (config / "engine.json").write_text(json.dumps({"remote": remote}))
    t0 = time.monotonic()
    p = hostkit.run_in_root(
        f"HOME=/job/home BK_CASES=selection BK_PARAMS='{json.dumps(PARAMS)}' {KRITARUNNER}",
        job,
        timeout=420,
        engine=False,  # no engine in the root: only the remote one can render
        host=HOST,
    )
    log = p.stdout + p.stderr
    hostkit.log(f"{HOST.id} on a remote engine: {time.monotonic() - t0:.1f} s, exit {p.returncode}")
    assert p.returncode == 0, log[-4000:]
    result = json.loads((job / "selection" / "report.json").read_text())
    assert result["status"] == "success", result
    assert RESULT in result["layers"]
    hostkit.cli_render(job / "in.png", job / "cli.png", PARAMS, job / "mask.png")
    diff = hostkit.max_diff(job / "selection" / "result.png", job / "cli.png")
    assert diff <= 1, f"Krita on the remote engine differs from the CLI by {diff}/255"
    assert not list(remote_engine["tmp"].glob("bokehkit-job-*")), "job folders left behind"


def test_gimp_renders_on_a_remote_engine_over_tls(remote_engine, tmp_path):
    """GIMP 3.2, non-interactive (the batch script's `layermask` case), no engine in the
    root: the render goes through the TLS engine on the host."""
    from test_hosts_gimp import ARGS, GIMP
    from test_hosts_gimp import PARAMS as GIMP_PARAMS
    from test_hosts_gimp import install as install_gimp

    host = hostkit.GIMPS[-1]
    hostkit.require_hostroot(host)
    job = hostkit.make_job(tmp_path / "job")
    install_gimp(job / "home", host)
    (job / "token").write_bytes(remote_engine["token"].read_bytes())
    config = job / "home" / ".config" / "bokehkit"
    config.mkdir(parents=True, exist_ok=True)
    remote = {k: remote_engine[k] for k in ("address", "fingerprint")}
    remote["token_file"] = "/job/token"
    (config / "engine.json").write_text(json.dumps({"remote": remote}))
    p = hostkit.run_in_root(
        f"HOME=/job/home BK_JOB=/job BK_CASES=layermask BK_ARGS='{json.dumps(ARGS)}' {GIMP}",
        job,
        timeout=420,
        engine=False,
        host=host,
    )
    assert p.returncode == 0, (p.stdout + p.stderr)[-4000:]
    result = json.loads((job / "layermask" / "report.json").read_text())
    assert result["status"] == "success", result
    d = job / "layermask"
    hostkit.raw_mask_to_png(d / "mask.raw", (960, 640), d / "mask.png")
    hostkit.cli_render(job / "in.png", d / "cli.png", GIMP_PARAMS, d / "mask.png")
    diff = hostkit.max_diff(d / "result.png", d / "cli.png")
    assert diff <= 1, f"GIMP on the remote engine differs from the CLI by {diff}/255"

"""Release archives (installer/build_release.py) unpacked into profile folders the way users
do it, and the engine set-up script's plans (installer/setup_engine.py)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

import build_release
import pytest
import setup_engine

from bokehkit_plugin import install as ip

REPO = Path(__file__).resolve().parents[2]

# Krita's own "Import Python Plugin from File" code, where the Debian 13 root has it
KRITA_IMPORTER = Path(
    os.environ.get("HOSTROOT", "/var/cache/bokehkit-hostroot/root"),
    "usr/share/krita/pykrita/plugin_importer/plugin_importer.py",
)


@pytest.fixture(scope="module")
def release(tmp_path_factory) -> dict[str, Path]:
    return build_release.build(tmp_path_factory.mktemp("dist"))


def tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def installed_tree(tmp: Path, kind: str) -> dict[str, bytes]:
    """What `install-plugins` puts into a profile, for comparison."""
    home = tmp / f"ref-{kind}"
    prof = home / (".config/GIMP/3.0" if kind == "gimp" else ".local/share/krita")
    prof.mkdir(parents=True)
    host = ip.Host("linux", {"HOME": str(home)})
    opts = ip.Options(kinds=(kind,), host=host, engine=["x"], source=str(REPO), quiet=True)
    assert ip.Installer(opts).install() == 0
    return tree(prof / ("plug-ins" if kind == "gimp" else "pykrita"))


def test_krita_zip_imports_with_kritas_own_importer(release, tmp_path):
    if not KRITA_IMPORTER.exists():
        pytest.skip(f"Krita's plugin_importer.py not found ({KRITA_IMPORTER}; hostroot.sh setup)")
    spec = importlib.util.spec_from_file_location("krita_plugin_importer", KRITA_IMPORTER)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    resources = tmp_path / "krita"
    resources.mkdir()
    importer = mod.PluginImporter(str(release["krita"]), str(resources), lambda plugin: True)
    imported = importer.import_all()
    assert [p["name"] for p in imported] == ["bokehkit_krita"], imported
    assert tree(resources / "pykrita") == installed_tree(tmp_path, "krita")
    # importing again (an update) replaces it whole
    (resources / "pykrita/bokehkit_krita/stale.py").write_text("x = 1\n")
    assert mod.PluginImporter(str(release["krita"]), str(resources), lambda p: True).import_all()
    assert not (resources / "pykrita/bokehkit_krita/stale.py").exists()


def test_krita_zip_layout(release):
    import zipfile

    names = zipfile.ZipFile(release["krita"]).namelist()
    assert "bokehkit_krita.desktop" in names  # at the root
    assert "bokehkit_krita/" in names and "bokehkit_krita/__init__.py" in names
    assert "bokehkit_krita/bokehkit_plugin/client.py" in names
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


@pytest.mark.parametrize("fmt", ["gimp-tar", "gimp-zip"])
def test_gimp_archive_unpacks_into_plugins(release, tmp_path, fmt):
    plugins = tmp_path / "GIMP/3.0/plug-ins"
    plugins.mkdir(parents=True)
    if fmt == "gimp-tar":
        with tarfile.open(release[fmt]) as t:
            t.extractall(plugins, filter="data")
    else:
        if not shutil.which("unzip"):
            pytest.skip("no unzip here")
        subprocess.run(["unzip", "-q", str(release[fmt]), "-d", str(plugins)], check=True)
    assert tree(plugins) == installed_tree(tmp_path, "gimp")
    script = plugins / "bokehkit-gimp/bokehkit-gimp.py"
    assert script.stat().st_mode & stat.S_IXUSR, oct(script.stat().st_mode)
    assert not (plugins / "bokehkit-gimp/bokehkit_plugin/client.py").stat().st_mode & 0o111


def test_release_is_reproducible(release, tmp_path):
    again = build_release.build(tmp_path / "again")
    for key, path in release.items():
        assert again[key].read_bytes() == path.read_bytes(), key


# ------------------------------------------------------------------ engine set-ups


def pins(path: Path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if not line or line.startswith("-"):
            continue
        m = re.match(r"([A-Za-z0-9_.-]+)==([^;\s]+)", line)
        assert m, f"{path.name}: not pinned: {line!r}"
        out[m.group(1).lower()] = m.group(2)
    return out


def test_requirement_files_are_pinned_per_backend():
    cuda, mps, cpu = (pins(REPO / "requirements" / f) for f in ("cuda.txt", "mps.txt",
                                                                "torch-cpu.txt"))  # fmt: skip
    assert cuda["torch"].startswith(setup_engine.TORCH + "+cu"), cuda["torch"]
    assert mps["torch"] == setup_engine.TORCH == cpu["torch"]
    assert "download.pytorch.org/whl/cu" in (REPO / "requirements/cuda.txt").read_text()


def test_setup_engine_cpu_never_names_cuda(tmp_path):
    cmds = setup_engine.plan("cpu", tmp_path / "v", sys.executable, "cu128", False)
    text = " ".join(" ".join(c) for c in cmds)
    assert "cuda.txt" not in text and "cu128" not in text and "+cu" not in text
    if sys.platform != "darwin":
        assert f"torch=={setup_engine.TORCH}+cpu" in text and setup_engine.CPU_INDEX in text
    assert "torch.version.cuda is None" in cmds[-1][-1]  # checked after installing
    assert "torch" not in " ".join(
        " ".join(c) for c in setup_engine.plan("light", tmp_path, "py", "", False)[:-1]
    )


def test_setup_engine_cuda_variant_and_platform_guards(tmp_path):
    cmds = setup_engine.plan("cuda", tmp_path / "v", sys.executable, "cu126", False)
    req = Path(cmds[1][-1])
    text = req.read_text()
    assert "whl/cu126" in text and "+cu126" in text and "cu128" not in text.split("\n", 9)[-1]
    if sys.platform != "darwin":
        with pytest.raises(SystemExit, match="macOS"):
            setup_engine.plan("mps", tmp_path, "py", "", False)
    p = subprocess.run([sys.executable, str(REPO / "installer/setup_engine.py"), "--dry-run",
                        "--venv", str(tmp_path / "v")], capture_output=True, text=True)  # fmt: skip
    assert p.returncode == 0 and "install-plugins" in p.stdout
    assert not (tmp_path / "v").exists()

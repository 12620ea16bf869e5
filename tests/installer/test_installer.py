"""`bokehkit install-plugins` / `uninstall-plugins` (plugin/bokehkit_plugin/install.py) into
temporary home folders laid out like Linux, Windows and macOS profiles: every file and bit,
idempotence, exact uninstall, dry-run, and repair of a killed install."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from bokehkit_plugin import install as ip

REPO = Path(__file__).resolve().parents[2]
ENGINE = ["/opt/bokehkit/python", "-m", "bokehkit"]
USER_KRITARC = "[General]\r\nfoo=bar\r\n\r\n[python]\r\nenable_other=true\r\n"


# ------------------------------------------------------------------ fake homes


def linux_home(tmp: Path):
    """GIMP 3.0 native + 3.2 Flatpak, Krita native (kritarc with the user's settings) and
    Flatpak; another user plug-in in GIMP."""
    home = tmp / "home"
    (home / ".config/GIMP/3.0/plug-ins/other-plugin").mkdir(parents=True)
    (home / ".config/GIMP/3.0/plug-ins/other-plugin/other-plugin.py").write_text("# user's\n")
    (home / ".config/GIMP/3.0/gimprc").write_text('(theme "Dark")\n')
    (home / ".var/app/org.gimp.GIMP/config/GIMP/3.2").mkdir(parents=True)
    (home / ".local/share/krita").mkdir(parents=True)
    (home / ".config/kritarc").write_bytes(USER_KRITARC.encode())
    (home / ".var/app/org.kde.krita/data/krita/pykrita").mkdir(parents=True)
    env = {"HOME": str(home), "XDG_CONFIG_HOME": "", "XDG_DATA_HOME": ""}
    expected = {
        "gimp": [home / ".config/GIMP/3.0", home / ".var/app/org.gimp.GIMP/config/GIMP/3.2"],
        "krita": [
            (home / ".local/share/krita", home / ".config/kritarc"),
            (
                home / ".var/app/org.kde.krita/data/krita",
                home / ".var/app/org.kde.krita/config/kritarc",
            ),
        ],  # fmt: skip
    }
    return ip.Host("linux", env), home, expected


def windows_home(tmp: Path):
    home = tmp / "Users" / "ana"
    roaming, local = home / "AppData" / "Roaming", home / "AppData" / "Local"
    for v in ("3.0", "3.2"):
        (roaming / "GIMP" / v / "plug-ins").mkdir(parents=True)
    (roaming / "krita").mkdir(parents=True)
    local.mkdir(parents=True)
    env = {"USERPROFILE": str(home), "APPDATA": str(roaming), "LOCALAPPDATA": str(local)}
    expected = {
        "gimp": [roaming / "GIMP/3.0", roaming / "GIMP/3.2"],
        "krita": [(roaming / "krita", local / "kritarc")],
    }
    return ip.Host("win32", env), home, expected


def mac_home(tmp: Path):
    home = tmp / "Users" / "ana"
    support = home / "Library" / "Application Support"
    (support / "GIMP/3.2/plug-ins").mkdir(parents=True)
    (support / "krita").mkdir(parents=True)
    (home / "Library/Preferences").mkdir(parents=True)
    expected = {
        "gimp": [support / "GIMP/3.2"],
        "krita": [(support / "krita", home / "Library/Preferences/kritarc")],
    }
    return ip.Host("darwin", {"HOME": str(home)}), home, expected


LAYOUTS = {"linux": linux_home, "windows": windows_home, "macos": mac_home}


def snapshot(root: Path) -> dict[str, tuple]:
    """Every file and folder under root: content hash, mode and mtime."""
    out = {}
    for p in sorted(root.rglob("*")):
        st = p.lstat()
        data = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        out[str(p.relative_to(root))] = (data, stat.S_IMODE(st.st_mode), st.st_mtime_ns)
    return out


def installer(host, **kw) -> ip.Installer:
    out = io.StringIO()
    opts = ip.Options(host=host, engine=kw.pop("engine", ENGINE), source=str(REPO), **kw)
    inst = ip.Installer(opts, out=out)
    inst.output = out
    return inst


def expected_files(kind: str, profile: Path) -> dict[Path, Path]:
    """installed path -> source file, as the plug-in must be laid out."""
    out = {}
    if kind == "gimp":
        base = profile / "plug-ins" / "bokehkit-gimp"
        out[base / "bokehkit-gimp.py"] = REPO / "gimp/bokehkit-gimp/bokehkit-gimp.py"
    else:
        base = profile / "pykrita" / "bokehkit_krita"
        out[profile / "pykrita/bokehkit_krita.desktop"] = REPO / "krita/bokehkit_krita.desktop"
        for f in (REPO / "krita/bokehkit_krita").glob("*.py"):
            out[base / f.name] = f
    for f in (REPO / "plugin/bokehkit_plugin").rglob("*.py"):
        if f.name == "install.py" and f.parent.name == "bokehkit_plugin":
            continue  # the installer itself is not vendored into the plug-ins
        out[base / "bokehkit_plugin" / f.relative_to(REPO / "plugin/bokehkit_plugin")] = f
    return out


def load_vendored_config(plugin_dir: Path):
    path = plugin_dir / "bokehkit_plugin" / "config.py"
    spec = importlib.util.spec_from_file_location(f"vendored_config_{abs(hash(path))}", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# ------------------------------------------------------------------ tests


@pytest.mark.parametrize("layout", LAYOUTS)
def test_install_idempotent_uninstall(tmp_path, layout):
    host, home, expected = LAYOUTS[layout](tmp_path)
    found = ip.find_profiles(host)
    assert [p.path for p in found if p.kind == "gimp"] == expected["gimp"]
    assert [(p.path, p.kritarc) for p in found if p.kind == "krita"] == expected["krita"]
    before = snapshot(home)

    inst = installer(host)
    assert inst.install() == 0, inst.output.getvalue()
    # every file, byte for byte; the GIMP entry point executable; nothing else in our folders
    for kind, profiles in expected.items():
        for prof in profiles:
            prof = prof if kind == "gimp" else prof[0]
            want = expected_files(kind, prof)
            for dest, src in want.items():
                assert dest.read_bytes() == src.read_bytes(), dest
                mode = dest.stat().st_mode
                if dest.name == "bokehkit-gimp.py":
                    assert mode & stat.S_IXUSR and mode & stat.S_IXOTH, oct(mode)
                else:
                    assert not mode & stat.S_IXUSR, dest
            top = prof / ("plug-ins/bokehkit-gimp" if kind == "gimp" else "pykrita/bokehkit_krita")
            have = {p for p in top.rglob("*") if p.is_file()}
            assert have == {p for p in want if top in p.parents}
            assert not list(top.parent.glob(".bokehkit*")), "staging leftovers"
    for _, kritarc in expected["krita"]:
        text = kritarc.read_text()
        assert "[python]" in text and "enable_bokehkit_krita=true" in text
    if layout == "linux":  # the user's settings are kept, in their own line endings
        text = (home / ".config/kritarc").read_bytes().decode()
        assert text.startswith("[General]\r\nfoo=bar\r\n") and "enable_other=true" in text
        assert "enable_bokehkit_krita=true\r\n" in text
    # the engine config, where the vendored plug-in code looks for it
    gimp_dir = expected["gimp"][0] / "plug-ins" / "bokehkit-gimp"
    cfg = load_vendored_config(gimp_dir)
    env = dict(host.env)
    plat = host.platform
    assert Path(cfg.config_path(plat, env)) == host.config_dir() / "engine.json"
    assert cfg.engine_command(env=env, platform=plat) == ENGINE
    manifest = json.loads((host.config_dir() / "installed.json").read_text())
    assert len(manifest["targets"]) == len(expected["gimp"]) + len(expected["krita"])
    assert not (host.config_dir() / ip.MARKER).exists()

    # idempotent: nothing changes, not even a time stamp
    installed = snapshot(home)
    again = installer(host)
    assert again.install() == 0 and again.changed == 0, again.output.getvalue()
    assert snapshot(home) == installed
    assert "nothing changed" in again.output.getvalue()

    # uninstall: exactly the state before, the user's plug-in and settings untouched
    un = installer(host)
    assert un.uninstall() == 0, un.output.getvalue()
    after = snapshot(home)
    assert {k: v[:2] for k, v in after.items()} == {k: v[:2] for k, v in before.items()}
    assert installer(host).uninstall() == 0  # again: nothing to do


def test_dry_run_writes_nothing(tmp_path):
    host, home, _ = linux_home(tmp_path)
    before = snapshot(home)
    inst = installer(host, dry_run=True)
    assert inst.install() == 0
    assert snapshot(home) == before
    out = inst.output.getvalue()
    assert "would install" in out and "would write" in out and "would enable" in out
    assert "bokehkit-gimp" in out and "engine.json" in out
    # it did nothing, and says so: no "Done", no "Restart GIMP"
    assert "Done" not in out and "Restart" not in out, out
    assert out.strip().splitlines()[-1].startswith("Dry run: nothing was changed"), out
    # and for uninstall
    installer(host).install()
    installed = snapshot(home)
    un = installer(host, dry_run=True)
    un.uninstall()
    assert snapshot(home) == installed
    assert "would remove" in un.output.getvalue()


def test_upgrade_replaces_our_files_keeps_users(tmp_path):
    host, home, _ = linux_home(tmp_path)
    src = tmp_path / "src"
    for d in ("gimp", "krita", "plugin"):
        _copytree(REPO / d, src / d)
    (src / "plugin/bokehkit_plugin/old_module.py").write_text("x = 1\n")
    inst = ip.Installer(ip.Options(host=host, engine=ENGINE, source=str(src), quiet=True))
    inst.install()
    gimp = home / ".config/GIMP/3.0/plug-ins/bokehkit-gimp"
    assert (gimp / "bokehkit_plugin/old_module.py").exists()
    (gimp / "notes.txt").write_text("the user's notes\n")
    (src / "plugin/bokehkit_plugin/old_module.py").unlink()
    (src / "plugin/bokehkit_plugin/schema.py").write_text("# new version\n")
    inst = ip.Installer(ip.Options(host=host, engine=ENGINE, source=str(src), quiet=True))
    inst.install()
    assert not (gimp / "bokehkit_plugin/old_module.py").exists()
    assert (gimp / "bokehkit_plugin/schema.py").read_text() == "# new version\n"
    assert (gimp / "notes.txt").read_text() == "the user's notes\n"
    # a file the user changed is kept by uninstall (and said so); theirs stays too
    (gimp / "bokehkit_plugin/jobs.py").write_text("# edited by the user\n")
    (gimp / "__pycache__").mkdir()
    (gimp / "__pycache__/bokehkit-gimp.cpython-313.pyc").write_bytes(b"pyc")
    un = installer(host)
    un.uninstall()
    assert "kept" in un.output.getvalue() and "jobs.py" in un.output.getvalue()
    left = sorted(str(p.relative_to(gimp)) for p in gimp.rglob("*") if p.is_file())
    assert left == ["bokehkit_plugin/jobs.py", "notes.txt"]


def _copytree(a: Path, b: Path) -> None:
    import shutil

    shutil.copytree(a, b, ignore=shutil.ignore_patterns("__pycache__"))


KILLER = textwrap.dedent(
    """
    import json, os, shutil, sys
    from bokehkit_plugin import install as ip
    n = [0]
    real = shutil.copyfile
    def copyfile(a, b, **kw):
        n[0] += 1
        if n[0] > {after}:
            os._exit(9)          # as a kill -9: no cleanup, no finally
        return real(a, b, **kw)
    shutil.copyfile = copyfile
    host = ip.Host("linux", json.loads({env!r}))
    ip.Installer(ip.Options(host=host, engine={engine!r}, source={src!r}, quiet=True)).install()
    """
)


def _killed_install(host, after: int) -> None:
    code = KILLER.format(
        after=after, env=json.dumps(dict(host.env)),
        engine=ENGINE, src=str(REPO),
    )  # fmt: skip
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 9, p.stderr


@pytest.mark.parametrize("after", [3, 13 + 5])  # in GIMP's copy; in Krita's (after GIMP's)
@pytest.mark.parametrize("upgrade", [False, True])
def test_killed_install_is_repaired(tmp_path, after, upgrade):
    host, home, expected = linux_home(tmp_path)
    gimp = expected["gimp"][0] / "plug-ins" / "bokehkit-gimp"
    desktop = home / ".local/share/krita/pykrita/bokehkit_krita.desktop"
    if upgrade:  # an older version is installed: it must stay whole, or be replaced whole
        installer(host).install()
        (gimp / "bokehkit-gimp.py").write_text("# old version\n")
        (home / ".local/share/krita/pykrita/bokehkit_krita/core.py").write_text("# old\n")
    _killed_install(host, after)
    marker = host.config_dir() / ip.MARKER
    assert marker.exists(), "a killed install must leave its marker"
    # never looks installed half-way: the plug-in folder is absent or complete
    if gimp.exists():
        names = {p.name for p in gimp.rglob("*")}
        assert "bokehkit-gimp.py" in names and "rawbuffer.py" in names and "qt.py" in names
    if not upgrade:
        assert not desktop.exists(), "Krita must not see a half-installed plug-in"
    # the next run says so and repairs it
    inst = installer(host)
    assert inst.install() == 0
    assert "interrupted" in inst.output.getvalue()
    assert not marker.exists()
    for prof in expected["gimp"]:
        for dest, src in expected_files("gimp", prof).items():
            assert dest.read_bytes() == src.read_bytes()
        assert not list((prof / "plug-ins").glob(".bokehkit*"))
    assert desktop.exists()
    assert not list(desktop.parent.glob(".bokehkit*"))


def test_killed_install_then_uninstall_leaves_nothing(tmp_path):
    host, home, _ = linux_home(tmp_path)
    before = snapshot(home)
    _killed_install(host, 13 + 5)  # GIMP 3.0 done, killed in the Flatpak one
    un = installer(host)
    assert un.uninstall() == 0, un.output.getvalue()
    after = snapshot(home)
    assert {k: v[:2] for k, v in after.items()} == {k: v[:2] for k, v in before.items()}


def test_only_one_host_and_explicit_profile(tmp_path):
    host, home, expected = linux_home(tmp_path)
    assert installer(host, kinds=("krita",)).install() == 0
    assert not (expected["gimp"][0] / "plug-ins/bokehkit-gimp").exists()
    assert (home / ".local/share/krita/pykrita/bokehkit_krita.desktop").exists()
    custom = tmp_path / "portable-gimp" / "GIMP" / "3.0" / "plug-ins"
    custom.mkdir(parents=True)
    assert installer(host, profiles=(str(custom),)).install() == 0
    assert os.access(custom / "bokehkit-gimp/bokehkit-gimp.py", os.X_OK)
    assert not (expected["gimp"][0] / "plug-ins/bokehkit-gimp").exists()
    # uninstall only that profile: Krita stays
    assert installer(host, profiles=(str(custom),)).uninstall() == 0
    assert not (custom / "bokehkit-gimp").exists()
    assert (home / ".local/share/krita/pykrita/bokehkit_krita.desktop").exists()
    assert (host.config_dir() / "engine.json").exists()


def test_no_profile_found_says_where_it_looked(tmp_path):
    host = ip.Host("linux", {"HOME": str(tmp_path)})
    inst = installer(host)
    assert inst.install() == 1
    assert ".config/GIMP/3.0" in inst.output.getvalue()
    assert not (tmp_path / ".config").exists()


def test_kritarc_editing():
    assert ip._ini_set("", "python", "k", "true") == "[python]\nk=true\n"
    text = "[General]\nfoo=1\n\n[python]\nother=true\n\n[Zed]\nz=2\n"
    new = ip._ini_set(text, "python", "k", "true")
    assert new == "[General]\nfoo=1\n\n[python]\nother=true\nk=true\n\n[Zed]\nz=2\n"
    assert ip._ini_set(new, "python", "k", None) == text
    assert ip._ini_set("[python]\nk=false\n", "python", "k", "true") == "[python]\nk=true\n"
    assert ip._ini_get("[a]\nk=1\n[python]\nk=true\n", "python", "k") == "true"


def test_cli_and_standalone_installer(tmp_path):
    """`bokehkit install-plugins` and `installer/install.py` (standard library only: run by
    an isolated interpreter that cannot import the engine) share the code."""
    host, home, _ = linux_home(tmp_path)
    env = {**os.environ, "HOME": str(home), "XDG_CONFIG_HOME": "", "XDG_DATA_HOME": ""}
    env.pop("GIMP3_DIRECTORY", None)
    p = subprocess.run(
        [sys.executable, "-m", "bokehkit", "install-plugins", "--dry-run", "--gimp"],
        env={**env, "PYTHONPATH": str(REPO / "core")}, capture_output=True, text=True,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert "would install" in p.stdout and "bokehkit_krita" not in p.stdout
    assert not (home / ".config/GIMP/3.0/plug-ins/bokehkit-gimp").exists()
    script = REPO / "installer" / "install.py"
    cmd = [sys.executable, "-I", "-S", str(script)]  # no site-packages: stdlib only
    p = subprocess.run(
        [*cmd, "--engine", "/opt/engine/bokehkit-engine"], env=env, capture_output=True,
        text=True,
    )  # fmt: skip
    assert p.returncode == 0, p.stderr
    assert (home / ".config/GIMP/3.0/plug-ins/bokehkit-gimp/bokehkit-gimp.py").exists()
    cfg = json.loads((home / ".config/bokehkit/engine.json").read_text())
    assert cfg == {"command": ["/opt/engine/bokehkit-engine"]}
    p = subprocess.run([*cmd, "uninstall"], env=env, capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert not (home / ".config/GIMP/3.0/plug-ins/bokehkit-gimp").exists()
    assert not (home / ".config/bokehkit").exists()


def test_default_engine_command_is_this_engine():
    cmd = ip.default_engine_command()
    assert cmd is not None and cmd[1:] == ["-m", "bokehkit"]
    p = subprocess.run([*cmd, "--version"], capture_output=True, text=True, cwd="/")
    assert p.returncode == 0 and "bokehkit" in p.stdout

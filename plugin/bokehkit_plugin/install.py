"""`bokehkit install-plugins` / `uninstall-plugins`: the GIMP 3 and Krita plug-ins into every
profile found, the engine command into the plug-ins' config file, and a manifest of exactly
what was installed. Standard library only: `installer/install.py` runs it from a checkout
where the engine's packages are not installed.

What goes where (docs/install.md):

- GIMP 3.0 / 3.2 (native, Flatpak, Snap): ``<profile>/plug-ins/bokehkit-gimp/`` with
  ``bokehkit-gimp.py`` (executable) and the vendored ``bokehkit_plugin/``.
- Krita: ``<resources>/pykrita/bokehkit_krita.desktop`` and ``bokehkit_krita/`` (with the
  vendored ``bokehkit_plugin/``), enabled in ``kritarc`` (``[python]
  enable_bokehkit_krita=true``).
- ``<user config dir>/engine.json``: ``{"command": [...]}``, how the plug-ins start the
  engine (plugin/bokehkit_plugin/config.py reads it).
- ``<user config dir>/installed.json``: the manifest (every file with its sha256, the
  kritarc value found before), which `uninstall-plugins` undoes exactly.

Safety: a marker (``install-incomplete.json``) is written before anything is touched and
removed last; each plug-in folder is copied to a hidden staging name and renamed into place
(the old one moved aside first), and Krita's ``.desktop`` (what makes Krita see a plug-in)
is written last. A killed install therefore leaves either the old plug-in or none, never a
half-copied one that a host would load, and the next run (install or uninstall) sees the
marker and the leftovers and repairs them.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shlex
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from . import config

APP = "bokehkit"
GIMP_VERSIONS = ("3.0", "3.2")
GIMP_PLUGIN = "bokehkit-gimp"
KRITA_PLUGIN = "bokehkit_krita"
VENDORED = "bokehkit_plugin"
MANIFEST = "installed.json"
MARKER = "install-incomplete.json"
ENGINE_CONFIG = "engine.json"
STAGING = ".bokehkit-new"  # suffixes of the hidden names used while swapping a folder
BACKUP = ".bokehkit-old"
SKIP_NAMES = ("__pycache__", ".DS_Store")
SKIP_SUFFIXES = (".pyc", ".pyo")
KRITA_FLATPAK = "org.kde.krita"
GIMP_FLATPAK = "org.gimp.GIMP"


class InstallError(RuntimeError):
    """Something the user can act on; one line."""


# ------------------------------------------------------------------ where things are


@dataclass(frozen=True)
class Host:
    """The platform and environment the profile folders are computed from (injectable)."""

    platform: str = sys.platform
    env: Mapping[str, str] = field(default_factory=lambda: dict(os.environ))

    @property
    def windows(self) -> bool:
        return self.platform.startswith("win")

    @property
    def mac(self) -> bool:
        return self.platform == "darwin"

    def home(self) -> Path:
        return Path(config.home_dir(self.platform, self.env))

    def xdg(self, var: str, default: str) -> Path:
        return Path(config.xdg_dir(var, default, self.platform, self.env))

    def appdata(self) -> Path:  # %APPDATA% (Roaming)
        v = self.env.get("APPDATA")
        return Path(v) if v else self.home() / "AppData" / "Roaming"

    def localappdata(self) -> Path:
        v = self.env.get("LOCALAPPDATA")
        return Path(v) if v else self.home() / "AppData" / "Local"

    def config_dir(self) -> Path:
        """Where engine.json goes: the plug-ins read it from the same function."""
        return Path(config.user_config_dir(self.platform, self.env))

    def data_dir(self) -> Path:
        """platformdirs.user_data_dir("bokehkit") (models live under it)."""
        return Path(config.user_data_dir(self.platform, self.env))


@dataclass(frozen=True)
class Profile:
    """One host profile: a GIMP profile folder (``…/GIMP/3.0``) or a Krita resource folder
    (``…/krita``) with its kritarc."""

    kind: str  # "gimp" | "krita"
    path: Path
    label: str
    kritarc: Path | None = None

    @property
    def key(self) -> str:
        return f"{self.kind}:{self.path}"

    def owned(self) -> list[Path]:
        """The top-level paths the plug-in consists of, in the order they are installed."""
        if self.kind == "gimp":
            return [self.path / "plug-ins" / GIMP_PLUGIN]
        pykrita = self.path / "pykrita"
        return [pykrita / KRITA_PLUGIN, pykrita / f"{KRITA_PLUGIN}.desktop"]


def gimp_candidates(host: Host) -> list[Profile]:
    home = host.home()
    out: list[Profile] = []
    for v in GIMP_VERSIONS:
        if host.windows:
            out.append(Profile("gimp", host.appdata() / "GIMP" / v, f"GIMP {v}"))
        elif host.mac:
            out.append(
                Profile("gimp", home / "Library" / "Application Support" / "GIMP" / v, f"GIMP {v}")
            )
        else:
            out.append(
                Profile("gimp", host.xdg("XDG_CONFIG_HOME", ".config") / "GIMP" / v, f"GIMP {v}")
            )
            flat = home / ".var" / "app" / GIMP_FLATPAK / "config" / "GIMP" / v
            out.append(Profile("gimp", flat, f"GIMP {v} (Flatpak)"))
            snap = home / "snap" / "gimp" / "current" / ".config" / "GIMP" / v
            out.append(Profile("gimp", snap, f"GIMP {v} (Snap)"))
    g3 = host.env.get("GIMP3_DIRECTORY", "").strip()
    if g3:
        out.insert(0, Profile("gimp", Path(g3), "GIMP 3 ($GIMP3_DIRECTORY)"))
    return out


def krita_candidates(host: Host) -> list[Profile]:
    home = host.home()
    if host.windows:
        return [
            Profile("krita", host.appdata() / "krita", "Krita", host.localappdata() / "kritarc")
        ]
    if host.mac:
        return [
            Profile(
                "krita",
                home / "Library" / "Application Support" / "krita",
                "Krita",
                home / "Library" / "Preferences" / "kritarc",
            )
        ]
    flat = home / ".var" / "app" / KRITA_FLATPAK
    return [
        Profile(
            "krita",
            host.xdg("XDG_DATA_HOME", ".local/share") / "krita",
            "Krita",
            host.xdg("XDG_CONFIG_HOME", ".config") / "kritarc",
        ),
        Profile("krita", flat / "data" / "krita", "Krita (Flatpak)", flat / "config" / "kritarc"),
    ]


def find_profiles(host: Host, kinds=("gimp", "krita")) -> list[Profile]:
    """The profiles that exist: a host program that has been started once made them.
    (A GIMP profile is never created here: GIMP migrates older settings only into a
    profile folder that does not exist yet.)"""
    found: list[Profile] = []
    seen: set[str] = set()
    cands = []
    if "gimp" in kinds:
        cands += gimp_candidates(host)
    if "krita" in kinds:
        cands += krita_candidates(host)
    for p in cands:
        exists = p.path.is_dir() or (p.kritarc is not None and p.kritarc.is_file())
        real = os.path.realpath(p.path)
        if exists and real not in seen:
            seen.add(real)
            found.append(p)
    return found


def profile_from_dir(directory: str | Path, kind: str | None, host: Host) -> Profile:
    """`--profile DIR`: a GIMP profile (or its plug-ins folder), or a Krita resource folder
    (or its pykrita folder). The kind is guessed from the path unless given."""
    d = Path(directory).expanduser().absolute()
    if d.name == "plug-ins":
        d, kind = d.parent, kind or "gimp"
    elif d.name == "pykrita":
        d, kind = d.parent, kind or "krita"
    if kind is None:
        parts = {p.lower() for p in d.parts}
        if "gimp" in parts:
            kind = "gimp"
        elif "krita" in parts or (d / "pykrita").is_dir():
            kind = "krita"
        else:
            raise InstallError(
                f"cannot tell whether {d} is a GIMP or Krita profile: add --gimp or --krita"
            )
    kritarc = None
    if kind == "krita":  # the default profile's kritarc, when DIR is the default profile
        for c in krita_candidates(host):
            if os.path.realpath(c.path) == os.path.realpath(d):
                kritarc = c.kritarc
    return Profile(kind, d, f"{'GIMP' if kind == 'gimp' else 'Krita'} ({d})", kritarc)


# ------------------------------------------------------------------ what is installed


def source_root(explicit: str | Path | None = None) -> Path:
    """The folder holding gimp/, krita/ and plugin/: a checkout, a frozen engine's bundle
    (bokehkit_sources/) or BOKEHKIT_PLUGIN_SOURCES."""
    cands = []
    if explicit:
        cands.append(Path(explicit))
    if os.environ.get("BOKEHKIT_PLUGIN_SOURCES"):
        cands.append(Path(os.environ["BOKEHKIT_PLUGIN_SOURCES"]))
    if getattr(sys, "frozen", False):
        bundle = Path(getattr(sys, "_MEIPASS", Path(sys.executable).parent))
        cands.append(bundle / "bokehkit_sources")
    here = Path(__file__).resolve()
    cands += [here.parent / "bokehkit_sources", here.parents[2]]
    for c in cands:
        if (c / "gimp" / GIMP_PLUGIN).is_dir() and (c / "plugin" / VENDORED).is_dir():
            return c
    raise InstallError(
        "cannot find the plug-ins' files (gimp/, krita/, plugin/): run this from a bokehkit "
        "checkout or a release, or set BOKEHKIT_PLUGIN_SOURCES"
    )


def _walk(src: Path, prefix: str = "") -> dict[str, Path]:
    out: dict[str, Path] = {}
    for p in sorted(src.rglob("*")):
        rel = p.relative_to(src)
        if any(part in SKIP_NAMES for part in rel.parts) or p.suffix in SKIP_SUFFIXES:
            continue
        if p.is_file():
            out[(Path(prefix) / rel).as_posix()] = p
    return out


def _vendored(src: Path) -> dict[str, Path]:
    """The shared package the plug-ins carry, less this installer (it runs beside them)."""
    files = _walk(src / "plugin" / VENDORED, VENDORED)
    files.pop(f"{VENDORED}/{Path(__file__).name}", None)
    return files


def plugin_files(kind: str, src: Path) -> dict[str, dict[str, Path]]:
    """{owned top-level name: {relative path: source file}} for one plug-in; a name that is a
    single file maps "" to it."""
    if kind == "gimp":
        files = _walk(src / "gimp" / GIMP_PLUGIN)
        files.update(_vendored(src))
        return {GIMP_PLUGIN: files}
    files = _walk(src / "krita" / KRITA_PLUGIN)
    files.update(_vendored(src))
    desktop = f"{KRITA_PLUGIN}.desktop"
    return {KRITA_PLUGIN: files, desktop: {"": src / "krita" / desktop}}


def is_executable_entry(kind: str, rel: str) -> bool:
    return kind == "gimp" and rel == f"{GIMP_PLUGIN}.py"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def default_engine_command(repo: Path | None = None) -> list[str] | None:
    """The command that starts THIS engine (the plug-ins add `serve --stdio`): the frozen
    binary, else this Python when it can import bokehkit by itself (an installed engine),
    else a checkout's .venv. None when no engine is set up."""
    if getattr(sys, "frozen", False):
        return [sys.executable]
    cands = [sys.executable]
    if repo is not None:
        for rel in ("bin/python", "Scripts/python.exe"):
            if (repo / ".venv" / rel).exists():
                cands.append(str(repo / ".venv" / rel))
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    for py in cands:
        try:
            p = subprocess.run(
                [py, "-c", "import bokehkit.commands"],
                capture_output=True,
                env=env,
                timeout=120,
                cwd=os.path.expanduser("~"),
            )
        except (OSError, subprocess.TimeoutExpired):
            continue
        if p.returncode == 0:
            return [py, "-m", APP]
    return None


# ------------------------------------------------------------------ file helpers


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _write_json(path: Path, obj) -> None:
    _write_atomic(path, (json.dumps(obj, indent=1, sort_keys=True) + "\n").encode())


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError):
        return None


def _rmtree(path: Path) -> None:
    def onerror(func, p, _exc):  # read-only files on Windows
        os.chmod(p, stat.S_IWRITE)
        func(p)

    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, onerror=onerror)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _side(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}{suffix}")


def _mode_ok(path: Path, executable: bool) -> bool:
    return (not executable) or os.name == "nt" or bool(path.stat().st_mode & stat.S_IXUSR)


# ------------------------------------------------------------------ kritarc


def _ini_get(text: str, section: str, key: str) -> str | None:
    cur = None
    for line in text.splitlines():
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            cur = s[1:-1]
        elif cur == section and "=" in s and s.split("=", 1)[0].strip() == key:
            return s.split("=", 1)[1].strip()
    return None


def _ini_set(text: str, section: str, key: str, value: str | None) -> str:
    """Set (or with None remove) one key, leaving every other line as it was."""
    nl = "\r\n" if "\r\n" in text else "\n"
    lines = text.splitlines()
    out, cur, done, sect_end = [], None, False, None
    for line in lines:
        s = line.strip()
        if s.startswith("[") and s.endswith("]"):
            if cur == section and not done and value is not None:
                while out and not out[-1].strip():  # before the blank line ending the section
                    out.pop()
                    sect_end = (sect_end or 0) + 1
                out.append(f"{key}={value}")
                out.extend([""] * (sect_end or 0))
                done = True
            cur, sect_end = s[1:-1], None
        elif cur == section and "=" in s and s.split("=", 1)[0].strip() == key:
            if value is not None and not done:
                out.append(f"{key}={value}")
                done = True
            continue
        out.append(line)
    if not done and value is not None:
        if cur == section:
            out.append(f"{key}={value}")
        else:
            if out and out[-1].strip():
                out.append("")
            out += [f"[{section}]", f"{key}={value}"]
    return nl.join(out) + nl if out else ""


# ------------------------------------------------------------------ the installer


@dataclass
class Options:
    kinds: tuple[str, ...] = ("gimp", "krita")
    profiles: tuple[str, ...] = ()
    dry_run: bool = False
    engine: list[str] | None = None  # None: default_engine_command()
    source: str | None = None
    host: Host = field(default_factory=Host)
    quiet: bool = False
    force: bool = False
    # A remote engine (`serve --tcp --tls`) instead of a child process: {"address",
    # "token_file", "fingerprint"}, as plugin/bokehkit_plugin/config.remote_engine() reads it.
    remote: dict | None = None


class Installer:
    def __init__(self, opts: Options, out=None) -> None:
        self.o = opts
        self.host = opts.host
        self.out = out or sys.stdout
        self.cfg = self.host.config_dir()
        self.manifest_path = self.cfg / MANIFEST
        self.marker_path = self.cfg / MARKER
        self.changed = 0
        self._marker: dict | None = None
        self._marker_roots: dict[str, bool] = {}  # an interrupted install's created folders

    def say(self, msg: str) -> None:
        if not self.o.quiet or self.o.dry_run:
            prefix = "would " if self.o.dry_run and msg[:1].islower() else ""
            print(prefix + msg, file=self.out)

    # --- manifest
    def load_manifest(self) -> dict:
        m = _read_json(self.manifest_path)
        if not isinstance(m, dict) or not isinstance(m.get("targets"), dict):
            m = {"version": 1, "targets": {}}
        return m

    def save_manifest(self, m: dict) -> None:
        if self.o.dry_run:
            return
        data = (json.dumps(m, indent=1, sort_keys=True) + "\n").encode()
        if not (self.manifest_path.is_file() and self.manifest_path.read_bytes() == data):
            self.begin()
            _write_atomic(self.manifest_path, data)

    def begin(self) -> None:
        """Before the first write of an install: the marker that says one is under way."""
        if not self.o.dry_run and self._marker is not None and not self.marker_path.exists():
            _write_json(self.marker_path, self._marker)
        self._marker = None

    def profiles(self) -> list[Profile]:
        if self.o.profiles:
            kind = self.o.kinds[0] if len(self.o.kinds) == 1 else None
            return [profile_from_dir(d, kind, self.host) for d in self.o.profiles]
        return find_profiles(self.host, self.o.kinds)

    def _interrupted(self) -> list[Profile]:
        marker = _read_json(self.marker_path)
        if not isinstance(marker, dict):
            return []
        out = []
        for t in marker.get("targets", []):
            self._marker_roots[f"{t['kind']}:{t['path']}"] = bool(t.get("created_root"))
            rc = t.get("kritarc")
            out.append(Profile(t["kind"], Path(t["path"]), t["label"], Path(rc) if rc else None))
        return out

    # --- install
    def install(self) -> int:
        src = source_root(self.o.source)
        interrupted = self._interrupted()
        if self.marker_path.exists():
            self.say(f"A previous install was interrupted ({self.marker_path}): repairing it.")
        profiles = self.profiles()
        keys = {p.key for p in profiles}
        profiles += [p for p in interrupted if p.key not in keys and p.kind in self.o.kinds]
        if not profiles:
            self._no_profiles()
            return 1
        engine = self.o.engine if self.o.engine is not None else default_engine_command(src)
        t0 = time.monotonic()
        targets = [
            {
                "kind": p.kind,
                "path": str(p.path),
                "label": p.label,
                "kritarc": str(p.kritarc) if p.kritarc else None,
                "created_root": self._created_root(p),
            }
            for p in profiles
        ]
        self._marker = {"started": time.time(), "pid": os.getpid(), "targets": targets}
        m = self.load_manifest()
        for p in profiles:
            entry = self._install_profile(p, src, m["targets"].get(p.key))
            m["targets"][p.key] = entry
            self.save_manifest(m)
        self._write_engine(engine, m)
        self.save_manifest(m)
        if not self.o.dry_run and self.marker_path.exists():
            self.marker_path.unlink()
        if self.o.dry_run:  # it did nothing: say so, not "Done"
            self.say(
                f"Dry run: nothing was changed; {len(profiles)} profile(s), "
                f"{self.changed} change(s) would be made."
            )
            return 0
        what = "nothing changed" if not self.changed else f"{self.changed} change(s)"
        self.say(
            f"Done in {time.monotonic() - t0:.2f} s: {len(profiles)} profile(s), {what}. "
            f"Manifest: {self.manifest_path}"
        )
        if any(p.kind == "krita" for p in profiles):
            self.say(
                "Restart Krita to load the plug-in (docker: Settings > Dockers > Bokeh; "
                "also Filter > Lens Bokeh…)."
            )
        if any(p.kind == "gimp" for p in profiles):
            self.say("Restart GIMP: the plug-in is Filters > Blur (and > Bokeh) > Lens Bokeh…")
        return 0

    def _no_profiles(self) -> None:
        names = " or ".join("GIMP 3" if k == "gimp" else "Krita" for k in self.o.kinds)
        print(
            f"No {names} profile found. Start the program once (it creates its profile), "
            "then run this again, or name the folder with --profile DIR. Looked in:",
            file=self.out,
        )
        cands = (gimp_candidates(self.host) if "gimp" in self.o.kinds else []) + (
            krita_candidates(self.host) if "krita" in self.o.kinds else []
        )
        for c in cands:
            print(f"  {c.path}", file=self.out)

    def _install_profile(self, p: Profile, src: Path, old: dict | None) -> dict:
        old_files = set((old or {}).get("files", {}))
        entry = {"kind": p.kind, "path": str(p.path), "label": p.label, "files": {}}
        entry["created_root"] = (old or {}).get("created_root", self._created_root(p))
        for top, files in plugin_files(p.kind, src).items():
            dest = p.path / ("plug-ins" if p.kind == "gimp" else "pykrita") / top
            if "" in files:  # a single file (Krita's .desktop): written last, atomically
                self._install_file(dest, files[""], p, entry)
            else:
                self._install_tree(dest, files, p, entry, old_files)
        if p.kind == "krita":
            entry["kritarc"] = self._enable_krita(p, (old or {}).get("kritarc"))
        self.say(f"  {p.label}: {p.path}")
        return entry

    def _created_root(self, p: Profile) -> bool:
        """Whether this install makes the plug-ins/pykrita folder (uninstall removes it)."""
        if p.key in self._marker_roots:
            return self._marker_roots[p.key]
        return not (p.path / ("plug-ins" if p.kind == "gimp" else "pykrita")).is_dir()

    def _install_file(self, dest: Path, src: Path, p: Profile, entry: dict) -> None:
        h = sha256(src)
        entry["files"][str(dest)] = h
        if dest.is_file() and sha256(dest) == h:
            return
        self.changed += 1
        self.begin()
        self.say(f"write {dest}")
        if not self.o.dry_run:
            _write_atomic(dest, src.read_bytes())

    def _install_tree(
        self, dest: Path, files: dict[str, Path], p: Profile, entry: dict, old_files: set[str]
    ) -> None:
        new = {
            str(dest / rel): (src, sha256(src), is_executable_entry(p.kind, rel))
            for rel, src in files.items()
        }
        for path, (_, h, _x) in new.items():
            entry["files"][path] = h
        staging, backup = _side(dest, STAGING), _side(dest, BACKUP)
        leftovers = [d for d in (staging, backup) if d.exists()]
        up_to_date = (
            not leftovers
            and dest.is_dir()
            and all(
                Path(f).is_file() and sha256(Path(f)) == h and _mode_ok(Path(f), x)
                for f, (_, h, x) in new.items()
            )
            and not self._stale(dest, new, old_files)
        )
        if up_to_date:
            return
        self.changed += 1
        self.begin()
        self.say(f"install {dest} ({len(new)} files)")
        if self.o.dry_run:
            return
        for d in leftovers:  # a killed run's half copy, or the old plug-in moved aside
            _rmtree(d)
        staging.mkdir(parents=True)
        for path, (src, _, x) in new.items():
            target = staging / Path(path).relative_to(dest)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(src, target)
            os.chmod(target, 0o755 if x else 0o644)
        if dest.exists():  # keep what the user put there (files we never installed)
            for f in dest.rglob("*"):
                rel = f.relative_to(dest)
                if (
                    f.is_file()
                    and str(f) not in new
                    and str(f) not in old_files
                    and not any(part in SKIP_NAMES for part in rel.parts)
                ):
                    (staging / rel).parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(f, staging / rel)
            os.replace(dest, backup)
        os.replace(staging, dest)
        _rmtree(backup)

    def _stale(self, dest: Path, new: dict, old_files: set[str]) -> bool:
        """Files we installed before that the new version no longer has."""
        prefix = str(dest) + os.sep
        return any(f not in new and Path(f).exists() for f in old_files if f.startswith(prefix))

    def _enable_krita(self, p: Profile, old: dict | None) -> dict | None:
        if p.kritarc is None:
            self.say(
                f"  {p.label}: enable it in Settings > Configure Krita > Python Plugin "
                "Manager (no kritarc known for this profile)"
            )
            return None
        text = p.kritarc.read_bytes().decode("utf-8") if p.kritarc.is_file() else ""
        key = f"enable_{KRITA_PLUGIN}"
        current = _ini_get(text, "python", key)
        previous = old["previous"] if old and "previous" in old else current
        rec = {
            "path": str(p.kritarc),
            "key": key,
            "previous": previous,
            "existed": old["existed"] if old else p.kritarc.is_file(),
            "dir_existed": old.get("dir_existed", True) if old else p.kritarc.parent.is_dir(),
        }
        if current == "true":
            return rec
        self.changed += 1
        self.begin()
        self.say(f"enable {KRITA_PLUGIN} in {p.kritarc}")
        if not self.o.dry_run:
            _write_atomic(p.kritarc, _ini_set(text, "python", key, "true").encode("utf-8"))
        return rec

    def _write_engine(self, engine: list[str] | None, m: dict) -> None:
        path = self.cfg / ENGINE_CONFIG
        if engine is None and self.o.remote is None:
            self.say(
                "No engine found for the plug-ins to start (this Python cannot import "
                "bokehkit). Set one up with `installer/setup_engine.py`, then run "
                "`bokehkit install-plugins` with it, or pass --engine COMMAND."
            )
            return
        config: dict = {"command": engine} if engine else {}
        if self.o.remote is not None:
            config["remote"] = self.o.remote
        data = (json.dumps(config, indent=1) + "\n").encode()
        m["engine"] = {
            "path": str(path),
            "sha256": hashlib.sha256(data).hexdigest(),
            "command": engine,
        }
        if path.is_file() and path.read_bytes() == data:
            return
        self.changed += 1
        self.begin()
        if self.o.remote is not None:
            self.say(f"write {path}: the plug-ins use the engine at {self.o.remote['address']}")
        else:
            self.say(f"write {path}: the plug-ins start `{shlex.join(engine)} serve --stdio`")
        if not self.o.dry_run:
            _write_atomic(path, data)

    # --- uninstall
    def uninstall(self) -> int:
        m = self.load_manifest()
        targets = dict(m["targets"])
        interrupted = {p.key: p for p in self._interrupted()}
        chosen = None
        if self.o.profiles:
            chosen = {p.key for p in self.profiles()}
        src = None
        kept: list[str] = []
        removed_any = False
        keys = list(targets) + [k for k in interrupted if k not in targets]
        for key in keys:
            entry = targets.get(key)
            if entry is None:  # interrupted before its manifest entry: what it would have been
                p = interrupted[key]
                try:
                    src = src or source_root(self.o.source)
                except InstallError:
                    continue
                entry = {"kind": p.kind, "path": str(p.path), "label": p.label, "files": {}}
                entry["created_root"] = self._marker_roots.get(key, False)
                for top, files in plugin_files(p.kind, src).items():
                    base = p.path / ("plug-ins" if p.kind == "gimp" else "pykrita") / top
                    for rel, f in files.items():
                        entry["files"][str(base / rel) if rel else str(base)] = sha256(f)
            if entry["kind"] not in self.o.kinds or (chosen is not None and key not in chosen):
                continue
            kept += self._uninstall_entry(entry)
            targets.pop(key, None)
            removed_any = True
        if chosen is not None and not removed_any:
            self.say("Nothing of bokehkit is installed in the given profile(s).")
        m["targets"] = targets
        if not targets:
            eng = m.pop("engine", None)
            path = self.cfg / ENGINE_CONFIG
            if eng and path.is_file() and sha256(path) == eng["sha256"]:
                self.say(f"remove {path}")
                if not self.o.dry_run:
                    path.unlink()
            if not self.o.dry_run:
                self.manifest_path.unlink(missing_ok=True)
                self.marker_path.unlink(missing_ok=True)
                for d in (self.cfg, self.cfg.parent):  # Windows: …\bokehkit\bokehkit
                    if d.name != APP:
                        break
                    try:
                        d.rmdir()  # only when empty
                    except OSError:
                        break
        else:
            self.save_manifest(m)
        if not removed_any and not chosen:
            self.say("bokehkit's plug-ins are not installed (no manifest entries).")
        for f in kept:
            print(
                f"kept {f}: changed since it was installed (remove it yourself, or run "
                "again with --force)",
                file=self.out,
            )
        return 0

    def _uninstall_entry(self, entry: dict) -> list[str]:
        kept = []
        self.say(f"  {entry['label']}: {entry['path']}")
        dirs: set[Path] = set()
        kind_root = Path(entry["path"]) / ("plug-ins" if entry["kind"] == "gimp" else "pykrita")
        for f, h in entry["files"].items():
            path = Path(f)
            for parent in path.parents:
                if parent == kind_root:
                    break
                dirs.add(parent)
            if not path.is_file():
                continue
            if sha256(path) != h and not self.o.force:
                kept.append(f)
                continue
            if self.o.dry_run:
                self.say(f"remove {path}")
            else:
                path.unlink()
            self.changed += 1
        owned = {Path(f).parent for f in entry["files"]}
        for top in dirs:  # leftovers of an interrupted swap
            if top.parent == kind_root:
                for side in (_side(top, STAGING), _side(top, BACKUP)):
                    if side.exists():
                        self.say(f"remove {side}")
                        if not self.o.dry_run:
                            _rmtree(side)
        for d in sorted(dirs, key=lambda p: len(p.parts), reverse=True):
            cache = d / "__pycache__"  # bytecode Python wrote for our modules
            if d in owned and cache.is_dir() and not self.o.dry_run:
                ours = {Path(f).stem for f in entry["files"] if Path(f).parent == d}
                for pyc in cache.iterdir():
                    if pyc.name.split(".")[0] in ours and pyc.suffix in SKIP_SUFFIXES:
                        pyc.unlink()
                try:
                    cache.rmdir()
                except OSError:
                    pass
            if not self.o.dry_run:
                try:
                    d.rmdir()  # only when empty: the user's files stay
                except OSError:
                    pass
        if entry.get("created_root") and not self.o.dry_run:
            try:
                kind_root.rmdir()  # the plug-ins/pykrita folder we made, when empty
            except OSError:
                pass
        if not self.o.dry_run:
            self.say(f"    removed its plug-in ({len(entry['files'])} files)")
        rc = entry.get("kritarc")
        if rc:
            self._disable_krita(rc)
        return kept

    def _disable_krita(self, rc: dict) -> None:
        path = Path(rc["path"])
        if not path.is_file():
            return
        text = path.read_bytes().decode("utf-8")
        if _ini_get(text, "python", rc["key"]) != "true":
            return  # the user changed it since: leave it
        prev = rc.get("previous")
        new = _ini_set(text, "python", rc["key"], prev)
        self.say(f"{'restore' if prev else 'remove'} {rc['key']} in {path}")
        if self.o.dry_run:
            return
        if not rc.get("existed") and not new.replace("[python]", "").strip():
            path.unlink()  # we created it and nothing else is in it
            if not rc.get("dir_existed", True):
                try:
                    path.parent.rmdir()
                except OSError:
                    pass
        else:
            _write_atomic(path, new.encode("utf-8"))


# ------------------------------------------------------------------ command line


def add_arguments(p: argparse.ArgumentParser, install: bool) -> None:
    g = p.add_mutually_exclusive_group()
    g.add_argument(
        "--gimp", dest="kinds", action="store_const", const=("gimp",), help="GIMP 3 only"
    )
    g.add_argument(
        "--krita", dest="kinds", action="store_const", const=("krita",), help="Krita only"
    )
    g.add_argument(
        "--all",
        dest="kinds",
        action="store_const",
        const=("gimp", "krita"),
        help="GIMP and Krita (default)",
    )
    p.set_defaults(kinds=("gimp", "krita"))
    p.add_argument(
        "--profile",
        metavar="DIR",
        action="append",
        default=[],
        help="this profile folder only (GIMP: …/GIMP/3.0 or its plug-ins; Krita: "
        "the resource folder or its pykrita); repeatable",
    )
    p.add_argument("--dry-run", action="store_true", help="print what would be done, do nothing")
    p.add_argument("-q", "--quiet", action="store_true", help="print only problems")
    if install:
        p.add_argument(
            "--engine",
            metavar="COMMAND",
            help="the command that starts the engine (default: this one)",
        )
        p.add_argument("--source", metavar="DIR", help="where gimp/, krita/, plugin/ are")
        p.add_argument("--list", action="store_true", help="list the profiles found and exit")
        g = p.add_argument_group("remote engine (docs/scale-out.md)")
        g.add_argument("--remote", metavar="HOST:PORT", help="use `bokehkit serve --tls` there")
        g.add_argument("--token-file", metavar="FILE", help="with --remote: its token")
        g.add_argument("--fingerprint", metavar="SHA256:…", help="with --remote: its certificate")
    else:
        p.add_argument(
            "--force", action="store_true", help="remove our files even where they were changed"
        )


def options_from_args(args: argparse.Namespace, host: Host | None = None) -> Options:
    engine = getattr(args, "engine", None)
    return Options(
        kinds=tuple(args.kinds),
        profiles=tuple(args.profile),
        dry_run=args.dry_run,
        engine=shlex.split(engine, posix=os.name != "nt") if engine else None,
        source=getattr(args, "source", None),
        host=host or Host(),
        quiet=args.quiet,
        force=getattr(args, "force", False),
        remote=_remote_option(args),
    )


def _remote_option(args: argparse.Namespace) -> dict | None:
    """--remote, --token-file, --fingerprint checked (not the connection: the engine may be
    off now); the token stays in its file, which the config names. Standard library only:
    installer/install.py runs this file on its own."""
    if not getattr(args, "remote", None):
        return None
    if not args.token_file or not args.fingerprint:
        raise InstallError("--remote needs --token-file FILE and --fingerprint SHA256:…")
    host, _, port = args.remote.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InstallError(f"--remote wants HOST:PORT, not {args.remote!r}")
    digits = args.fingerprint.strip()
    digits = (digits[7:] if digits.upper().startswith("SHA256:") else digits).replace(":", "")
    if len(digits) != 64 or any(c not in "0123456789abcdef" for c in digits.lower()):
        raise InstallError(
            "--fingerprint must be SHA256: and 64 hex digits, as `serve --tls` prints"
        )
    token_file = Path(args.token_file).resolve()
    try:
        if not token_file.read_text(encoding="utf-8").strip():
            raise InstallError(f"{token_file}: the token file is empty")
    except (OSError, UnicodeDecodeError) as exc:
        raise InstallError(f"{token_file}: cannot read the token file ({exc})") from None
    return {"address": args.remote, "token_file": str(token_file),
            "fingerprint": "SHA256:" + digits.lower()}  # fmt: skip


def run_install(args: argparse.Namespace) -> int:
    try:
        opts = options_from_args(args)
        if getattr(args, "list", False):
            for p in find_profiles(opts.host, opts.kinds):
                print(f"{p.label}: {p.path}")
            return 0
        return Installer(opts).install()
    except (InstallError, OSError) as exc:
        print(f"bokehkit: error: {exc}", file=sys.stderr)
        return 2


def run_uninstall(args: argparse.Namespace) -> int:
    try:
        return Installer(options_from_args(args)).uninstall()
    except (InstallError, OSError) as exc:
        print(f"bokehkit: error: {exc}", file=sys.stderr)
        return 2


def add_parsers(sub) -> None:
    """`install-plugins` and `uninstall-plugins` for bokehkit's CLI."""
    p = sub.add_parser("install-plugins", help="put the plug-ins into GIMP 3 and Krita")
    add_arguments(p, install=True)
    p.set_defaults(run=run_install)
    p = sub.add_parser("uninstall-plugins", help="remove exactly what install-plugins put")
    add_arguments(p, install=False)
    p.set_defaults(run=run_uninstall)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="install.py", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command")
    add_parsers(sub)
    argv = list(sys.argv[1:] if argv is None else argv)
    aliases = {"install": "install-plugins", "uninstall": "uninstall-plugins"}
    if argv and argv[0] in aliases:
        argv[0] = aliases[argv[0]]
    if not argv or argv[0] not in ("install-plugins", "uninstall-plugins", "-h", "--help"):
        argv.insert(0, "install-plugins")  # plain `install.py [options]` installs
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

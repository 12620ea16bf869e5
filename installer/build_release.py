#!/usr/bin/env python3
"""Release archives of the plug-ins, with the host-side package vendored in (the same file
set `bokehkit install-plugins` copies). Standard library only; byte-for-byte reproducible
(fixed time stamps, sorted entries).

    python3 installer/build_release.py [--out dist]

- ``bokehkit_krita-<version>.zip``: ``bokehkit_krita.desktop`` and ``bokehkit_krita/`` at
  the zip's root, with directory entries, as Krita's Tools > Scripts > Import Python Plugin
  from File… expects (it looks for a .desktop, reads X-KDE-Library, and takes the folder of
  that name holding an ``__init__.py``).
- ``bokehkit-gimp-<version>.zip`` and ``.tar.gz``: ``bokehkit-gimp/`` at the root, to unpack
  into a GIMP 3 profile's ``plug-ins`` folder; the entry script is stored with mode 0755
  (the tar keeps it everywhere; of zip tools, `unzip` and GIMP-unaware extractors on
  Windows, where the bit does not matter).
"""

from __future__ import annotations

import argparse
import gzip
import io
import sys
import tarfile
import zipfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO / "core"), str(REPO / "plugin")]  # stdlib-only parts, by path

from bokehkit import __version__  # noqa: E402
from bokehkit_plugin.install import is_executable_entry, plugin_files  # noqa: E402

EPOCH = (2020, 1, 1, 0, 0, 0)
EPOCH_TS = 1577836800


def entries(kind: str) -> list[tuple[str, bytes | None, int]]:
    """(archive name, data or None for a folder, mode), sorted, folders first."""
    out: dict[str, tuple[bytes | None, int]] = {}
    for top, files in plugin_files(kind, REPO).items():
        for rel, src in files.items():
            name = f"{top}/{rel}" if rel else top
            parts = name.split("/")
            for i in range(1, len(parts)):
                out["/".join(parts[:i]) + "/"] = (None, 0o755)
            mode = 0o755 if is_executable_entry(kind, rel) else 0o644
            out[name] = (src.read_bytes(), mode)
    return [(n, *out[n]) for n in sorted(out)]


def write_zip(path: Path, items) -> None:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data, mode in items:
            info = zipfile.ZipInfo(name, EPOCH)
            info.create_system = 3  # unix: the mode below is honoured by unzip
            if data is None:
                info.external_attr = (0o40000 | mode) << 16 | 0x10
                z.writestr(info, b"")
            else:
                info.external_attr = (0o100000 | mode) << 16
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, data)


def write_tar_gz(path: Path, items) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        for name, data, mode in items:
            info = tarfile.TarInfo(name.rstrip("/"))
            info.mtime, info.mode, info.uname, info.gname = EPOCH_TS, mode, "", ""
            if data is None:
                info.type = tarfile.DIRTYPE
                t.addfile(info)
            else:
                info.size = len(data)
                t.addfile(info, io.BytesIO(data))
    with open(path, "wb") as f, gzip.GzipFile(fileobj=f, mode="wb", mtime=EPOCH_TS) as g:
        g.write(buf.getvalue())


def build(out: Path) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    made = {
        "krita": out / f"bokehkit_krita-{__version__}.zip",
        "gimp-zip": out / f"bokehkit-gimp-{__version__}.zip",
        "gimp-tar": out / f"bokehkit-gimp-{__version__}.tar.gz",
    }
    write_zip(made["krita"], entries("krita"))
    gimp = entries("gimp")
    write_zip(made["gimp-zip"], gimp)
    write_tar_gz(made["gimp-tar"], gimp)
    return made


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=REPO / "dist")
    args = ap.parse_args(argv)
    for path in build(args.out).values():
        print(f"{path} ({path.stat().st_size / 1024:.0f} KiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

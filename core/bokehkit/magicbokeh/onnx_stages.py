"""MagicBokeh's three stages on ONNX Runtime: the network of the light engine (no torch).

``bokehkit models export-onnx magicbokeh`` (`onnx_export`, on a full install) writes the
export into the bundle folder:

=========================  ===============================================================
``onnx/encode.onnx``        image in [−1, 1] (1×3×H×W, H, W multiples of 8) → latent ×
                            scaling (the posterior mean), 1×4×H/8×W/8
``onnx/denoise.onnx``       latent (1×4×h×w, h, w multiples of 8), defocus and in-focus
                            labels (1×1×8h×8w, float 0/1) → x0; the masked attention's
                            biases are computed inside the graph from the labels
``onnx/decode.onnx``        x0 (1×4×h×w) → image in [−1, 1], 1×3×8h×8w
``onnx/*.onnx.data``        their weights (ONNX external data: the denoiser is over the
                            2 GB a single ONNX file can hold)
``onnx/export.json``        sha256 and size of every file above, and the sha256 of the
                            bundle manifest (``magicbokeh.json``) it was exported from
=========================  ===============================================================

An export whose bundle manifest has changed since (the model was imported again) is
stale and refused. Only ``magicbokeh.json`` and ``onnx/`` are read here: a light engine
needs no ``*.safetensors``. This module imports neither torch nor the ``onnx`` package.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from ..errors import BokehkitError
from ..store.download import file_sha256
from . import bundle

EXPORT_DIR = "onnx"
EXPORT_MANIFEST = "export.json"
EXPORT_FORMAT = "bokehkit-magicbokeh-onnx"
EXPORT_VERSION = 1
#: stage → (ONNX file, input names, output name)
STAGES = {
    "encode": ("encode.onnx", ("image_m11",), "latent"),
    "denoise": ("denoise.onnx", ("latent", "defocus", "in_focus"), "x0"),
    "decode": ("decode.onnx", ("x0",), "image_m11"),
}
LATENT_MULTIPLE = 8  # the denoiser's latent sides (its three downsamplers, the labels' /64)


def export_command(name: str = bundle.MODEL_ID) -> str:
    cmd = "bokehkit models export-onnx magicbokeh"
    return cmd if name == bundle.MODEL_ID else f"{cmd} --name {name}"


def export_dir(folder: str | Path) -> Path:
    return Path(folder) / EXPORT_DIR


def bundle_manifest_sha256(folder: Path) -> str:
    path = folder / bundle.MANIFEST
    if not path.is_file():
        raise BokehkitError(
            f"MagicBokeh bundle {folder} lacks {bundle.MANIFEST}; run: "
            f"{bundle.import_command(folder.name)}"
        )
    return file_sha256(path)


def read_export_manifest(folder: str | Path) -> dict:
    """The export's manifest, checked for format; raises with the command to run."""
    folder = Path(folder)
    path = export_dir(folder) / EXPORT_MANIFEST
    again = f"run on a full install (with torch): {export_command(folder.name)}"
    if not path.is_file():
        raise BokehkitError(f"MagicBokeh has no ONNX export in {path.parent}; {again}")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BokehkitError(f"{path}: cannot read the ONNX export's manifest ({exc}); "
                            f"{again} --force") from None  # fmt: skip
    if manifest.get("format") != EXPORT_FORMAT or manifest.get("version") != EXPORT_VERSION:
        raise BokehkitError(f"{path} is not a version-{EXPORT_VERSION} MagicBokeh ONNX export; "
                            f"{again} --force")  # fmt: skip
    return manifest


def verify_export(folder: str | Path, hashes: bool = True) -> list[tuple[str, bool, str]]:
    """(file, ok, message) for every file of the export; sizes always, sha256 when
    `hashes` (reads every byte)."""
    manifest = read_export_manifest(folder)
    where = export_dir(folder)
    out = []
    for name, entry in manifest["files"].items():
        p = where / name
        if not p.is_file():
            out.append((name, False, "missing"))
        elif p.stat().st_size != entry["size"]:
            out.append((name, False, f"DAMAGED: {p.stat().st_size} bytes, not {entry['size']}"))
        elif hashes and file_sha256(p) != entry["sha256"]:
            out.append((name, False, "DAMAGED: sha256 differs from the manifest"))
        else:
            out.append((name, True, "OK"))
    return out


def export_status(folder: str | Path) -> tuple[bool, str]:
    """(usable, reason): the export is there, complete (sizes, no hashing) and made from
    the bundle manifest that is in the folder now."""
    folder = Path(folder)
    try:
        manifest = read_export_manifest(folder)
        current = bundle_manifest_sha256(folder)
        results = verify_export(folder, hashes=False)
    except BokehkitError as exc:
        return False, str(exc)
    again = export_command(folder.name)
    if manifest.get("bundle_manifest_sha256") != current:
        return False, (
            f"the ONNX export in {export_dir(folder)} is stale: the bundle was imported "
            f"again after it was exported; run on a full install: {again} --force"
        )
    stage_files = {f for f, _, _ in STAGES.values()}
    bad = [f"{n} ({msg})" for n, ok, msg in results if not ok]
    bad += [f"{n} (not in the manifest)" for n in sorted(stage_files - set(manifest["files"]))]
    if bad:
        return False, (
            f"MagicBokeh ONNX export {export_dir(folder)}: {', '.join(bad)}; run on a full "
            f"install: {again} --force"
        )
    return True, ""


def open_session(path: Path, threads: int | None = None):
    """A CPU onnxruntime session for one stage file."""
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BokehkitError(
            f"MagicBokeh's ONNX runtime needs onnxruntime ({exc.name or exc} is missing)"
        ) from None
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    except Exception as exc:  # noqa: BLE001 - a damaged file: say what to do
        raise BokehkitError(
            f"cannot load {path} ({type(exc).__name__}: {str(exc)[:200]}); export it again: "
            f"{export_command(path.parent.parent.name)} --force"
        ) from None


def _f32(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32)


class OnnxStages:
    """The stages interface of `fast` (`stages.TorchStages`'s twin) over three
    onnxruntime sessions, fp32 on the CPU. Sessions are opened here and live as long as
    this object (the real model's weights are several GB: make one per render, not per
    tile)."""

    numpy_stages = True

    def __init__(self, folder: str | Path, threads: int | None = None):
        self.folder = Path(folder)
        ok, reason = export_status(self.folder)
        if not ok:
            raise BokehkitError(reason)
        where = export_dir(self.folder)
        self.sessions = {
            stage: open_session(where / file, threads) for stage, (file, _, _) in STAGES.items()
        }

    def _run(self, stage: str, *arrays: np.ndarray) -> np.ndarray:
        _, inputs, _ = STAGES[stage]
        feed = {name: _f32(a) for name, a in zip(inputs, arrays, strict=True)}
        return self.sessions[stage].run(None, feed)[0]

    def encode(self, image_m11: np.ndarray) -> np.ndarray:
        if image_m11.shape[-2] % 8 or image_m11.shape[-1] % 8:
            raise BokehkitError(f"encode: image tile {image_m11.shape} is not a multiple of 8")
        return self._run("encode", image_m11)

    def denoise(self, latent: np.ndarray, defocus: np.ndarray, in_focus: np.ndarray) -> np.ndarray:
        lh, lw = latent.shape[-2:]
        if lh % LATENT_MULTIPLE or lw % LATENT_MULTIPLE:
            raise BokehkitError(
                f"denoise: latent tile {lh}×{lw} is not a multiple of {LATENT_MULTIPLE}"
            )
        if defocus.shape[-2:] != (8 * lh, 8 * lw) or in_focus.shape[-2:] != (8 * lh, 8 * lw):
            raise BokehkitError(f"denoise: defocus/labels {defocus.shape}/{in_focus.shape} "
                                f"are not 8× the latent tile {lh}×{lw}")  # fmt: skip
        return self._run("denoise", latent, defocus, in_focus)

    def decode(self, x0: np.ndarray) -> np.ndarray:
        return self._run("decode", x0)

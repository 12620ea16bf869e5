"""Our MagicBokeh model bundle: its files, its manifest, and how to check it.

A bundle is the folder ``<model store>/<name>/`` (default name ``magicbokeh``) that
``bokehkit models import magicbokeh`` writes:

=========================  ===============================================================
``unet.safetensors``        pruned UNet (no mid-block, no cross-attention), the SR LoRA
                            merged in, the trained ``conv_in``
``vae.safetensors``         AutoencoderKL, the encoder LoRA merged in
``controlnet.safetensors``  the injector ControlNet's state dict (no mid-block)
``bokeh_lora.safetensors``  the focus-masked attention's LoRA, kept separate (its branch
                            runs beside the plain attention, it cannot be merged)
``*_config.json``           diffusers configs of the UNet, VAE, ControlNet, scheduler
``magicbokeh.json``         this manifest: sha256 and size of every file above, ranks,
                            scales, sources and licences
=========================  ===============================================================
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import BokehkitError
from ..store.download import file_sha256

MODEL_ID = "magicbokeh"
MANIFEST = "magicbokeh.json"
FORMAT = "bokehkit-magicbokeh"
FORMAT_VERSION = 1
WEIGHT_FILES = (
    "unet.safetensors",
    "vae.safetensors",
    "controlnet.safetensors",
    "bokeh_lora.safetensors",
)
CONFIG_FILES = (
    "unet_config.json",
    "vae_config.json",
    "controlnet_config.json",
    "scheduler_config.json",
)
FILES = WEIGHT_FILES + CONFIG_FILES

LICENCES = {
    "stable-diffusion-2-1-base": (
        "CreativeML Open RAIL++-M (Stability AI); the merged UNet and VAE weights are "
        "derivatives of it and carry its use restrictions"
    ),
    "magicbokeh": (
        "no licence: vivoCameraResearch/MagicBokeh publishes no LICENSE file, so the "
        "checkpoint's terms are unstated (all rights reserved by default); for personal "
        "use of a file you obtained yourself, do not redistribute this bundle"
    ),
}


def import_command(name: str = MODEL_ID) -> str:
    cmd = "bokehkit models import magicbokeh --sd21 SD21_BASE_DIR --checkpoint lora.pkl"
    return cmd if name == MODEL_ID else f"{cmd} --name {name}"


def read_manifest(folder: Path) -> dict:
    path = folder / MANIFEST
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BokehkitError(f"{path}: cannot read the bundle manifest ({exc})") from None
    if manifest.get("format") != FORMAT or manifest.get("version") != FORMAT_VERSION:
        raise BokehkitError(
            f"{path} is not a version-{FORMAT_VERSION} MagicBokeh bundle; import it again "
            f"with: {import_command(folder.name)}"
        )
    return manifest


def missing_files(folder: Path) -> list[str]:
    """Bundle files (manifest included) that are not in `folder`."""
    return [n for n in (MANIFEST, *FILES) if not (folder / n).is_file()]


def verify(folder: Path, hashes: bool = True) -> list[tuple[str, bool, str]]:
    """(file, ok, message) for every file the manifest lists; sizes always, sha256 when
    `hashes` (reads every byte)."""
    manifest = read_manifest(folder)
    out = []
    for name, entry in manifest["files"].items():
        p = folder / name
        if not p.is_file():
            out.append((name, False, "missing"))
        elif p.stat().st_size != entry["size"]:
            out.append((name, False, f"DAMAGED: {p.stat().st_size} bytes, not {entry['size']}"))
        elif hashes and file_sha256(p) != entry["sha256"]:
            out.append((name, False, "DAMAGED: sha256 differs from the manifest"))
        else:
            out.append((name, True, "OK"))
    return out


def status(folder: Path) -> tuple[bool, str]:
    """(usable, reason): every file present with the manifest's size (no hashing)."""
    missing = missing_files(folder)
    if len(missing) == len(FILES) + 1:  # nothing there: say so in one short line
        return False, f"no MagicBokeh model at {folder}; import it: {import_command(folder.name)}"
    if missing:
        return False, (
            f"MagicBokeh bundle {folder} lacks {', '.join(missing)}; "
            f"run: {import_command(folder.name)}"
        )
    try:
        bad = [f"{n} ({msg})" for n, ok, msg in verify(folder, hashes=False) if not ok]
    except BokehkitError as exc:
        return False, str(exc)
    if bad:
        return False, (
            f"MagicBokeh bundle {folder}: {', '.join(bad)}; "
            f"run again: {import_command(folder.name)}"
        )
    return True, ""


def bundles_in(store_root: Path) -> list[Path]:
    """The folders of a model store that hold a MagicBokeh bundle manifest."""
    if not store_root.is_dir():
        return []
    return sorted(p for p in store_root.iterdir() if (p / MANIFEST).is_file())

"""``bokehkit models import magicbokeh``: SD 2.1-base + the published ``lora.pkl`` → bundle.

What the official loader does at every start (peft adapters, copying LoRA tensors, a
pickled ControlNet) is done here once, and written as plain safetensors:

- UNet: SD 2.1-base weights, mid-block and cross-attention (``attn2``/``norm2`` of the
  transformer blocks) dropped, ``conv_in`` replaced by the trained ``conv_in.base_layer``,
  then both peft adapters merged: ``W += (8/r_u)·B·A`` (peft's default ``lora_alpha`` 8;
  a conv LoRA's A is a conv with the base kernel, B a 1×1 conv).
- VAE: the encoder adapter merged the same way with ``8/r_v``; the decoder is SD's.
- ControlNet: read out of the pickled module by `safe_pickle` (never executed).
- Bokeh LoRA (the masked-attention branch): copied, renamed; its scale is ``1/r_a``.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path

import torch

from ..errors import BokehkitError
from ..store.download import file_sha256
from . import bundle
from .safe_pickle import PickledObject, load_checkpoint, module_config, module_state_dict

Log = Callable[[str], None]

CHECKPOINT_KEYS = (
    "rank_unet",
    "unet_lora_encoder_modules",
    "unet_lora_decoder_modules",
    "state_dict_unet",
    "rank_vae",
    "vae_lora_encoder_modules",
    "state_dict_vae",
    "controlnet",
    "state_dict_attn",
    "processor_state_dict",
)
PEFT_LORA_ALPHA = 8.0  # peft's LoraConfig default; the official code does not set it
BOKEH_LORA_ALPHA = 1.0  # prepare_for_inference(lora_alpha=1.0)

_LORA_KEY = re.compile(r"^(?P<module>.+)\.lora_(?P<ab>[AB])\.(?P<adapter>[^.]+)\.weight$")
_PROC_KEY = re.compile(
    r"^(?P<layer>up_blocks\.\d+\.attentions\.\d+\.transformer_blocks\.\d+\.attn1)"
    r"\.processor\.to_(?P<proj>q|k|v|out)_lora\.(?P<ab>[01])\.weight$"
)


# ---------------------------------------------------------------------- the checkpoint


def read_official_checkpoint(path: Path) -> dict:
    """The published ``lora.pkl`` as a checked dict (ControlNet as an inert record)."""
    ckpt = load_checkpoint(path)
    if not isinstance(ckpt, dict):
        raise BokehkitError(f"{path} holds a {type(ckpt).__name__}, not MagicBokeh's dict")
    missing = [k for k in CHECKPOINT_KEYS if k not in ckpt]
    if missing:
        raise BokehkitError(f"{path} is not a MagicBokeh lora.pkl: it lacks {', '.join(missing)}")
    for k in ("rank_unet", "rank_vae", "state_dict_attn"):
        if not isinstance(ckpt[k], int) or ckpt[k] <= 0:
            raise BokehkitError(f"{path}: {k} should be a positive int, not {ckpt[k]!r}")
    for k in ("state_dict_unet", "state_dict_vae", "processor_state_dict"):
        sd = ckpt[k]
        if not isinstance(sd, dict) or not all(isinstance(v, torch.Tensor) for v in sd.values()):
            raise BokehkitError(f"{path}: {k} should map names to tensors")
    if not isinstance(ckpt["controlnet"], PickledObject) or not ckpt[
        "controlnet"
    ].pickled_class.endswith("ControlNetModel"):
        raise BokehkitError(f"{path}: 'controlnet' is not a pickled ControlNetModel")
    return ckpt


# ---------------------------------------------------------------------- LoRA merging


def lora_delta(a: torch.Tensor, b: torch.Tensor, scale: float) -> torch.Tensor:
    """The weight change of a peft LoRA pair: ``scale·B·A`` (linear or conv)."""
    a, b = a.double(), b.double()
    if a.ndim == 2 and b.ndim == 2:
        return (b @ a) * scale
    if a.ndim == 4 and b.ndim == 4 and b.shape[2:] == (1, 1):
        return torch.einsum("or,rikl->oikl", b[:, :, 0, 0], a) * scale
    raise BokehkitError(f"unexpected LoRA shapes A{tuple(a.shape)} B{tuple(b.shape)}")


def merge_lora(
    base: dict[str, torch.Tensor], lora: dict[str, torch.Tensor], scale: float, what: str
) -> int:
    """Add every (module, adapter) pair of `lora` into `base` in place; the count merged."""
    pairs: dict[tuple[str, str], dict[str, torch.Tensor]] = {}
    for key, tensor in lora.items():
        m = _LORA_KEY.match(key)
        if m:
            pairs.setdefault((m["module"], m["adapter"]), {})[m["ab"]] = tensor
    for (module, adapter), ab in sorted(pairs.items()):
        if set(ab) != {"A", "B"}:
            raise BokehkitError(f"{what}: LoRA {module} ({adapter}) lacks its A or B matrix")
        key = f"{module}.weight"
        if key not in base:
            raise BokehkitError(f"{what}: LoRA targets {module}, which SD 2.1-base lacks")
        w = base[key]
        delta = lora_delta(ab["A"], ab["B"], scale)
        if delta.shape != w.shape:
            raise BokehkitError(
                f"{what}: LoRA of {module} gives {tuple(delta.shape)}, the weight is "
                f"{tuple(w.shape)} (another base model than SD 2.1-base?)"
            )
        base[key] = (w.double() + delta).to(w.dtype)
    return len(pairs)


def prune_unet_state(sd: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop what the published UNet deleted: the mid-block and cross-attention."""
    cross = re.compile(r"\.transformer_blocks\.\d+\.(attn2|norm2)\.")
    return {k: v for k, v in sd.items() if not k.startswith("mid_block.") and not cross.search(k)}


def bokeh_lora_state(processor: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``…attn1.processor.to_q_lora.0.weight`` → ``…attn1.bokeh_lora.q.down`` (A, r×C);
    ``.1`` → ``.up`` (B, C×r)."""
    out = {}
    for key, tensor in processor.items():
        m = _PROC_KEY.match(key)
        if not m:
            raise BokehkitError(f"unexpected masked-attention LoRA tensor {key}")
        part = "down" if m["ab"] == "0" else "up"
        out[f"{m['layer']}.bokeh_lora.{m['proj']}.{part}"] = tensor.contiguous().clone()
    return out


# ---------------------------------------------------------------------- SD 2.1 reading


def _load_sd21(sd21: Path):
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()  # its advice to install accelerate is noise here
    for sub in ("unet", "vae", "scheduler"):
        if not (sd21 / sub).is_dir():
            raise BokehkitError(
                f"{sd21} is not a Stable Diffusion 2.1-base folder in diffusers format "
                f"(no {sub}/); give the folder that holds model_index.json"
            )
    models = []
    for cls, sub in ((UNet2DConditionModel, "unet"), (AutoencoderKL, "vae")):
        folder = sd21 / sub
        variant = None
        if not any(folder.glob("diffusion_pytorch_model.*")) and any(folder.glob("*.fp16.*")):
            variant = "fp16"
        try:
            model = cls.from_pretrained(sd21, subfolder=sub, variant=variant)
        except (OSError, ValueError) as exc:
            raise BokehkitError(f"cannot read {folder}: {exc}") from None
        models.append(model)
    return models


def _config_json(config) -> dict:
    """A diffusers config as plain JSON, without the local path it was read from."""
    plain = {k: v for k, v in dict(config).items() if k != "_name_or_path"}
    return json.loads(json.dumps(plain, default=str))


# ---------------------------------------------------------------------- the import


def import_magicbokeh(
    sd21: str | Path,
    checkpoint: str | Path,
    store_root: str | Path,
    name: str = bundle.MODEL_ID,
    force: bool = False,
    log: Log = print,
) -> Path:
    """Write the bundle `<store_root>/<name>/`; returns its folder."""
    sd21, checkpoint, store_root = Path(sd21), Path(checkpoint), Path(store_root)
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        raise BokehkitError(f"--name {name!r}: use letters, digits, '.', '_' and '-'")
    dest = store_root / name
    if dest.exists() and not force:
        raise BokehkitError(f"{dest} exists; remove it or pass --force to replace it")
    if not checkpoint.is_file():
        raise BokehkitError(f"{checkpoint} is not a file")

    log(f"reading {checkpoint} (restricted unpickler: nothing in it is run)")
    ckpt = read_official_checkpoint(checkpoint)
    r_u, r_v, r_a = ckpt["rank_unet"], ckpt["rank_vae"], ckpt["state_dict_attn"]
    log(f"reading {sd21}")
    unet, vae = _load_sd21(sd21)

    # UNet: prune, trained conv_in, merge both adapters.
    unet_sd = prune_unet_state({k: v.detach().float() for k, v in unet.state_dict().items()})
    lora_unet = dict(ckpt["state_dict_unet"])
    for part in ("weight", "bias"):
        key = f"conv_in.base_layer.{part}"
        if key not in lora_unet:
            raise BokehkitError(f"{checkpoint}: state_dict_unet lacks {key}")
        if lora_unet[key].shape != unet_sd[f"conv_in.{part}"].shape:
            raise BokehkitError(f"{checkpoint}: {key} does not fit SD 2.1-base's conv_in")
        unet_sd[f"conv_in.{part}"] = lora_unet.pop(key).float()
    n_unet = merge_lora(unet_sd, lora_unet, PEFT_LORA_ALPHA / r_u, "UNet")
    expected = set(ckpt["unet_lora_encoder_modules"]) | set(ckpt["unet_lora_decoder_modules"])
    merged = {m["module"] for k in lora_unet if (m := _LORA_KEY.match(k))}
    if expected - merged:
        raise BokehkitError(
            f"{checkpoint}: no LoRA weights for {len(expected - merged)} listed UNet modules "
            f"(e.g. {sorted(expected - merged)[0]})"
        )

    vae_sd = {k: v.detach().float() for k, v in vae.state_dict().items()}
    n_vae = merge_lora(vae_sd, ckpt["state_dict_vae"], PEFT_LORA_ALPHA / r_v, "VAE")

    cn = ckpt["controlnet"]
    cn_sd = {k: v.float() for k, v in module_state_dict(cn).items()}
    if any(".lora_" in k or ".base_layer." in k for k in cn_sd):
        raise BokehkitError(f"{checkpoint}: the ControlNet holds unmerged LoRA layers")
    cn_sd = {
        k: v for k, v in cn_sd.items() if not k.startswith(("mid_block.", "controlnet_mid_block."))
    }
    cn_config = module_config(cn)
    bokeh = {k: v.float() for k, v in bokeh_lora_state(ckpt["processor_state_dict"]).items()}
    if len(bokeh) != 72:
        log(f"note: {len(bokeh)} masked-attention LoRA tensors (the published model has 72)")

    scheduler_cfg = json.loads((sd21 / "scheduler" / "scheduler_config.json").read_text())

    from safetensors.torch import save_file

    store_root.mkdir(parents=True, exist_ok=True)
    tmp = store_root / f".{name}.importing"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        tensors = {
            "unet.safetensors": unet_sd,
            "vae.safetensors": vae_sd,
            "controlnet.safetensors": cn_sd,
            "bokeh_lora.safetensors": bokeh,
        }
        for fname, sd in tensors.items():
            log(f"writing {fname} ({len(sd)} tensors)")
            save_file(
                {k: v.contiguous() for k, v in sd.items()},
                str(tmp / fname),
                metadata={"format": "pt", "bokehkit": bundle.FORMAT},
            )
        configs = {
            "unet_config.json": _config_json(unet.config),
            "vae_config.json": _config_json(vae.config),
            "controlnet_config.json": cn_config,
            "scheduler_config.json": scheduler_cfg,
        }
        for fname, cfg in configs.items():
            (tmp / fname).write_text(json.dumps(cfg, indent=2, default=str) + "\n")
        files = {
            f: {"sha256": file_sha256(tmp / f), "size": (tmp / f).stat().st_size}
            for f in bundle.FILES
        }
        manifest = {
            "format": bundle.FORMAT,
            "version": bundle.FORMAT_VERSION,
            "name": name,
            "files": files,
            "ranks": {"unet": r_u, "vae": r_v, "bokeh_attention": r_a},
            "scales": {
                "unet_lora_merged": PEFT_LORA_ALPHA / r_u,
                "vae_lora_merged": PEFT_LORA_ALPHA / r_v,
                "bokeh_lora": BOKEH_LORA_ALPHA / r_a,
            },
            "merged_lora_modules": {"unet": n_unet, "vae": n_vae},
            "pruned": [
                "unet.mid_block",
                "transformer_blocks.*.attn2",
                "transformer_blocks.*.norm2",
            ],
            "sources": {
                "checkpoint": {
                    "file": checkpoint.name,
                    "sha256": file_sha256(checkpoint),
                    "controlnet_class": cn.pickled_class,
                },
                "sd21": {
                    "folder": str(sd21.resolve()),
                    "files": {
                        str(p.relative_to(sd21)): file_sha256(p)
                        for sub in ("unet", "vae", "scheduler")
                        for p in sorted((sd21 / sub).iterdir())
                        if p.is_file()
                    },
                },
            },
            "licences": bundle.LICENCES,
        }
        (tmp / bundle.MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
        if dest.exists():
            old = store_root / f".{name}.old"
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dest, old)
            shutil.rmtree(old)
        os.replace(tmp, dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    log(f"{name}: MagicBokeh bundle written to {dest}")
    return dest

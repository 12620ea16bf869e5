"""Small MagicBokeh inputs in the exact official file layout, made inside the tests.

- `make_sd21(dir)`: a Stable Diffusion 2.1-base-like diffusers folder (model_index.json,
  unet/, vae/, scheduler/) with SD 2.1's block structure and tiny channel counts. No text
  encoder or tokenizer: nothing of ours reads them (the published UNet has no
  cross-attention).
- `make_lora_pkl(path, sd21_dir)`: a ``lora.pkl`` as the official training code writes it
  (``torch.save`` of the 10-key dict, see the spec §4.1), with small random LoRA weights
  and a pickled ControlNet object whose class is ``models.controlnet.ControlNetModel``. The
  stand-in classes live in fake ``models.*`` modules only while pickling, so the file
  names the same globals as the official one.
"""

from __future__ import annotations

import json
import sys
import types
from contextlib import contextmanager
from pathlib import Path

import torch

UNET_CONFIG = dict(
    sample_size=8,
    in_channels=4,
    out_channels=4,
    down_block_types=("CrossAttnDownBlock2D",) * 3 + ("DownBlock2D",),
    up_block_types=("UpBlock2D",) + ("CrossAttnUpBlock2D",) * 3,
    block_out_channels=(16, 16, 32, 32),
    layers_per_block=2,
    attention_head_dim=(2, 2, 4, 4),  # SD 2.1 stores head counts here
    cross_attention_dim=16,
    norm_num_groups=8,
    use_linear_projection=True,
    upcast_attention=False,
)
VAE_CONFIG = dict(
    in_channels=3,
    out_channels=3,
    down_block_types=("DownEncoderBlock2D",) * 4,
    up_block_types=("UpDecoderBlock2D",) * 4,
    block_out_channels=(8, 8, 16, 16),
    layers_per_block=2,
    latent_channels=4,
    norm_num_groups=4,
    sample_size=64,
    scaling_factor=0.18215,
)
SCHEDULER_CONFIG = {
    "_class_name": "PNDMScheduler",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "beta_schedule": "scaled_linear",
    "num_train_timesteps": 1000,
    "prediction_type": "epsilon",
    "clip_sample": False,
    "set_alpha_to_one": False,
    "skip_prk_steps": True,
    "steps_offset": 1,
    "trained_betas": None,
}
RANK_UNET, RANK_VAE, RANK_ATTN = 4, 4, 8

# The official target patterns (magicbokeh.py initialize_con_unet / initialize_con_vae).
UNET_GREP = ["to_k", "to_q", "to_v", "to_out.0", "conv", "conv1", "conv2", "conv_in",
             "conv_shortcut", "conv_out", "proj_out", "proj_in",
             "ff.net.2", "ff.net.0.proj"]  # fmt: skip
VAE_GREP = ["conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out",
            "to_k", "to_q", "to_v", "to_out.0"]  # fmt: skip


def make_sd21(root: Path, seed: int = 0, sample_size: int | None = None) -> Path:
    """`sample_size` overrides the UNet's (8 here): the official code sizes its attention
    masks from it, so running the official inference on 512 tiles needs SD 2.1's 64."""
    from diffusers import AutoencoderKL, UNet2DConditionModel

    torch.manual_seed(seed)
    root.mkdir(parents=True, exist_ok=True)
    cfg = dict(UNET_CONFIG, **({} if sample_size is None else {"sample_size": sample_size}))
    unet = UNet2DConditionModel(**cfg)
    vae = AutoencoderKL(**VAE_CONFIG)
    with torch.no_grad():  # zero-initialised layers would hide mistakes: randomise all
        for p in [*unet.parameters(), *vae.parameters()]:
            p.add_(torch.randn_like(p) * 0.02)
    unet.save_pretrained(root / "unet")
    vae.save_pretrained(root / "vae")
    # SD 2.1-base ships a PNDM config; the official code reads it as DDPMScheduler.
    (root / "scheduler").mkdir(exist_ok=True)
    (root / "scheduler" / "scheduler_config.json").write_text(json.dumps(SCHEDULER_CONFIG))
    (root / "model_index.json").write_text(
        json.dumps(
            {
                "_class_name": "StableDiffusionPipeline",
                "_diffusers_version": "0.25.0",
                "scheduler": ["diffusers", "PNDMScheduler"],
                "unet": ["diffusers", "UNet2DConditionModel"],
                "vae": ["diffusers", "AutoencoderKL"],
                "text_encoder": [None, None],
                "tokenizer": [None, None],
            },
            indent=2,
        )
    )
    return root


def pruned_unet(sd21: Path):
    """The official pruned UNet: no mid-block, no cross-attention (attn2/norm2)."""
    from diffusers import UNet2DConditionModel

    unet = UNet2DConditionModel.from_pretrained(sd21, subfolder="unet")
    unet.mid_block = None
    for m in unet.modules():
        if type(m).__name__ == "BasicTransformerBlock":
            m.attn2 = None
            m.norm2 = None
    return unet


def unet_lora_modules(unet) -> tuple[list[str], list[str]]:
    enc, dec = [], []
    for n, _ in unet.named_parameters():
        if "bias" in n or "norm" in n:
            continue
        for pattern in UNET_GREP:
            if pattern in n and ("down_blocks" in n or "conv_in" in n):
                enc.append(n.replace(".weight", ""))
                break
            if pattern in n and ("up_blocks" in n or "conv_out" in n):
                dec.append(n.replace(".weight", ""))
                break
    return enc, dec


def vae_lora_modules(vae) -> list[str]:
    out = []  # duplicates included, as the official loop makes them
    for n, _ in vae.named_parameters():
        if "bias" in n or "norm" in n:
            continue
        for pattern in VAE_GREP:
            if pattern in n and "encoder" in n:
                out.append(n.replace(".weight", ""))
            elif "quant_conv" in n and "post_quant_conv" not in n:
                out.append(n.replace(".weight", ""))
    return out


def _lora_pair(module: torch.nn.Module, rank: int, g: torch.Generator):
    w = module.weight
    if w.ndim == 4:
        a = torch.randn(rank, w.shape[1], w.shape[2], w.shape[3], generator=g) * 0.1
        b = torch.randn(w.shape[0], rank, 1, 1, generator=g) * 0.1
    else:
        a = torch.randn(rank, w.shape[1], generator=g) * 0.1
        b = torch.randn(w.shape[0], rank, generator=g) * 0.1
    return a, b


# Classes the official checkpoint names under the repository's `models` package.
_OFFICIAL_PATHS = {
    "ControlNetModel": "models.controlnet",
    "ControlNetConditioningEmbedding": "models.controlnet",
    "CrossAttnDownBlock2D": "models.unet_2d_blocks",
    "DownBlock2D": "models.unet_2d_blocks",
    "Transformer2DModel": "models.transformer_2d",
    "BasicTransformerBlock": "models.attention",
    "FeedForward": "models.attention",
}


@contextmanager
def _official_class_names(root: torch.nn.Module):
    """Give the modules stand-in classes under fake `models.*` modules while pickling."""
    saved_modules = {k: sys.modules.get(k) for k in ["models", *set(_OFFICIAL_PATHS.values())]}
    fakes: dict[type, type] = {}
    swapped: list[tuple[torch.nn.Module, type]] = []
    sys.modules["models"] = types.ModuleType("models")
    for modname in set(_OFFICIAL_PATHS.values()):
        sys.modules[modname] = types.ModuleType(modname)
    try:
        for m in root.modules():
            cls = type(m)
            if cls.__name__ not in _OFFICIAL_PATHS:
                continue
            if cls not in fakes:
                modname = _OFFICIAL_PATHS[cls.__name__]
                fake = type(cls.__name__, (cls,), {"__module__": modname})
                fake.__qualname__ = cls.__name__
                setattr(sys.modules[modname], cls.__name__, fake)
                fakes[cls] = fake
            swapped.append((m, cls))
            m.__class__ = fakes[cls]
        yield
    finally:
        for m, cls in swapped:
            m.__class__ = cls
        for k, v in saved_modules.items():
            if v is None:
                sys.modules.pop(k, None)
            else:
                sys.modules[k] = v


def make_lora_pkl(path: Path, sd21: Path, seed: int = 1) -> dict:
    """Write the official-format ``lora.pkl``; returns the dict (with the real ControlNet
    module under "controlnet") for the tests to compare against."""
    from diffusers import AutoencoderKL, ControlNetModel

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    unet = pruned_unet(sd21)
    vae = AutoencoderKL.from_pretrained(sd21, subfolder="vae")
    enc, dec = unet_lora_modules(unet)
    modules = dict(unet.named_modules())
    sd_unet = {
        "conv_in.base_layer.weight": unet.conv_in.weight.detach() + 0.05,
        "conv_in.base_layer.bias": unet.conv_in.bias.detach() - 0.05,
    }
    for names, adapter in ((enc, "default_encoder"), (dec, "default_decoder")):
        for name in names:
            a, b = _lora_pair(modules[name], RANK_UNET, g)
            sd_unet[f"{name}.lora_A.{adapter}.weight"] = a
            sd_unet[f"{name}.lora_B.{adapter}.weight"] = b
    vae_mods = vae_lora_modules(vae)
    vmodules = dict(vae.named_modules())
    sd_vae = {}
    for name in dict.fromkeys(vae_mods):
        a, b = _lora_pair(vmodules[name], RANK_VAE, g)
        sd_vae[f"{name}.lora_A.default_encoder.weight"] = a
        sd_vae[f"{name}.lora_B.default_encoder.weight"] = b

    controlnet = ControlNetModel.from_unet(unet, load_weights_from_unet=False)
    controlnet.mid_block = None
    del controlnet.controlnet_mid_block
    for m in controlnet.modules():
        if type(m).__name__ == "BasicTransformerBlock":
            m.attn2 = None
            m.norm2 = None
    with torch.no_grad():
        for p in controlnet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)

    processor = {}
    for blk in (1, 2, 3):
        dim = UNET_CONFIG["block_out_channels"][::-1][blk]
        for i in range(3):
            base = f"up_blocks.{blk}.attentions.{i}.transformer_blocks.0.attn1.processor"
            for proj in ("to_q", "to_k", "to_v", "to_out"):
                processor[f"{base}.{proj}_lora.0.weight"] = (
                    torch.randn(RANK_ATTN, dim, generator=g) * 0.1
                )
                processor[f"{base}.{proj}_lora.1.weight"] = (
                    torch.randn(dim, RANK_ATTN, generator=g) * 0.1
                )
    ckpt = {
        "rank_unet": RANK_UNET,
        "unet_lora_encoder_modules": enc,
        "unet_lora_decoder_modules": dec,
        "state_dict_unet": sd_unet,
        "rank_vae": RANK_VAE,
        "vae_lora_encoder_modules": vae_mods,
        "state_dict_vae": sd_vae,
        "controlnet": controlnet,
        "state_dict_attn": RANK_ATTN,
        "processor_state_dict": processor,
    }
    with _official_class_names(controlnet):
        torch.save(ckpt, path)
    return ckpt


def write_malicious_checkpoint(path: Path, payload: bytes) -> None:
    """A torch.save-style zip whose data.pkl is `payload` (plus one valid storage)."""
    import zipfile

    with zipfile.ZipFile(path, "w") as z:
        z.writestr("lora/data.pkl", payload)
        z.writestr("lora/byteorder", "little")
        z.writestr("lora/version", "3\n")
        z.writestr("lora/data/0", b"\0" * 16)


def make_bundle(root: Path, name: str = "tiny") -> Path:
    """The tiny SD 2.1 + official-format lora.pkl, imported through
    ``bokehkit models import magicbokeh`` into the store ``root/store``; the bundle folder."""
    from bokehkit.commands import main

    sd21 = make_sd21(root / "sd21")
    make_lora_pkl(root / "lora.pkl", sd21)
    store = root / "store"
    rc = main(
        ["models", "--store", str(store), "import", "magicbokeh", "--sd21", str(sd21),
         "--checkpoint", str(root / "lora.pkl"), "--name", name, "-q"]
    )  # fmt: skip
    if rc != 0:
        raise RuntimeError(f"models import magicbokeh failed ({rc})")
    return store / name


def write_focus_scene(folder: Path) -> Path:
    """A 96×128 photo in `folder`: in.png (a near subject on the left, a far wall behind),
    d.npy (its disparity), m.png (the subject painted as the focus mask)."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(3)
    h, w = 96, 128
    img = (rng.random((h, w, 3)) * 0.6 + 0.2).astype(np.float32)
    depth = np.full((h, w), 0.1, np.float32)  # disparity: far
    depth[20:76, 10:60] = 0.9  # near
    mask = np.zeros((h, w), np.uint8)
    mask[20:76, 10:60] = 255
    Image.fromarray(np.round(img * 255).astype(np.uint8)).save(folder / "in.png")
    np.save(folder / "d.npy", depth)
    Image.fromarray(mask).save(folder / "m.png")
    return folder

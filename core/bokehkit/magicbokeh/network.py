"""The MagicBokeh network on stock diffusers, built from our bundle (never from the pickle).

Parts (spec §2.4, §3, §9):

- **UNet**: SD 2.1's ``UNet2DConditionModel`` with the mid-block removed and the
  transformer blocks' cross-attention (``attn2``/``norm2``) removed; the SR LoRA is already
  merged into the bundle's weights. Nothing reads ``encoder_hidden_states`` any more, so no
  text encoder is needed: we pass ``None``.
- **Injector**: a ``ControlNetModel`` pruned the same way (no mid-block, no
  ``controlnet_mid_block``). Its conditioning embedding takes the defocus map (×2−1,
  repeated to 3 channels) and is added after ``conv_in``; its 12 zero-conv outputs are
  added to the UNet's skip connections. There is no mid residual (we give the stock UNet
  a zero one so that it treats the 12 as ControlNet residuals, not T2I-Adapter ones).
- **Focus-aware masked attention** on the nine ``up_blocks.{1,2,3}`` ``attn1`` layers: the
  plain attention, plus a second attention whose q/k/v carry the bokeh LoRA and whose
  scores get −100 between tokens with different in-focus labels;
  ``out = to_out(o1) + (α/r)·LoRA_out(o2)`` (α = 1, official ``lora_alpha``).
- **VAE**: ``AutoencoderKL`` with the encoder LoRA merged.
- **One step** at t = 999, ε-prediction: ``x0 = (z − √(1−ᾱ₉₉₉)·ε)/√ᾱ₉₉₉``; the latent
  of the input is used as x_t with no noise added.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import BokehkitError
from . import bundle
from .inputs import IN_FOCUS_THRESHOLD

TIMESTEP = 999
MASK_BIAS = -100.0  # the official additive score bias between differently labelled tokens
BOKEH_LAYER = re.compile(r"^up_blocks\.[123]\.attentions\.\d+\.transformer_blocks\.\d+\.attn1$")
_BOKEH_KEY = re.compile(r"^(?P<layer>.+)\.bokeh_lora\.(?P<proj>q|k|v|out)\.(?P<part>down|up)$")


# ---------------------------------------------------------------------- scheduler


def alpha_bar(scheduler_config: dict, t: int = TIMESTEP) -> torch.Tensor:
    """ᾱ_t as diffusers' DDPMScheduler computes it (fp32 cumprod), a 0-d fp32 tensor."""
    n = int(scheduler_config.get("num_train_timesteps", 1000))
    b0 = float(scheduler_config.get("beta_start", 0.00085))
    b1 = float(scheduler_config.get("beta_end", 0.012))
    kind = scheduler_config.get("beta_schedule", "scaled_linear")
    if scheduler_config.get("trained_betas"):
        betas = torch.tensor(scheduler_config["trained_betas"], dtype=torch.float32)
    elif kind == "scaled_linear":
        betas = torch.linspace(b0**0.5, b1**0.5, n, dtype=torch.float32) ** 2
    elif kind == "linear":
        betas = torch.linspace(b0, b1, n, dtype=torch.float32)
    else:
        raise BokehkitError(f"scheduler beta_schedule {kind!r} is not supported")
    if scheduler_config.get("prediction_type", "epsilon") != "epsilon":
        raise BokehkitError("MagicBokeh's UNet predicts ε; the scheduler config says otherwise")
    return torch.cumprod(1.0 - betas, dim=0)[t]


def predict_x0(latent: torch.Tensor, eps: torch.Tensor, alpha_bar_t) -> torch.Tensor:
    """DDPM's x0 from ε: ``(z − √(1−ᾱ)·ε)/√ᾱ``. The official scheduler step from t=999
    (ᾱ_prev = 1) returns exactly this, plus 1e-10·noise."""
    return (latent - (1 - alpha_bar_t) ** 0.5 * eps) / alpha_bar_t**0.5


# ---------------------------------------------------------------------- pruning


def prune_cross_attention(model: nn.Module) -> int:
    """Remove ``attn2``/``norm2`` from every BasicTransformerBlock; the number pruned."""
    n = 0
    for m in model.modules():
        if type(m).__name__ == "BasicTransformerBlock":
            m.attn2 = None
            m.norm2 = None
            n += 1
    return n


# ---------------------------------------------------------------------- masked attention


class LoRAPair(nn.Module):
    """``up(down(x))``, both bias-free Linear layers (A: C→r, B: r→C)."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.down = nn.Linear(dim, rank, bias=False)
        self.up = nn.Linear(rank, dim, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(self.down(x))


class BokehLoRA(nn.Module):
    """The masked branch's LoRA of one attention layer: on q, k, v and the output."""

    def __init__(self, dim: int, rank: int):
        super().__init__()
        self.q, self.k, self.v, self.out = (LoRAPair(dim, rank) for _ in range(4))


class FocusMasks:
    """The in-focus labels of the tiles being run, as additive attention biases.

    `set(in_focus, latent_hw)` takes the labels at pixel resolution (B×1×H×W, 1 = in
    focus); each attention layer then asks for the bias of its token count. The labels
    of a level are the pixel labels nearest-downsampled to that level's size (for a 512
    tile: ``mask[::8, ::8]``, ``[::16, ::16]``, ``[::32, ::32]``, as the official code).
    The bias is (B, 1, N, N), so it is right for batched tiles too.
    """

    def __init__(self) -> None:
        self._labels: torch.Tensor | None = None
        self._sizes: dict[int, tuple[int, int]] = {}
        self._cache: dict[tuple[int, torch.dtype], torch.Tensor] = {}

    def set(self, in_focus: torch.Tensor | None, latent_hw: tuple[int, int] | None = None) -> None:
        self._cache = {}
        self._labels = None if in_focus is None else in_focus.float()
        self._sizes = {}
        if in_focus is not None:
            h, w = latent_hw or (in_focus.shape[-2] // 8, in_focus.shape[-1] // 8)
            for _ in range(4):  # latent, /2, /4, /8 (the UNet's downsamplers: ceil)
                self._sizes[h * w] = (h, w)
                h, w = (h + 1) // 2, (w + 1) // 2

    def bias(self, n_tokens: int, dtype: torch.dtype, device) -> torch.Tensor | None:
        if self._labels is None:
            return None
        key = (n_tokens, dtype)
        if key not in self._cache:
            if n_tokens not in self._sizes:
                raise BokehkitError(f"masked attention: no focus labels for {n_tokens} tokens")
            lab = F.interpolate(self._labels, size=self._sizes[n_tokens], mode="nearest")
            lab = lab.flatten(1).to(device)  # (B, N)
            differ = lab[:, :, None] != lab[:, None, :]
            self._cache[key] = (differ.to(dtype) * MASK_BIAS).unsqueeze(1)  # (B, 1, N, N)
        return self._cache[key]


class FocusMaskedAttnProcessor:
    """Dual-branch self-attention (spec §3.5), with SDPA instead of baddbmm.

    o1 = attention(q, k, v); o2 = attention(q + s·ΔQ, k + s·ΔK, v + s·ΔV, bias);
    out = to_out(o1) + s·ΔO(o2), with s = α/r (α = 1). Not an nn.Module: the LoRA lives
    in the network's ``bokeh_lora`` so the UNet's own state dict stays SD-shaped.
    """

    def __init__(self, lora: BokehLoRA, scale: float, masks: FocusMasks):
        self.lora, self.scale, self.masks = lora, scale, masks

    def __call__(
        self,
        attn,
        hidden_states: torch.Tensor,
        encoder_hidden_states: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        temb: torch.Tensor | None = None,
    ) -> torch.Tensor:
        if encoder_hidden_states is not None or attention_mask is not None:
            raise BokehkitError("the focus-masked attention is self-attention without a mask")
        residual = hidden_states
        if attn.spatial_norm is not None:
            hidden_states = attn.spatial_norm(hidden_states, temb)
        ndim4 = hidden_states.ndim == 4
        if ndim4:
            b, c, hh, ww = hidden_states.shape
            hidden_states = hidden_states.view(b, c, hh * ww).transpose(1, 2)
        if attn.group_norm is not None:
            hidden_states = attn.group_norm(hidden_states.transpose(1, 2)).transpose(1, 2)
        h = hidden_states
        bsz, n, _ = h.shape
        heads = attn.heads
        s = self.scale

        def split(x: torch.Tensor) -> torch.Tensor:
            return x.view(bsz, n, heads, x.shape[-1] // heads).transpose(1, 2)

        def merge(x: torch.Tensor) -> torch.Tensor:
            return x.transpose(1, 2).reshape(bsz, n, -1)

        q, k, v = attn.to_q(h), attn.to_k(h), attn.to_v(h)
        upcast = attn.upcast_attention
        dt = q.dtype

        def sdpa(q_, k_, v_, mask=None):
            if upcast:
                q_, k_ = q_.float(), k_.float()
                v_ = v_.float()
            o = F.scaled_dot_product_attention(q_, k_, v_, attn_mask=mask, scale=attn.scale)
            return o.to(dt)

        o1 = merge(sdpa(split(q), split(k), split(v)))
        lo = self.lora
        q2 = q + s * lo.q(h)
        k2 = k + s * lo.k(h)
        v2 = v + s * lo.v(h)
        bias = self.masks.bias(n, torch.float32 if upcast else dt, h.device)
        o2 = merge(sdpa(split(q2), split(k2), split(v2), bias))
        out = attn.to_out[0](o1) + s * lo.out(o2)
        out = attn.to_out[1](out)
        if ndim4:
            out = out.transpose(-1, -2).reshape(b, c, hh, ww)
        if attn.residual_connection:
            out = out + residual
        return out / attn.rescale_output_factor


# ---------------------------------------------------------------------- the network


class MagicBokehNetwork(nn.Module):
    """Injector + pruned UNet + masked attention + VAE; `forward` runs one tile batch."""

    def __init__(
        self,
        unet: nn.Module,
        controlnet: nn.Module,
        vae: nn.Module,
        bokeh_lora: dict[str, BokehLoRA],
        bokeh_scale: float,
        alpha_bar_t: torch.Tensor,
    ):
        super().__init__()
        self.unet, self.controlnet, self.vae = unet, controlnet, vae
        self.bokeh_layers = sorted(bokeh_lora)
        self.bokeh_lora = nn.ModuleList(bokeh_lora[n] for n in self.bokeh_layers)
        self.bokeh_scale = float(bokeh_scale)
        self.register_buffer("alpha_bar_t", alpha_bar_t.detach().float().reshape(()))
        self.focus_masks = FocusMasks()
        modules = dict(unet.named_modules())
        for name, lora in zip(self.bokeh_layers, self.bokeh_lora, strict=True):
            modules[name].set_processor(
                FocusMaskedAttnProcessor(lora, self.bokeh_scale, self.focus_masks)
            )

    @property
    def scaling_factor(self) -> float:
        return float(self.vae.config.scaling_factor)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.unet.parameters()).dtype

    # -- the stages --------------------------------------------------------------

    def encode(self, image_m11: torch.Tensor, generator: torch.Generator | None = None):
        """VAE latent × scaling: the posterior mean, or a sample when `generator` is given."""
        dist = self.vae.encode(image_m11.to(self.dtype)).latent_dist
        if generator is None:
            z = dist.mean
        else:
            noise = torch.randn(
                dist.mean.shape, generator=generator, dtype=torch.float32, device="cpu"
            ).to(dist.mean.device, dist.mean.dtype)
            z = dist.mean + dist.std * noise
        return z * self.scaling_factor

    def injector(self, latent: torch.Tensor, cond_m11: torch.Tensor) -> list[torch.Tensor]:
        """The 12 ControlNet residuals (the official forward without a mid-block)."""
        cn = self.controlnet
        t = torch.full((latent.shape[0],), TIMESTEP, dtype=torch.long, device=latent.device)
        emb = cn.time_embedding(cn.time_proj(t).to(latent.dtype))
        cond = cond_m11.to(latent.dtype).repeat(1, 3, 1, 1)
        sample = cn.conv_in(latent) + cn.controlnet_cond_embedding(cond)
        res: list[torch.Tensor] = [sample]
        for block in cn.down_blocks:
            if getattr(block, "has_cross_attention", False):
                sample, r = block(hidden_states=sample, temb=emb, encoder_hidden_states=None)
            else:
                sample, r = block(hidden_states=sample, temb=emb)
            res.extend(r)
        return [zc(r) for r, zc in zip(res, cn.controlnet_down_blocks, strict=True)]

    def denoise(
        self, latent: torch.Tensor, defocus: torch.Tensor, in_focus: torch.Tensor | None = None
    ) -> torch.Tensor:
        """x0 from the latent of the input (as x_t at t=999) and the pixel-size defocus map
        (|d − f|·K/32, ≥ 0). `in_focus` defaults to ``defocus ≤ 0.1``."""
        if in_focus is None:
            in_focus = defocus <= IN_FOCUS_THRESHOLD
        self.focus_masks.set(in_focus, tuple(latent.shape[-2:]))
        try:
            down = self.injector(latent, defocus * 2 - 1)
            eps = self.unet(
                latent,
                TIMESTEP,
                None,
                down_block_additional_residuals=down,
                mid_block_additional_residual=torch.zeros_like(down[-1]),
                return_dict=False,
            )[0]
        finally:
            self.focus_masks.set(None)
        return predict_x0(latent, eps, self.alpha_bar_t)

    def decode(self, x0: torch.Tensor) -> torch.Tensor:
        return self.vae.decode(x0 / self.scaling_factor).sample.clamp(-1, 1)

    def forward(
        self,
        image_m11: torch.Tensor,
        defocus: torch.Tensor,
        in_focus: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """One tile batch: image in [−1, 1] (B×3×H×W), defocus (B×1×H×W) → [−1, 1]."""
        latent = self.encode(image_m11, generator)
        return self.decode(self.denoise(latent, defocus.to(latent.dtype), in_focus))


# ---------------------------------------------------------------------- loading


def _read_json(folder: Path, name: str) -> dict:
    try:
        return json.loads((folder / name).read_text())
    except (OSError, ValueError) as exc:
        raise BokehkitError(f"{folder / name}: {exc}") from None


def _load_strict(model: nn.Module, state: dict[str, torch.Tensor], what: str) -> None:
    want = model.state_dict().keys()
    missing = sorted(set(want) - set(state))
    unexpected = sorted(set(state) - set(want))
    if missing or unexpected:
        raise BokehkitError(
            f"{what}: the bundle does not fit the network ({len(missing)} missing, "
            f"{len(unexpected)} unexpected tensors, e.g. {(missing + unexpected)[:3]}); "
            "import the model again"
        )
    try:
        model.load_state_dict(state, strict=True, assign=True)
    except RuntimeError as exc:
        raise BokehkitError(f"{what}: {exc}") from None
    left = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if left:
        raise BokehkitError(f"{what}: tensors left uninitialised: {left[:3]}")


def _build(cls, config: dict) -> nn.Module:
    """Construct a diffusers model without allocating (or randomising) its weights."""
    from diffusers.utils import logging as diffusers_logging

    diffusers_logging.set_verbosity_error()
    with torch.device("meta"):
        return cls.from_config(config)


def build_unet(config: dict) -> nn.Module:
    from diffusers import UNet2DConditionModel

    unet = _build(UNet2DConditionModel, config)
    unet.mid_block = None
    prune_cross_attention(unet)
    return unet


def build_controlnet(config: dict) -> nn.Module:
    from diffusers import ControlNetModel

    cn = _build(ControlNetModel, config)
    cn.mid_block = None
    del cn.controlnet_mid_block
    prune_cross_attention(cn)
    return cn


def build_vae(config: dict) -> nn.Module:
    from diffusers import AutoencoderKL

    return _build(AutoencoderKL, config)


def bokeh_lora_modules(state: dict[str, torch.Tensor], unet: nn.Module) -> dict[str, BokehLoRA]:
    """The bundle's ``bokeh_lora.safetensors`` as one BokehLoRA per attention layer."""
    layers: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state.items():
        m = _BOKEH_KEY.match(key)
        if not m or not BOKEH_LAYER.match(m["layer"]):
            raise BokehkitError(f"bokeh_lora.safetensors: unexpected tensor {key}")
        layers.setdefault(m["layer"], {})[f"{m['proj']}.{m['part']}.weight"] = tensor
    modules = dict(unet.named_modules())
    expected = sorted(n for n in modules if BOKEH_LAYER.match(n))
    if sorted(layers) != expected:
        raise BokehkitError(
            f"bokeh_lora.safetensors covers {len(layers)} attention layers; the UNet has "
            f"{len(expected)} up-block self-attention layers"
        )
    out = {}
    for name, sd in layers.items():
        dim = modules[name].to_q.in_features
        down = sd.get("q.down.weight")
        if down is None:
            raise BokehkitError(f"bokeh_lora.safetensors: {name} lacks q.down")
        lora = BokehLoRA(dim, down.shape[0])
        _load_strict(lora, sd, f"bokeh LoRA of {name}")
        out[name] = lora
    return out


def load_network(
    folder: str | Path,
    dtype: torch.dtype = torch.float32,
    device: str | torch.device = "cpu",
    channels_last: bool = True,
) -> MagicBokehNetwork:
    """Build the network from a bundle folder (sizes checked, not hashes). Convolution
    weights are kept channels-last unless told otherwise: oneDNN's and cuDNN's fast
    layout (on this CPU 1.2× in fp32, 2.5× in bf16; results differ only by summation
    order)."""
    from safetensors.torch import load_file

    folder = Path(folder)
    ok, reason = bundle.status(folder)
    if not ok:
        raise BokehkitError(reason)
    manifest = bundle.read_manifest(folder)

    def weights(name: str) -> dict[str, torch.Tensor]:
        return {k: v.to(dtype) for k, v in load_file(str(folder / name), device="cpu").items()}

    unet = build_unet(_read_json(folder, "unet_config.json"))
    _load_strict(unet, weights("unet.safetensors"), "UNet")
    cn = build_controlnet(_read_json(folder, "controlnet_config.json"))
    _load_strict(cn, weights("controlnet.safetensors"), "ControlNet")
    vae = build_vae(_read_json(folder, "vae_config.json"))
    _load_strict(vae, weights("vae.safetensors"), "VAE")
    bokeh = bokeh_lora_modules(weights("bokeh_lora.safetensors"), unet)
    rank = manifest["ranks"]["bokeh_attention"]
    if any(lo.q.down.out_features != rank for lo in bokeh.values()):
        raise BokehkitError(f"{folder}: the bokeh LoRA's rank is not the manifest's {rank}")
    scale = float(manifest["scales"]["bokeh_lora"])
    if not math.isclose(scale, 1.0 / rank):
        raise BokehkitError(f"{folder}: bokeh LoRA scale {scale} is not 1/{rank}")
    net = MagicBokehNetwork(
        unet, cn, vae, bokeh, scale, alpha_bar(_read_json(folder, "scheduler_config.json"))
    )
    net.requires_grad_(False)
    net = net.eval().to(device)
    return net.to(memory_format=torch.channels_last) if channels_last else net

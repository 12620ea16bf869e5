"""Run inside the OFFICIAL MagicBokeh environment (diffusers 0.25, peft 0.9, transformers),
with the working directory a copy of the official source tree (so `models`, `bokeh_utils`,
`magicbokeh` import as the official inference.py imports them). Not a pytest module.

    python magicbokeh_official_driver.py make SD21_DIR LORA_PKL [SEED]

adds a tiny CLIP tokenizer + text encoder to SD21_DIR (the official `model_test` loads
them, though nothing consumes the embeddings) and writes LORA_PKL in the official format
with the official classes: peft LoRA on the official pruned UNet and on the VAE encoder
(the parameter names peft gives them, exactly what `model_test.load_ckpt` copies), a
pickled `models.controlnet.ControlNetModel` made by the official `from_unet`, and the
masked-attention LoRA as `bokeh_utils.get_processor_state_dict` names it. All weights
small and random (seeded).

The official inference itself is the repository's own `inference.py`, run by the test.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

RANK_UNET, RANK_VAE, RANK_ATTN = 4, 4, 8


def make_clip(sd21: Path, hidden: int) -> None:
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

    tok_dir = sd21 / "tokenizer"
    tok_dir.mkdir(exist_ok=True)
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1, "!": 2, "a</w>": 3, "h": 4, "q</w>": 5}
    (tok_dir / "vocab.json").write_text(json.dumps(vocab))
    (tok_dir / "merges.txt").write_text("#version: 0.2\n")
    tok = CLIPTokenizer(str(tok_dir / "vocab.json"), str(tok_dir / "merges.txt"),
                        model_max_length=77, pad_token="<|endoftext|>")  # fmt: skip
    tok.save_pretrained(tok_dir)
    cfg = CLIPTextConfig(vocab_size=len(vocab), hidden_size=hidden, intermediate_size=2 * hidden,
                         num_hidden_layers=1, num_attention_heads=2, max_position_embeddings=77,
                         bos_token_id=0, eos_token_id=1, pad_token_id=1)  # fmt: skip
    CLIPTextModel(cfg).save_pretrained(sd21 / "text_encoder")
    index = json.loads((sd21 / "model_index.json").read_text())
    index["text_encoder"] = ["transformers", "CLIPTextModel"]
    index["tokenizer"] = ["transformers", "CLIPTokenizer"]
    (sd21 / "model_index.json").write_text(json.dumps(index, indent=2))


def make_lora_pkl(sd21: Path, out: Path, seed: int) -> None:
    from bokeh_utils import get_processor_state_dict, prepare_for_inference
    from magicbokeh import initialize_con_unet
    from models.autoencoder_kl import AutoencoderKL
    from models.controlnet import ControlNetModel
    from models.unet_2d_condition import UNet2DConditionModel
    from peft import LoraConfig

    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)

    def rand_(params, scale):
        with torch.no_grad():
            for p in params:
                p.copy_(torch.randn(p.shape, generator=g) * scale)

    unet = UNet2DConditionModel.from_pretrained(sd21, subfolder="unet")
    # The Injector: a copy of the pruned UNet's encoder, trained (so: not zero convs).
    controlnet = ControlNetModel.from_unet(unet)
    with torch.no_grad():
        for p in controlnet.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.02)

    enc, dec, _ = initialize_con_unet(None, unet)
    unet.add_adapter(LoraConfig(r=RANK_UNET, init_lora_weights="gaussian", target_modules=enc),
                     adapter_name="default_encoder")  # fmt: skip
    unet.add_adapter(LoraConfig(r=RANK_UNET, init_lora_weights="gaussian", target_modules=dec),
                     adapter_name="default_decoder")  # fmt: skip
    sd_unet = {}
    for name, p in unet.named_parameters():
        if "lora" in name:
            rand_([p], 0.1)
        elif "conv_in" in name:
            with torch.no_grad():
                p.add_(0.05 if name.endswith("weight") else -0.05)
        else:
            continue
        sd_unet[name] = p.detach().clone()

    vae = AutoencoderKL.from_pretrained(sd21, subfolder="vae")
    vae_mods = []  # magicbokeh.initialize_con_vae's loop, duplicates included
    l_grep = ["conv1", "conv2", "conv_in", "conv_shortcut", "conv", "conv_out",
              "to_k", "to_q", "to_v", "to_out.0"]  # fmt: skip
    for n, _ in vae.named_parameters():
        if "bias" in n or "norm" in n:
            continue
        for pattern in l_grep:
            if pattern in n and ("encoder" in n):
                vae_mods.append(n.replace(".weight", ""))
            elif ("quant_conv" in n) and ("post_quant_conv" not in n):
                vae_mods.append(n.replace(".weight", ""))
    vae.add_adapter(LoraConfig(r=RANK_VAE, init_lora_weights="gaussian", target_modules=vae_mods),
                    adapter_name="default_encoder")  # fmt: skip
    sd_vae = {}
    for n, p in vae.named_parameters():
        if "lora" in n:
            rand_([p], 0.1)
            sd_vae[n] = p.detach().clone()

    prepare_for_inference(model=unet, device=torch.device("cpu"), dtype=torch.float32,
                          lora_rank=RANK_ATTN, lora_alpha=1.0)  # fmt: skip
    for name in unet.attn_processors:
        proc = unet.attn_processors[name]
        for attr in ("to_q_lora", "to_k_lora", "to_v_lora", "to_out_lora"):
            if hasattr(proc, attr):
                rand_(getattr(proc, attr).parameters(), 0.1)
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
        "processor_state_dict": get_processor_state_dict(unet),
    }
    torch.save(ckpt, out)


if __name__ == "__main__":
    sys.path.insert(0, os.getcwd())
    cmd, sd21, out = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    if cmd != "make":
        raise SystemExit(f"unknown command {cmd}")
    hidden = json.loads((sd21 / "unet" / "config.json").read_text())["cross_attention_dim"]
    make_clip(sd21, hidden)
    make_lora_pkl(sd21, out, int(sys.argv[4]) if len(sys.argv) > 4 else 1)
    print("ok", out)

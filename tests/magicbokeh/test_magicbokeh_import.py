"""`bokehkit models import magicbokeh` on a tiny SD 2.1 + official-format lora.pkl."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from magicbokeh_fixtures import RANK_ATTN, RANK_UNET, RANK_VAE, make_lora_pkl, make_sd21  # noqa: E402

from bokehkit.commands import main  # noqa: E402
from bokehkit.errors import BokehkitError  # noqa: E402
from bokehkit.magicbokeh import bundle  # noqa: E402
from bokehkit.magicbokeh.convert import import_magicbokeh  # noqa: E402


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    root = tmp_path_factory.mktemp("mbimport")
    sd21 = make_sd21(root / "sd21")
    ckpt = make_lora_pkl(root / "lora.pkl", sd21)
    store = root / "store"
    rc = main(
        ["models", "--store", str(store), "import", "magicbokeh", "--sd21", str(sd21),
         "--checkpoint", str(root / "lora.pkl"), "--name", "tiny", "-q"]
    )  # fmt: skip
    assert rc == 0
    return root, sd21, ckpt, store / "tiny"


def _base(sd21, sub):
    return safetensors_torch.load_file(str(sd21 / sub / "diffusion_pytorch_model.safetensors"))


def test_bundle_files_and_hashes(imported):
    _, _, _, folder = imported
    assert bundle.missing_files(folder) == []
    checks = bundle.verify(folder)
    assert checks and all(ok for _, ok, _ in checks), checks
    manifest = bundle.read_manifest(folder)
    assert set(manifest["files"]) == set(bundle.FILES)
    assert manifest["ranks"] == {"unet": RANK_UNET, "vae": RANK_VAE, "bokeh_attention": RANK_ATTN}
    assert manifest["scales"]["unet_lora_merged"] == 8 / RANK_UNET
    assert manifest["scales"]["bokeh_lora"] == 1 / RANK_ATTN
    assert "CreativeML Open RAIL++-M" in manifest["licences"]["stable-diffusion-2-1-base"]
    assert "no licence" in manifest["licences"]["magicbokeh"]
    assert manifest["sources"]["checkpoint"]["controlnet_class"].startswith("models.controlnet")
    assert bundle.status(folder) == (True, "")
    # a damaged file is caught by the hash check
    p = folder / "vae_config.json"
    text = p.read_text()
    try:
        p.write_text(text.replace("0.18215", "0.18216"))
        assert not all(ok for _, ok, _ in bundle.verify(folder))
    finally:
        p.write_text(text)


def test_unet_is_pruned_with_lora_merged(imported):
    _, sd21, ckpt, folder = imported
    unet = safetensors_torch.load_file(str(folder / "unet.safetensors"))
    base = _base(sd21, "unet")
    assert not any(k.startswith("mid_block.") for k in unet)
    assert not any(".attn2." in k or "transformer_blocks.0.norm2." in k for k in unet)
    assert any(".resnets.0.norm2." in k for k in unet)  # ResNet norm2 stays
    lora = ckpt["state_dict_unet"]
    s = 8 / RANK_UNET
    # a linear layer (decoder adapter) and a 3×3 conv (encoder adapter)
    m = "up_blocks.3.attentions.2.transformer_blocks.0.attn1.to_q"
    want = (
        base[f"{m}.weight"]
        + s
        * lora[f"{m}.lora_B.default_decoder.weight"]
        @ lora[f"{m}.lora_A.default_decoder.weight"]
    )
    torch.testing.assert_close(unet[f"{m}.weight"], want, rtol=0, atol=1e-6)
    m = "down_blocks.1.resnets.0.conv1"
    a, b = lora[f"{m}.lora_A.default_encoder.weight"], lora[f"{m}.lora_B.default_encoder.weight"]
    want = base[f"{m}.weight"] + s * torch.nn.functional.conv2d(a.permute(1, 0, 2, 3), b).permute(
        1, 0, 2, 3
    )
    torch.testing.assert_close(unet[f"{m}.weight"], want, rtol=0, atol=1e-6)
    # conv_in: the trained base layer replaces SD's, plus its LoRA
    a, b = (lora[f"conv_in.lora_{x}.default_encoder.weight"] for x in "AB")
    delta = torch.einsum("or,rikl->oikl", b[:, :, 0, 0], a) * s
    torch.testing.assert_close(
        unet["conv_in.weight"], lora["conv_in.base_layer.weight"] + delta, rtol=0, atol=1e-6
    )
    assert torch.equal(unet["conv_in.bias"], lora["conv_in.base_layer.bias"])
    # a layer without LoRA is SD's own
    assert torch.equal(
        unet["time_embedding.linear_1.weight"], base["time_embedding.linear_1.weight"]
    )


def test_vae_controlnet_and_bokeh_lora(imported):
    _, sd21, ckpt, folder = imported
    vae = safetensors_torch.load_file(str(folder / "vae.safetensors"))
    base = _base(sd21, "vae")
    lora = ckpt["state_dict_vae"]
    m = "quant_conv"
    a, b = lora[f"{m}.lora_A.default_encoder.weight"], lora[f"{m}.lora_B.default_encoder.weight"]
    want = base[f"{m}.weight"] + (8 / RANK_VAE) * torch.einsum("or,rikl->oikl", b[:, :, 0, 0], a)
    torch.testing.assert_close(vae[f"{m}.weight"], want, rtol=0, atol=1e-6)
    assert torch.equal(vae["decoder.conv_in.weight"], base["decoder.conv_in.weight"])

    cn = safetensors_torch.load_file(str(folder / "controlnet.safetensors"))
    ref = ckpt["controlnet"].state_dict()
    assert cn.keys() == ref.keys()
    assert all(torch.equal(cn[k], ref[k]) for k in ref)
    cfg = json.loads((folder / "controlnet_config.json").read_text())
    assert cfg["conditioning_channels"] == 3

    bokeh = safetensors_torch.load_file(str(folder / "bokeh_lora.safetensors"))
    assert len(bokeh) == 72
    proc = ckpt["processor_state_dict"]
    layer = "up_blocks.2.attentions.1.transformer_blocks.0.attn1"
    assert torch.equal(
        bokeh[f"{layer}.bokeh_lora.k.down"], proc[f"{layer}.processor.to_k_lora.0.weight"]
    )
    assert torch.equal(
        bokeh[f"{layer}.bokeh_lora.out.up"], proc[f"{layer}.processor.to_out_lora.1.weight"]
    )


def test_import_refuses_to_overwrite_and_checks_inputs(imported, tmp_path):
    root, sd21, _, folder = imported
    with pytest.raises(BokehkitError, match="exists"):
        import_magicbokeh(sd21, root / "lora.pkl", folder.parent, "tiny", log=lambda _: None)
    with pytest.raises(BokehkitError, match="not a Stable Diffusion 2.1-base folder"):
        import_magicbokeh(tmp_path, root / "lora.pkl", tmp_path / "s", "x", log=lambda _: None)
    bad = tmp_path / "lora.pkl"
    torch.save({"rank_unet": 4}, bad)
    with pytest.raises(BokehkitError, match="lacks"):
        import_magicbokeh(sd21, bad, tmp_path / "s", "x", log=lambda _: None)
    assert not (tmp_path / "s" / "x").exists()


def test_cli_usage_error(tmp_path, capsys):
    rc = main(["models", "--store", str(tmp_path), "import", "magicbokeh", "lora.pkl"])
    assert rc == 2
    assert "--sd21" in capsys.readouterr().err

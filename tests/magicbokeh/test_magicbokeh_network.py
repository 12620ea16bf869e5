"""The MagicBokeh network built from our bundle (tiny SD 2.1-like model, random weights)."""

from __future__ import annotations

import json

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("diffusers")
safetensors_torch = pytest.importorskip("safetensors.torch")

from magicbokeh_fixtures import RANK_ATTN, make_bundle  # noqa: E402

from bokehkit.errors import BokehkitError  # noqa: E402
from bokehkit.magicbokeh import network as nw  # noqa: E402

LAYER = "up_blocks.3.attentions.0.transformer_blocks.0.attn1"  # 8×8 tokens for a 64 px tile


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("mbnet"))


@pytest.fixture(scope="module")
def net(folder):
    return nw.load_network(folder)


def _inputs(seed=0, size=64):
    g = torch.Generator().manual_seed(seed)
    x = torch.rand(1, 3, size, size, generator=g) * 2 - 1
    ramp = torch.linspace(0, 0.4, size).view(1, 1, 1, size).expand(1, 1, size, size)
    return x, ramp.clone()


def test_strict_loading_and_pruning(folder, net):
    assert net.unet.mid_block is None
    assert not hasattr(net.controlnet, "controlnet_mid_block") and net.controlnet.mid_block is None
    for model in (net.unet, net.controlnet):
        blocks = [m for m in model.modules() if type(m).__name__ == "BasicTransformerBlock"]
        assert blocks and all(b.attn2 is None and b.norm2 is None for b in blocks)
    # every tensor of the bundle is used and every parameter comes from it
    for model, fname in ((net.unet, "unet"), (net.controlnet, "controlnet"), (net.vae, "vae")):
        stored = safetensors_torch.load_file(str(folder / f"{fname}.safetensors"))
        state = model.state_dict()
        assert state.keys() == stored.keys()
        assert all(torch.equal(state[k], stored[k]) for k in stored)
        assert not any(p.is_meta for p in model.parameters())
    # the masked attention sits on exactly the nine up-block self-attention layers
    masked = {
        name.removesuffix(".processor")
        for name, proc in net.unet.attn_processors.items()
        if isinstance(proc, nw.FocusMaskedAttnProcessor)
    }
    assert masked == set(net.bokeh_layers) and len(masked) == 9
    assert all(n.startswith(("up_blocks.1.", "up_blocks.2.", "up_blocks.3.")) for n in masked)
    assert all(n.endswith("attn1") for n in masked)
    assert net.bokeh_scale == 1 / RANK_ATTN
    bokeh = safetensors_torch.load_file(str(folder / "bokeh_lora.safetensors"))
    lora = net.bokeh_lora[net.bokeh_layers.index(LAYER)]
    assert torch.equal(lora.k.down.weight, bokeh[f"{LAYER}.bokeh_lora.k.down"])
    assert torch.equal(lora.out.up.weight, bokeh[f"{LAYER}.bokeh_lora.out.up"])


def test_loading_refuses_a_bundle_that_does_not_fit(folder):
    cfg = json.loads((folder / "vae_config.json").read_text())
    stored = safetensors_torch.load_file(str(folder / "vae.safetensors"))
    extra = dict(stored, **{"decoder.extra.weight": torch.zeros(1)})
    with pytest.raises(BokehkitError, match="1 unexpected"):
        nw._load_strict(nw.build_vae(cfg), extra, "VAE")
    stored.pop("encoder.conv_in.bias")
    with pytest.raises(BokehkitError, match="1 missing"):
        nw._load_strict(nw.build_vae(cfg), stored, "VAE")
    with pytest.raises(BokehkitError, match="models import magicbokeh"):
        nw.load_network(folder.parent / "absent")


def test_forward_shapes_and_injector(net):
    x, defocus = _inputs()
    with torch.no_grad():
        y = net(x, defocus)
        latent = net.encode(x)
        down = net.injector(latent, defocus * 2 - 1)
    assert y.shape == (1, 3, 64, 64) and y.dtype == torch.float32
    assert y.abs().max() <= 1 and torch.isfinite(y).all()
    assert latent.shape == (1, 4, 8, 8)
    assert len(down) == 12  # no mid residual
    ch = net.unet.config.block_out_channels
    want = [(ch[0], 8)] * 3 + [(ch[0], 4), (ch[1], 4), (ch[1], 4), (ch[1], 2), (ch[2], 2),
            (ch[2], 2), (ch[2], 1), (ch[3], 1), (ch[3], 1)]  # fmt: skip
    assert [(r.shape[1], r.shape[2]) for r in down] == want


def test_injector_matches_stock_controlnet(folder, net):
    """Our mid-less injector forward = diffusers' ControlNetModel down residuals."""
    from diffusers import ControlNetModel

    cfg = json.loads((folder / "controlnet_config.json").read_text())
    stock = ControlNetModel.from_config(cfg)
    nw.prune_cross_attention(stock)
    result = stock.load_state_dict(
        safetensors_torch.load_file(str(folder / "controlnet.safetensors")), strict=False
    )
    assert not result.unexpected_keys
    assert all(k.startswith(("mid_block.", "controlnet_mid_block.")) for k in result.missing_keys)
    x, defocus = _inputs(3)
    with torch.no_grad():
        latent = net.encode(x)
        cond = (defocus * 2 - 1).repeat(1, 3, 1, 1)
        want, _ = stock(latent, 999, None, controlnet_cond=cond, return_dict=False)
        got = net.injector(latent, defocus * 2 - 1)
    assert len(got) == len(want) == 12
    for a, b in zip(got, want, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)


def _official_attention(attn, h, lora, s, bias):
    """The official LoRAAttnMaskProcessor's arithmetic (baddbmm/bmm, batch 1)."""
    q, k, v = attn.to_q(h), attn.to_k(h), attn.to_v(h)

    def att(q_, k_, v_, mask=None):
        q_, k_, v_ = (attn.head_to_batch_dim(t) for t in (q_, k_, v_))
        scores = torch.baddbmm(
            torch.empty(q_.shape[0], q_.shape[1], k_.shape[1]), q_, k_.transpose(-1, -2),
            beta=0, alpha=attn.scale,
        )  # fmt: skip
        if mask is not None:
            scores = scores + mask.repeat(attn.heads, 1, 1)
        return attn.batch_to_head_dim(torch.bmm(scores.softmax(dim=-1), v_))

    o1 = att(q, k, v)
    o2 = att(q + s * lora.q(h), k + s * lora.k(h), v + s * lora.v(h), bias)
    return attn.to_out[1](attn.to_out[0](o1) + s * lora.out(o2))


def test_masked_attention(net):
    attn = dict(net.unet.named_modules())[LAYER]
    proc = attn.processor
    lora, s = proc.lora, proc.scale
    h = torch.randn(1, 64, attn.to_q.in_features, generator=torch.Generator().manual_seed(5))
    masks = net.focus_masks
    with torch.no_grad():
        masks.set(None)
        plain = proc(attn, h)
        for value in (0.0, 1.0):  # one label everywhere: the mask changes nothing
            masks.set(torch.full((1, 1, 64, 64), value), (8, 8))
            torch.testing.assert_close(proc(attn, h), plain, rtol=0, atol=1e-6)
        labels = torch.zeros(1, 1, 64, 64)
        labels[..., 24:] = 1  # in focus on the right
        masks.set(labels, (8, 8))
        mixed = proc(attn, h)
        # the official construction of the bias: nearest to 8×8, −100 where labels differ
        lay = torch.nn.functional.interpolate(labels, (8, 8), mode="nearest").view(-1, 64)
        diff = lay.unsqueeze(1) - lay.unsqueeze(2)
        bias = diff.masked_fill(diff != 0, -100.0).masked_fill(diff == 0, 0.0)
        torch.testing.assert_close(masks.bias(64, torch.float32, "cpu")[:, 0], bias)
        official = _official_attention(attn, h, lora, s, bias)
        masks.set(None)
    torch.testing.assert_close(mixed, official, rtol=0, atol=1e-5)
    assert (mixed - plain).abs().max() > 1e-3
    assert proc.masks.bias(64, torch.float32, "cpu") is None


def test_one_step_prediction(folder):
    from diffusers import DDPMScheduler

    cfg = json.loads((folder / "scheduler_config.json").read_text())
    a = nw.alpha_bar(cfg)
    sched = DDPMScheduler.from_config(cfg)
    assert torch.equal(a, sched.alphas_cumprod[999])
    assert abs(a.item() - 0.0046601) < 1e-7
    sched.set_timesteps(1)
    # diffusers 0.25 (official) steps from t=999 to prev_t = 999 − 1000 = −1 (ᾱ_prev = 1);
    # 0.42 looks t up in the timesteps, so list 999 there to get the same −1.
    sched.timesteps = torch.tensor([999])
    g = torch.Generator().manual_seed(0)
    lat, eps = torch.randn(1, 4, 8, 8, generator=g), torch.randn(1, 4, 8, 8, generator=g)
    official = sched.step(eps, torch.tensor([999]), lat, generator=g).prev_sample
    torch.testing.assert_close(nw.predict_x0(lat, eps, a), official, rtol=0, atol=1e-5)


def test_deterministic_and_sensitive(net):
    x, defocus = _inputs(1)
    with torch.no_grad():
        y1, y2 = net(x, defocus), net(x, defocus)
        assert torch.equal(y1, y2)
        s1 = net(x, defocus, generator=torch.Generator().manual_seed(7))
        s2 = net(x, defocus, generator=torch.Generator().manual_seed(7))
        s3 = net(x, defocus, generator=torch.Generator().manual_seed(8))
        assert torch.equal(s1, s2) and not torch.equal(s1, s3) and not torch.equal(s1, y1)
        # the focus labels and the defocus map both reach the output
        all_in = net(x, defocus, torch.ones_like(defocus))
        assert (all_in - y1).abs().max() > 1e-4
        assert (net(x, defocus * 0.5) - y1).abs().max() > 1e-4

"""MagicBokeh (CVPR 2026): one-step diffusion bokeh + restoration, on stock diffusers.

- `safe_pickle`: reads the published ``lora.pkl`` without executing it.
- `convert`: `bokehkit models import magicbokeh` — SD 2.1-base + ``lora.pkl`` → our bundle.
- `bundle`: the bundle's layout, manifest and checks.
- `network`: the pruned UNet, the injector ControlNet and the focus-masked attention,
  built from a bundle.

Everything here needs torch; `safe_pickle` and `bundle` need nothing else, `convert` and
`network` need diffusers and safetensors (requirements/full.txt).
"""

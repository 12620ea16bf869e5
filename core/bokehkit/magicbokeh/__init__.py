"""MagicBokeh (CVPR 2026): one-step diffusion bokeh + restoration, on stock diffusers.

- `safe_pickle`: reads the published ``lora.pkl`` without executing it.
- `convert`: `bokehkit models import magicbokeh` — SD 2.1-base + ``lora.pkl`` → our bundle.
- `bundle`: the bundle's layout, manifest and checks.
- `network`: the pruned UNet, the injector ControlNet, the focus-masked attention and the
  VAE, built from a bundle; one step at t=999.
- `reference`: the official ``inference.py`` pipeline (8-bit depth, lower-median focus,
  512/256 pixel tiles with tent blending, AdaIN), behind ``--reference``.

Everything here needs torch; `safe_pickle` and `bundle` need nothing else, `convert` and
`network` need diffusers and safetensors (requirements/full.txt).
"""

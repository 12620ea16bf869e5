"""MagicBokeh (CVPR 2026): one-step diffusion bokeh + restoration, on stock diffusers.

- `safe_pickle`: reads the published ``lora.pkl`` without executing it.
- `convert`: `bokehkit models import magicbokeh` — SD 2.1-base + ``lora.pkl`` → our bundle.
- `bundle`: the bundle's layout, manifest and checks.
- `network`: the pruned UNet, the injector ControlNet, the focus-masked attention and the
  VAE, built from a bundle; one step at t=999.
- `reference`: the official ``inference.py`` pipeline (8-bit depth, lower-median focus,
  512/256 pixel tiles with tent blending, AdaIN), behind ``--reference``.
- `fast`: the default mode's tiling driver (whole-image tiled VAE, latent tiles), numpy
  only, over "stages": `stages.TorchStages` or `onnx_stages.OnnxStages`.
- `inputs`: what both modes share (8-bit depth, focal value, defocus, colour fix).
- `onnx_export` / `onnx_stages`: ``bokehkit models export-onnx magicbokeh`` and the ONNX
  Runtime stages for the light engine.

Without torch: `inputs`, `fast`, `onnx_stages`, `safe_pickle` and `bundle`. `network`,
`stages`, `reference`, `convert` and `onnx_export` need torch (and diffusers,
safetensors: requirements/full.txt).
"""

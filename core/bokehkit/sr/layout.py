"""RRDBNet's layer names and order, without torch (the ncnn converter needs them)."""

from __future__ import annotations


def conv_order(num_block: int) -> list[str]:
    """The model's convolutions in the order they run (and in which ncnn stores them)."""
    names = ["conv_first"]
    for b in range(num_block):
        for r in (1, 2, 3):
            names += [f"body.{b}.rdb{r}.conv{k}" for k in range(1, 6)]
    return names + ["conv_body", "conv_up1", "conv_up2", "conv_hr", "conv_last"]


def has_activation(name: str) -> bool:
    """Whether a LeakyReLU follows this convolution."""
    if name in ("conv_up1", "conv_up2", "conv_hr"):
        return True
    return name.startswith("body.") and not name.endswith("conv5")

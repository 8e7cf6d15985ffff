"""Squeeze-and-excitation (Hu et al. 2018, "Squeeze-and-Excitation Networks", arXiv:1709.01507)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["SqueezeExcite"]


class SqueezeExcite(nn.Module):
    """Channel gating: global average pool -> 1x1 reduce -> act -> 1x1 expand -> gate -> rescale.

    ``rd_channels`` is the bottleneck width (the paper's C/r). Attribute names ``fc1`` / ``fc2`` follow
    torchvision's ``SqueezeExcitation`` so EfficientNet / MobileNetV3 checkpoints load.
    """

    def __init__(
        self,
        channels: int,
        rd_channels: int,
        act_layer: Callable[..., nn.Module] = nn.ReLU,
        gate_layer: Callable[..., nn.Module] = nn.Sigmoid,
    ) -> None:
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(channels, rd_channels, 1)
        self.fc2 = nn.Conv2d(rd_channels, channels, 1)
        self.activation = act_layer()
        self.scale_activation = gate_layer()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.avgpool(x)  # (B, C, 1, 1)
        s = self.fc2(self.activation(self.fc1(s)))
        return x * self.scale_activation(s)

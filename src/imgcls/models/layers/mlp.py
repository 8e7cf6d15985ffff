"""The transformer MLP block."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["Mlp"]


class Mlp(nn.Sequential):
    """Linear -> act -> dropout -> Linear -> dropout.

    Children ``0`` and ``3`` are the two linear layers, matching torchvision's ``MLPBlock`` (``mlp.0``,
    ``mlp.3``) so ViT / Swin checkpoints load.
    """

    def __init__(
        self,
        in_features: int,
        hidden_features: int,
        out_features: int | None = None,
        act_layer: Callable[..., nn.Module] = nn.GELU,
        drop: float = 0.0,
    ) -> None:
        out_features = out_features or in_features
        super().__init__(
            nn.Linear(in_features, hidden_features),
            act_layer(),
            nn.Dropout(drop),
            nn.Linear(hidden_features, out_features),
            nn.Dropout(drop),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (..., C) -> (..., out)
        return super().forward(x)

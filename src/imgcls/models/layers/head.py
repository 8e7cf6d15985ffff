"""The classifier head shared by the convolutional families: global pool -> dropout -> linear."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["ClassifierHead"]


class ClassifierHead(nn.Module):
    """Global average pool (B, C, H, W) -> (B, C), optional dropout, linear to ``num_classes``.

    ``forward(x, pre_logits=True)`` returns the pooled features, which kNN / linear-probe evaluation uses.
    ``num_classes=0`` gives an identity classifier (a feature extractor).
    """

    def __init__(self, in_features: int, num_classes: int, drop_rate: float = 0.0) -> None:
        super().__init__()
        self.in_features = in_features
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(drop_rate)
        self.fc: nn.Module = nn.Linear(in_features, num_classes) if num_classes > 0 else nn.Identity()

    def reset(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.in_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (B, C, H, W) -> (B, C)
        if pre_logits:
            return x
        return self.fc(self.drop(x))

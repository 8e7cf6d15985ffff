"""A model whose logits are given: each input image holds the index of its row of logits."""

from __future__ import annotations

import torch
from torch import nn


class FixedLogits(nn.Module):
    """Returns preset logits for each input index (the input holds the index)."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = nn.Parameter(logits, requires_grad=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0, 0, 0].long()]

"""Exponential moving average of weights (Polyak and Juditsky 1992; as used by e.g. EfficientNet's training)."""

from __future__ import annotations

import copy

import torch
from torch import nn

__all__ = ["ModelEma"]


class ModelEma(nn.Module):
    """A frozen copy of ``model`` whose parameters follow ``ema = decay * ema + (1 - decay) * param``.

    Buffers (BatchNorm statistics) are copied, not averaged. The effective decay is warmed up as
    ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so the average is not dominated by the random
    initialisation in short runs (the TensorFlow ExponentialMovingAverage ``num_updates`` rule).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        super().__init__()
        self.module = copy.deepcopy(model).eval()
        for p in self.module.parameters():
            p.requires_grad_(False)
        self.decay = decay
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        n = int(self.num_updates)
        d = min(self.decay, (1 + n) / (10 + n))
        ema_params = list(self.module.parameters())
        params = [p.detach() for p in model.parameters()]
        torch._foreach_lerp_(ema_params, params, 1 - d)  # ema += (1 - d) * (p - ema)
        for eb, b in zip(self.module.buffers(), model.buffers()):
            eb.copy_(b)
        self.num_updates += 1

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

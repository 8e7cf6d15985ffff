"""Stochastic depth / drop-path (Huang et al. 2016, "Deep Networks with Stochastic Depth", arXiv:1603.09382)."""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["DropPath", "drop_path", "drop_path_rates"]


def drop_path(x: torch.Tensor, p: float, training: bool) -> torch.Tensor:
    """Zero whole samples of a residual branch with probability ``p`` and rescale the rest by ``1/(1-p)``.

    Identity at evaluation (the rescaling during training makes the expected output match), so no test-time
    correction is needed.
    """
    if p == 0.0 or not training:
        return x
    keep = 1.0 - p
    mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)  # one draw per sample
    return x * mask / keep


class DropPath(nn.Module):
    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return drop_path(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def drop_path_rates(max_rate: float, num_blocks: int) -> list[float]:
    """The paper's linear decay rule: block ``l`` of ``L`` is dropped with probability ``l / L * max_rate``.

    (Huang et al. 2016, Eq. 4, with p_L = 1 - max_rate.) The first block gets ``max_rate / L``, the last
    ``max_rate``.
    """
    if num_blocks <= 0:
        return []
    return [max_rate * (i + 1) / num_blocks for i in range(num_blocks)]

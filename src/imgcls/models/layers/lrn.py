"""Local response normalisation across channels, written as in the AlexNet paper.

Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep Convolutional Neural Networks",
Sec. 3.3: ``b_c = a_c / (k + alpha * sum_{c' = c - n//2}^{c + n//2} a_{c'}^2) ** beta``, the sum running over
the ``n`` neighbouring channels that exist. Used by AlexNet, ZFNet and the original GoogLeNet.

``torch.nn.LocalResponseNorm`` (like Caffe's LRN layer) divides ``alpha`` by ``n``; this module takes
``alpha`` as the paper prints it and multiplies it back, so the paper's constants can be written unchanged.
``groups`` normalises each group of channels on its own: in the paper's two-GPU network a map's neighbours
were the maps on the same GPU only.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["LocalResponseNorm"]


class LocalResponseNorm(nn.Module):
    """Cross-channel LRN with the paper's ``alpha`` (not divided by ``size``), optionally per group."""

    def __init__(
        self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0, groups: int = 1
    ) -> None:
        super().__init__()
        self.size = size
        self.alpha = alpha
        self.beta = beta
        self.k = k
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # F.local_response_norm computes k + (alpha / size) * sum: pass alpha * size for the paper's formula.
        if self.groups == 1:
            return F.local_response_norm(x, self.size, self.alpha * self.size, self.beta, self.k)
        parts = x.chunk(self.groups, dim=1)  # (B, C, H, W) -> groups x (B, C/groups, H, W)
        return torch.cat(
            [F.local_response_norm(p, self.size, self.alpha * self.size, self.beta, self.k) for p in parts], 1
        )

    def extra_repr(self) -> str:
        return f"size={self.size}, alpha={self.alpha}, beta={self.beta}, k={self.k}, groups={self.groups}"

"""Probes: the linear softmax classifier or the MLP of :mod:`imgcls.models.linear`, trained on feature vectors.

Alain and Bengio, "Understanding intermediate layers using linear classifier probes", 2016,
arXiv:1610.01644: a linear classifier trained on frozen features measures how linearly separable they are.
The probe is the same registered model as on pixels (``in_chans = D``, ``input_size = (1, 1)``, so a feature
vector is a 1x1 image of D channels), trained here in a small loop, since the imgcls trainer trains on
image datasets: features standardised with the training set's per-dimension mean and std, AdamW, cosine
learning-rate decay, cross-entropy, no augmentation.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.classic.inputs import as_labels, as_matrix
from imgcls.errors import ConfigError, DataError

__all__ = ["FeatureProbe", "train_probe"]

log = logging.getLogger(__name__)


class FeatureProbe(nn.Module):
    """Standardise ``(N, D)`` features, then a registered pixel model reads them as ``(N, D, 1, 1)``."""

    def __init__(self, model: nn.Module, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.model = model
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = (x - self.mean) / self.std
        return self.model(x[:, :, None, None])  # (N, D) -> (N, D, 1, 1)


def train_probe(
    features: Any,
    labels: Any,
    num_classes: int | None = None,
    model: str = "linear_softmax",
    *,
    epochs: int = 30,
    lr: float = 1e-2,
    weight_decay: float = 1e-4,
    batch_size: int = 256,
    seed: int = 0,
    device: str | torch.device = "cpu",
) -> FeatureProbe:
    """Train a probe on ``(N, D)`` features; returns it in eval mode (logits from ``probe(features)``)."""
    from imgcls.models import create_model

    x = as_matrix(features, "training features").float()
    y, c = as_labels(labels, x.shape[0], num_classes)
    if x.shape[0] == 0:
        raise DataError("the training set is empty")
    if epochs < 1 or batch_size < 1 or not lr > 0:
        raise ConfigError(f"epochs and batch_size must be >= 1 and lr > 0, got {epochs}, {batch_size}, {lr}")
    device = torch.device(device)
    torch.manual_seed(seed)
    mean = x.mean(0)
    std = x.std(0, unbiased=False)
    std = torch.where(std > 0, std, torch.ones_like(std))  # constant features: no scaling
    net = create_model(model, num_classes=c, in_chans=x.shape[1], input_size=(1, 1))
    probe = FeatureProbe(net, mean, std).to(device)
    x, y = x.to(device), y.to(device)
    opt = torch.optim.AdamW(probe.parameters(), lr=lr, weight_decay=weight_decay)
    steps_per_epoch = math.ceil(x.shape[0] / batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs * steps_per_epoch)
    g = torch.Generator().manual_seed(seed)
    probe.train()
    for epoch in range(epochs):
        perm = torch.randperm(x.shape[0], generator=g).to(device)
        total = 0.0
        for i in range(0, x.shape[0], batch_size):
            idx = perm[i : i + batch_size]
            loss = F.cross_entropy(probe(x[idx]), y[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += float(loss.detach()) * idx.numel()
        log.debug("probe epoch %d: loss %.4f", epoch + 1, total / x.shape[0])
    return probe.eval()

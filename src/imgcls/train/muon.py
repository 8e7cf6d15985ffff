"""Muon: SGD-momentum whose update for each weight matrix is orthogonalised (Keller Jordan, 2024).

For a convolution's or linear layer's weight, viewed as a matrix ``(out, in * kh * kw)``, Muon keeps a Nesterov
momentum buffer like SGD and replaces the update by the nearest semi-orthogonal matrix ``U V^T`` (``U S V^T``
the update's SVD), computed approximately by five Newton-Schulz iterations of matrix products. Every direction
of the update then moves by the same amount, however small its gradient: in short runs this learns more per
step than SGD. Keller Jordan introduced it for the airbench CIFAR-10 speedruns (blog post "Muon: An optimizer
for hidden layers in neural networks", 2024; the quintic's coefficients (3.4445, -4.7750, 2.0315) are his).

Muon is for the hidden weight matrices only: the classifier (what ``reset_classifier`` replaces), biases,
normalisation weights and other parameters (embeddings, position tables) take SGD with Nesterov momentum and
the run's weight decay. The Muon weights take no weight decay (the measured setting; Fashion-MNIST, 4 epochs).

Measured (README, "Speed: the main job"; ``quicknet_s`` on Fashion-MNIST, 3 seeds): 5 epochs of Muon reach
SGD's accuracy of 7 (93.07 % against 93.03 %, batch 512); at 4 epochs (batch 256) Muon 93.01 %, SGD at its
best learning rate 92.48 % (2 seeds). The orthogonalisation costs 0.35 G multiply-adds a step for
``quicknet_s`` (five iterations over its seven matrices): 2.4 % of a training step's arithmetic at batch 512,
38 % at batch 32, which is why ``--optimizer auto`` leaves small batches to SGD.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch
from torch import nn

__all__ = ["Muon", "muon_parameter_names", "orthogonalise"]

# Keller Jordan's quintic Newton-Schulz coefficients: five steps push every singular value into about
# [0.68, 1.14] (measured for singular values down to 1/300 of the largest), not exactly to 1, which would need
# more steps for no gain he could measure.
_NS_COEFFS = (3.4445, -4.7750, 2.0315)
_NS_STEPS = 5


def orthogonalise(g: torch.Tensor, steps: int = _NS_STEPS) -> torch.Tensor:
    """About ``U V^T`` for ``g = U S V^T`` (a 2-D matrix), by ``steps`` Newton-Schulz iterations in float32."""
    a, b, c = _NS_COEFFS
    x = g.float() / (g.norm() + 1e-7)  # singular values now at most 1, where the iteration converges
    tall = x.shape[0] > x.shape[1]
    if tall:  # iterate on the smaller Gram matrix
        x = x.T
    for _ in range(steps):  # x <- a x + (b G + c G^2) x, G = x x^T: three products, no other pass over x
        gram = x @ x.T  # (m, m), m = the smaller side
        poly = torch.addmm(gram, gram, gram, beta=b, alpha=c)
        x = torch.addmm(x, poly, x, beta=a)
    return x.T if tall else x


def muon_parameter_names(model: nn.Module, head: Iterable[str] = ()) -> set[str]:
    """The weights of ``model``'s convolutions and linear layers outside ``head`` (parameter names)."""
    head = set(head)
    names = set()
    for mod_name, module in model.named_modules():
        if isinstance(module, (nn.Linear, nn.modules.conv._ConvNd)) and module.weight.requires_grad:
            name = f"{mod_name}.weight" if mod_name else "weight"
            if name not in head:
                names.add(name)
    return names


class Muon(torch.optim.Optimizer):
    """Muon for the parameter groups marked ``"muon": True``, SGD with Nesterov momentum for the others.

    One optimizer, so that learning-rate schedules, checkpoints and gradient clipping see every parameter: a
    group's ``lr`` is Muon's or SGD's as the group says, ``momentum`` likewise. The update of a Muon weight of
    shape ``(out, ...)`` is ``lr * sqrt(max(1, out / fan_in)) * orthogonalise(nesterov momentum)``: the factor
    keeps a tall matrix's update as large per entry as a wide one's.
    """

    def __init__(self, params: Iterable[dict[str, Any]], lr: float, momentum: float = 0.9) -> None:
        super().__init__(params, {"lr": lr, "momentum": momentum, "weight_decay": 0.0, "muon": False})

    @torch.no_grad()
    def step(self, closure: Callable[[], float] | None = None) -> float | None:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            mu, lr = group["momentum"], group["lr"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad
                if not group["muon"] and group["weight_decay"]:
                    grad = grad.add(p, alpha=group["weight_decay"])
                state = self.state[p]
                if "momentum_buffer" not in state:
                    state["momentum_buffer"] = torch.zeros_like(p)
                buf = state["momentum_buffer"]
                buf.mul_(mu).add_(grad)
                update = grad.add(buf, alpha=mu)  # Nesterov
                if group["muon"]:
                    matrix = update.flatten(1)  # (out, in * kh * kw)
                    scale = max(1.0, matrix.shape[0] / matrix.shape[1]) ** 0.5
                    update = orthogonalise(matrix).view_as(p).to(p.dtype) * scale
                p.add_(update, alpha=-lr)
        return loss

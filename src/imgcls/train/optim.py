"""Optimizers and learning-rate schedules.

Weight decay skips normalisation weights and biases by default (every parameter with fewer than two
dimensions): decaying a BatchNorm scale only changes the effective learning rate of the layer before it
(van Laarhoven 2017, arXiv:1706.05350), and the practice is standard since Goyal et al. 2017 (arXiv:1706.02677).
Schedules are per optimizer step, so they are exact for fractional epochs and short runs.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.train.config import TrainConfig
from imgcls.train.finetune import head_parameter_names
from imgcls.train.muon import Muon, muon_parameter_names

__all__ = ["build_optimizer", "build_schedule", "lr_factor"]


def param_groups(
    model: nn.Module,
    weight_decay: float,
    decay_norm_and_bias: bool,
    head: Collection[str] = (),
    head_lr: float | None = None,
    exclude: Collection[str] = (),
) -> list[dict]:
    """Parameters split by weight decay; with ``head_lr``, the ``head`` parameters (names) get their own lr.
    Parameters named in ``exclude`` are left out (another group of the optimizer has them).

    The backbone's groups come first, so ``param_groups[0]["lr"]`` is the base learning rate.
    """
    groups: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if not p.requires_grad or name in exclude:
            continue
        in_head = head_lr is not None and name in head
        decays = p.ndim >= 2 or decay_norm_and_bias
        groups.setdefault((in_head, decays), []).append(p)
    out = []
    for in_head in (False, True):
        for decays in (True, False):
            if params := groups.get((in_head, decays)):
                group = {"params": params, "weight_decay": weight_decay if decays else 0.0}
                if in_head:
                    group["lr"] = head_lr
                out.append(group)
    return out or [{"params": [], "weight_decay": weight_decay}]


def build_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """SGD, AdamW or Muon over ``model``'s trainable parameters; with ``cfg.head_lr_mult`` != 1 the head (what
    ``reset_classifier`` replaces) learns at ``lr * head_lr_mult``: discriminative learning rates.

    Muon takes the weights of the convolutions and linear layers outside the head (at ``cfg.muon_lr``, after
    the SGD groups so that ``param_groups[0]["lr"]`` stays ``cfg.lr``); the other parameters take SGD."""
    if cfg.lr is None:
        raise ConfigError("lr is automatic (None) until the data is known: fill it with auto_settings first")
    if cfg.optimizer == "auto":
        raise ConfigError(
            "optimizer is automatic until the batch size is known: fill it with auto_settings first"
        )
    head: set[str] = set()
    head_lr = None
    if cfg.head_lr_mult != 1:
        head, head_lr = head_parameter_names(model), cfg.lr * cfg.head_lr_mult
    if cfg.optimizer == "muon":
        matrices = muon_parameter_names(model, head or head_parameter_names(model))
        if not matrices:
            raise ConfigError(
                f"optimizer muon trains the weights of convolutions and linear layers, and "
                f"{type(model).__name__} has none outside its classifier: use --optimizer sgd or adamw"
            )
        groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias, head, head_lr, matrices)
        muon_group = {
            "params": [p for n, p in model.named_parameters() if n in matrices],
            "lr": cfg.muon_lr,
            "momentum": cfg.muon_momentum,
            "muon": True,
        }
        return Muon([g for g in groups if g["params"]] + [muon_group], lr=cfg.lr, momentum=cfg.momentum)
    groups = param_groups(model, cfg.weight_decay, cfg.decay_norm_and_bias, head, head_lr)
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            groups, lr=cfg.lr, momentum=cfg.momentum, nesterov=cfg.nesterov and cfg.momentum > 0
        )
    # AdamW: decoupled weight decay (Loshchilov and Hutter 2019, arXiv:1711.05101).
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.momentum, 0.999))


def lr_factor(cfg: TrainConfig, step: int, total_steps: int, steps_per_epoch: float) -> float:
    """Multiplier of the peak lr at optimizer ``step`` (0-based) of ``total_steps``."""
    warmup = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warmup:
        return (step + 1) / (warmup + 1)  # linear warmup, never exactly 0
    floor = cfg.min_lr_ratio
    progress = (step - warmup) / max(1, total_steps - warmup)  # 0 -> 1 after warmup
    if cfg.schedule == "cosine":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))
    if cfg.schedule in ("onecycle", "linear"):
        # One-cycle (Smith and Topin 2017, arXiv:1708.07120) as airbench uses it: linear warmup to the peak,
        # then a linear decay to min_lr_ratio.
        return floor + (1 - floor) * (1 - progress)
    if cfg.schedule == "step":
        epoch = step / steps_per_epoch
        return cfg.step_gamma ** sum(epoch >= m for m in cfg.step_epochs)
    return 1.0  # constant


def build_schedule(
    optimizer: torch.optim.Optimizer,
    cfg: TrainConfig,
    total_steps: int | Callable[[], int],
    steps_per_epoch: float,
) -> torch.optim.lr_scheduler.LambdaLR:
    """The lr schedule over ``total_steps`` optimizer steps; a callable is asked at every step (a run whose
    epochs shrink as it goes, imgcls.train.pruning, plans its length epoch by epoch)."""
    total = total_steps if callable(total_steps) else lambda: total_steps
    fn: Callable[[int], float] = lambda step: lr_factor(cfg, step, total(), steps_per_epoch)  # noqa: E731
    return torch.optim.lr_scheduler.LambdaLR(optimizer, fn)

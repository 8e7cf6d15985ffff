from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from imgcls.train.config import TrainConfig
from imgcls.train.ema import ModelEma
from imgcls.train.optim import build_optimizer, lr_factor


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def test_weight_decay_skips_norm_and_bias() -> None:
    model = _net()
    opt = build_optimizer(model, TrainConfig(lr=0.1, weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {2, 4}
    assert all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    opt = build_optimizer(model, TrainConfig(lr=0.1, weight_decay=0.1, decay_norm_and_bias=True))
    assert len(opt.param_groups) == 1


def test_sgd_nesterov_and_adamw() -> None:
    opt = build_optimizer(_net(), TrainConfig(optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True))
    assert isinstance(opt, torch.optim.SGD) and opt.defaults["nesterov"] is True
    opt = build_optimizer(_net(), TrainConfig(optimizer="adamw", lr=1e-3))
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["lr"] == 1e-3


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "linear", "step", "constant"])
def test_schedules_warm_up_then_follow_their_shape(schedule: str) -> None:
    cfg = TrainConfig(schedule=schedule, warmup_epochs=1, epochs=10, step_epochs=[5.0], step_gamma=0.1)
    total, spe = 100, 10.0
    f = [lr_factor(cfg, s, total, spe) for s in range(total)]
    assert all(0 < v <= 1 + 1e-9 for v in f)
    assert f[:10] == sorted(f[:10]) and f[0] < 0.2  # linear warmup
    if schedule == "cosine":
        assert f[10] == pytest.approx(1.0) and f[-1] < 0.001
        mid = 10 + 45
        assert f[mid] == pytest.approx(0.5 * (1 + math.cos(math.pi * 45 / 90)))
    elif schedule in ("onecycle", "linear"):
        assert f[10] == pytest.approx(1.0) and f[-1] == pytest.approx(1 / 90)
        assert all(a >= b for a, b in zip(f[10:], f[11:]))
    elif schedule == "step":
        assert f[20] == 1.0 and f[60] == pytest.approx(0.1)
    else:
        assert f[50] == 1.0


def test_min_lr_ratio_is_the_floor() -> None:
    cfg = TrainConfig(schedule="cosine", min_lr_ratio=0.1, epochs=1, warmup_epochs=0)
    assert lr_factor(cfg, 99, 100, 100.0) == pytest.approx(0.1, abs=1e-3)


def test_ema_tracks_weights_and_copies_buffers() -> None:
    torch.manual_seed(0)
    model = _net()
    ema = ModelEma(model, decay=0.9)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
        model[1].running_mean.fill_(3.0)
    before = [p.clone() for p in ema.module.parameters()]
    ema.update(model)  # first update uses decay min(0.9, 1/10) = 0.1
    for b, e, p in zip(before, ema.module.parameters(), model.parameters()):
        torch.testing.assert_close(e, 0.1 * b + 0.9 * p)
    assert torch.all(ema.module[1].running_mean == 3.0)
    assert not any(p.requires_grad for p in ema.module.parameters())

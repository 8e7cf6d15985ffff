from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.train.config import TrainConfig
from imgcls.train.ema import ModelEma
from imgcls.train.muon import Muon, orthogonalise
from imgcls.train.optim import build_optimizer, lr_factor


def _net() -> nn.Module:
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.Linear(4, 2))


def test_weight_decay_skips_norm_and_bias() -> None:
    model = _net()
    opt = build_optimizer(model, TrainConfig(optimizer="sgd", lr=0.1, weight_decay=0.1))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert {p.ndim for p in decay["params"]} == {2, 4}
    assert all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(list(model.parameters()))
    opt = build_optimizer(
        model, TrainConfig(optimizer="sgd", lr=0.1, weight_decay=0.1, decay_norm_and_bias=True)
    )
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


# ------------------------------------------------------------------------------------------------- Muon
class _Classifier(nn.Module):
    """A conv, a hidden linear layer, BatchNorm and a classifier that ``reset_classifier`` names."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 12, 3, bias=True)  # a tall matrix: (12, 1 * 3 * 3)
        self.bn = nn.BatchNorm2d(12)
        self.hidden = nn.Linear(12, 5)
        self.fc = nn.Linear(5, 3)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(5, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.bn(self.conv(x)).mean((2, 3))
        return self.fc(torch.relu(self.hidden(x)))


@pytest.mark.parametrize("shape", [(8, 40), (40, 8), (12, 12)])
def test_orthogonalise_keeps_the_singular_vectors_and_evens_the_values(shape: tuple[int, int]) -> None:
    gen = torch.Generator().manual_seed(0)
    k = min(shape)
    u, _ = torch.linalg.qr(torch.randn(shape[0], k, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(shape[1], k, generator=gen, dtype=torch.float64))
    s = torch.logspace(0, -2, k, dtype=torch.float64)  # singular values over two decades
    g = u @ torch.diag(s) @ v.T
    o = orthogonalise(g).double()
    assert o.shape == g.shape
    inner = u.T @ o @ v  # diagonal if o shares g's singular vectors
    diag = inner.diagonal()
    assert (inner - torch.diag(diag)).abs().max() < 1e-4
    # the quintic's band: every direction moves by about the same amount, however small its singular value
    assert diag.min() > 0.6 and diag.max() < 1.25


def test_muon_takes_the_hidden_matrices_and_sgd_the_rest() -> None:
    model = _Classifier()
    cfg = TrainConfig(optimizer="muon", lr=0.3, muon_lr=0.05, muon_momentum=0.7, weight_decay=1e-3)
    opt = build_optimizer(model, cfg)
    assert isinstance(opt, Muon) and opt.param_groups[0]["lr"] == 0.3  # the base lr the log shows
    muon = [g for g in opt.param_groups if g["muon"]]
    assert len(muon) == 1 and muon[0]["lr"] == 0.05 and muon[0]["momentum"] == 0.7
    assert {id(p) for p in muon[0]["params"]} == {id(model.conv.weight), id(model.hidden.weight)}
    sgd = [p for g in opt.param_groups if not g["muon"] for p in g["params"]]
    assert {id(p) for p in sgd} == {id(p) for p in model.parameters()} - {id(p) for p in muon[0]["params"]}
    decayed = [p for g in opt.param_groups if not g["muon"] and g["weight_decay"] for p in g["params"]]
    assert [id(p) for p in decayed] == [id(model.fc.weight)]  # biases and BatchNorm keep no decay
    with pytest.raises(ConfigError, match="optimizer muon"):  # nothing for Muon: a clear refusal
        build_optimizer(_OnlyHead(), cfg)
    with pytest.raises(ConfigError, match="fill it with auto_settings"):  # "auto" needs the batch size first
        build_optimizer(model, TrainConfig(lr=0.3))


class _OnlyHead(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(4, 2)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(4, num_classes)


def test_muon_steps_are_orthogonalised_nesterov_and_sgd_matches_torch() -> None:
    torch.manual_seed(0)
    model = _Classifier()
    twin = _Classifier()
    twin.load_state_dict(model.state_dict())
    cfg = TrainConfig(
        optimizer="muon", lr=0.1, momentum=0.9, muon_lr=0.05, muon_momentum=0.6, weight_decay=1e-2
    )
    opt = build_optimizer(model, cfg)
    rest = [p for n, p in twin.named_parameters() if n not in ("conv.weight", "hidden.weight")]
    reference = torch.optim.SGD(
        [
            {"params": [twin.fc.weight], "weight_decay": 1e-2},
            {"params": [p for p in rest if p is not twin.fc.weight], "weight_decay": 0.0},
        ],
        lr=0.1,
        momentum=0.9,
        nesterov=True,
    )
    conv_before = model.conv.weight.detach().clone()
    x = torch.randn(16, 1, 8, 8)
    grads = []
    for step in range(3):
        for net, o in ((model, opt), (twin, reference)):
            o.zero_grad()
            net(x + step).square().mean().backward()
            o.step()
        with torch.no_grad():  # the twin follows Muon's matrices, so that both see the same gradients
            twin.conv.weight.copy_(model.conv.weight)
            twin.hidden.weight.copy_(model.hidden.weight)
        grads.append(model.conv.weight.grad.clone())
        if step == 0:  # first step from a zero buffer: the Nesterov update is (1 + mu) g, orthogonalised
            matrix = (1.6 * grads[0]).flatten(1)  # (12, 9): tall, its update scaled by sqrt(12 / 9)
            want = conv_before - 0.05 * (12 / 9) ** 0.5 * orthogonalise(matrix).view_as(conv_before)
            assert torch.allclose(model.conv.weight, want, atol=1e-6)
    for n, p in dict(twin.named_parameters()).items():
        if n not in ("conv.weight", "hidden.weight"):
            assert torch.allclose(dict(model.named_parameters())[n], p, atol=1e-6), n

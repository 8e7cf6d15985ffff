"""LeNet-5 specifics: the C3 connection table, the trainable subsampling, the RBF output, 28x28 padding."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from imgcls.errors import ConfigError
from imgcls.models import count_params, create_model
from imgcls.models.lenet import (
    C3_TABLE,
    ConnectionTableConv2d,
    RBFOutput,
    ScaledTanh,
    TrainableSubsample,
    rbf_codes,
)

# Table I of the paper as printed: row = S2 map, column = C3 map, X = connected.
TABLE_I = (
    "X   XXX  XXXX XX",
    "XX   XXX  XXXX X",
    "XXX   XXX  X XXX",
    " XXX  XXXX  X XX",
    "  XXX  XXXX XX X",
    "   XXX  XXXX XXX",
)


def _paper_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return create_model("lenet5", num_classes=10, in_chans=1).eval()


def _c3(model: torch.nn.Module) -> ConnectionTableConv2d:
    (c3,) = [m for m in model.modules() if isinstance(m, ConnectionTableConv2d)]
    return c3


def test_c3_table_is_table_i() -> None:
    from_paper = [{r for r in range(6) if TABLE_I[r][c] == "X"} for c in range(16)]
    assert [set(t) for t in C3_TABLE] == from_paper
    assert sum(len(t) for t in C3_TABLE) == 60


def test_c3_has_1516_parameters_and_sees_only_its_s2_maps() -> None:
    c3 = _c3(_paper_model())
    assert sum(p.numel() for p in c3.parameters()) == 1_516  # 60 kernels of 5x5 + 16 biases
    # Perturb one S2 map at a time: exactly the C3 maps connected to it must change.
    x = torch.randn(1, 6, 14, 14)
    with torch.no_grad():
        base = c3(x)
        for s2_map in range(6):
            x2 = x.clone()
            x2[:, s2_map] += 1.0
            changed = {o for o in range(16) if not torch.allclose(c3(x2)[:, o], base[:, o])}
            assert changed == {o for o, ins in enumerate(C3_TABLE) if s2_map in ins}


def test_lenet5_layer_parameter_counts() -> None:
    model = _paper_model()
    per_layer = [n for n in (sum(p.numel() for p in m.parameters()) for m in model.features) if n]
    assert per_layer == [156, 12, 1_516, 32, 48_120]  # C1, S2, C3, S4, C5 (Sec. II-B)
    assert sum(p.numel() for p in model.f6.parameters()) == 10_164  # F6
    assert count_params(model.head) == 0  # the RBF codes are fixed, not trained
    assert count_params(model) == 60_000


def test_trainable_subsampling_is_coefficient_times_sum_plus_bias() -> None:
    s = TrainableSubsample(2)
    with torch.no_grad():
        s.weight.copy_(torch.tensor([0.5, -2.0]))
        s.bias.copy_(torch.tensor([1.0, 0.25]))
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    y = s(x)
    block_sum = x[0, 0, :2, :2].sum()  # top-left 2x2 block of map 0
    assert y.shape == (1, 2, 2, 2)
    assert torch.isclose(y[0, 0, 0, 0], 0.5 * block_sum + 1.0)
    assert torch.isclose(y[0, 1, 1, 1], -2.0 * x[0, 1, 2:, 2:].sum() + 0.25)


def test_scaled_tanh_constants() -> None:
    f = ScaledTanh()
    y = f(torch.tensor([0.0, 1.0, -1.0, 100.0]))
    torch.testing.assert_close(y[:3], torch.tensor([0.0, 1.0, -1.0]), atol=1e-3, rtol=0)  # f(+-1) ~ +-1
    assert torch.isclose(y[3], torch.tensor(1.7159))  # amplitude A


def test_rbf_codes_are_fixed_pm1_and_equidistant() -> None:
    codes = rbf_codes(10)
    assert codes.shape == (10, 84)
    assert set(codes.unique().tolist()) == {-1.0, 1.0}
    hamming = (codes[:, None, :] != codes[None, :, :]).sum(-1)
    off_diag = hamming[~torch.eye(10, dtype=torch.bool)]
    assert (off_diag == 42).all()  # Hadamard rows: every pair differs in exactly half the bits
    assert torch.equal(rbf_codes(10), codes)  # deterministic
    assert len(torch.unique(rbf_codes(300), dim=0)) == 300  # distinct beyond the 168 Hadamard codes


def test_rbf_output_is_negative_squared_distance() -> None:
    rbf = RBFOutput(84, 10)
    x = torch.randn(3, 84)
    expected = -((x[:, None, :] - rbf.codes[None]) ** 2).sum(-1)
    torch.testing.assert_close(rbf(x), expected)
    # A unit's output is maximal (0) exactly at its own code, so argmax recovers the class.
    assert torch.equal(rbf(rbf.codes).argmax(1), torch.arange(10))
    assert torch.all(rbf(rbf.codes).diagonal() == 0)


def test_reset_classifier_rebuilds_codes() -> None:
    model = _paper_model()
    model.reset_classifier(5)
    assert model.head.codes.shape == (5, 84)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 5)


def test_28x28_input_is_padded_to_32x32_and_larger_rejected() -> None:
    model = _paper_model()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        padded = model(F.pad(x, (2, 2, 2, 2), mode="replicate"))
        torch.testing.assert_close(model(x), padded)
    with pytest.raises(ConfigError, match="32x32"):
        model(torch.randn(1, 1, 36, 36))


def test_modern_reading_is_relu_maxpool_full_c3_linear() -> None:
    model = create_model("lenet5_modern", num_classes=10, in_chans=1)
    kinds = {type(m).__name__ for m in model.modules()}
    assert {"ReLU", "MaxPool2d", "Linear"} <= kinds
    assert not kinds & {"ScaledTanh", "TrainableSubsample", "ConnectionTableConv2d", "RBFOutput"}
    assert count_params(model) == 61_706  # regression pin: counted from this code's layer sizes

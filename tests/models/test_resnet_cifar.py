"""CIFAR ResNets and plain nets: option-A shortcuts, plain == ResNet parameter count, depth, drop-path."""

from __future__ import annotations

import pytest
import torch

from imgcls.errors import ConfigError
from imgcls.models import count_params, create_model, get_model_spec
from imgcls.models.layers import DropPath
from imgcls.models.resnet import BasicBlock
from imgcls.models.resnet_cifar import VARIANTS, CifarResNet, CifarResNetConfig, ZeroPadShortcut

TINY = CifarResNetConfig(8, widths=(4, 8, 16))


def _expected_params(depth: int, num_classes: int = 10) -> int:
    """Weights of a 6n+2 CIFAR ResNet with parameter-free shortcuts, counted from the paper's description."""
    n = (depth - 2) // 6
    total = 3 * 9 * 16 + 2 * 16  # stem conv + BN
    c_in = 16
    for c in (16, 32, 64):
        for _ in range(n):
            total += 9 * c_in * c + 2 * c + 9 * c * c + 2 * c  # two 3x3 convs, two BNs
            c_in = c
    return total + 64 * num_classes + num_classes


@pytest.mark.parametrize("name", [n for n in VARIANTS if n.startswith("cifar_resnet")])
def test_option_a_shortcuts_add_no_parameters(name: str) -> None:
    depth = VARIANTS[name].cfg.depth
    with torch.device("meta"):
        model = create_model(name, num_classes=10)
    shortcuts = [m for m in model.modules() if isinstance(m, ZeroPadShortcut)]
    assert len(shortcuts) == 2  # first block of stages 2 and 3
    assert all(sum(p.numel() for p in s.parameters()) == 0 for s in shortcuts)
    assert count_params(model) == _expected_params(depth) == get_model_spec(name).num_params


@pytest.mark.parametrize("plain,resnet", [("plain20", "cifar_resnet20"), ("plain56", "cifar_resnet56")])
def test_plain_net_is_the_resnet_without_shortcuts(plain: str, resnet: str) -> None:
    with torch.device("meta"):
        p, r = create_model(plain), create_model(resnet)
    assert count_params(p) == count_params(r)
    assert [k for k in p.state_dict()] == [k for k in r.state_dict()]
    blocks = [m for m in p.modules() if isinstance(m, BasicBlock)]
    assert blocks and all(not b.residual and b.downsample is None for b in blocks)


def test_zero_pad_shortcut_subsamples_and_appends_zero_channels() -> None:
    x = torch.randn(2, 3, 7, 7)
    y = ZeroPadShortcut(3, 8, stride=2)(x)
    assert y.shape == (2, 8, 4, 4)  # ceil(7 / 2) = 4, the stride-2 conv's output size
    torch.testing.assert_close(y[:, :3], x[:, :, ::2, ::2])
    assert y[:, 3:].abs().sum() == 0


def test_residual_and_plain_blocks_differ_only_by_the_shortcut() -> None:
    torch.manual_seed(0)
    res = BasicBlock(4, 4).eval()
    plain = BasicBlock(4, 4, residual=False).eval()
    plain.load_state_dict(res.state_dict())
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        for b in (res, plain):
            b.bn2.weight.zero_()
            b.bn2.bias.zero_()  # the residual branch now outputs 0
        torch.testing.assert_close(res(x), torch.relu(x))
        assert plain(x).abs().sum() == 0


def test_stage_resolutions_on_cifar_and_fashion_mnist() -> None:
    model = CifarResNet(TINY, num_classes=10, in_chans=1).eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 16, 7, 7)
        model = CifarResNet(TINY, num_classes=10).eval()
        assert model.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 16, 8, 8)


@pytest.mark.parametrize("depth", [7, 21, 2])
def test_depth_must_be_6n_plus_2(depth: int) -> None:
    with pytest.raises(ConfigError, match="6n"):
        CifarResNet(CifarResNetConfig(depth))


def test_plain_nets_refuse_stochastic_depth() -> None:
    with pytest.raises(ConfigError, match="shortcuts"):
        create_model("plain20", drop_path_rate=0.1)


def test_drop_path_rates_decay_linearly() -> None:
    with torch.device("meta"):
        model = create_model("cifar_resnet110", drop_path_rate=0.5)  # Huang et al.: p_L = 0.5 on ResNet-110
    rates = [b.drop_path.p for b in model.modules() if isinstance(b, BasicBlock)]
    assert len(rates) == 54
    assert rates == pytest.approx([0.5 * (i + 1) / 54 for i in range(54)])
    assert rates[-1] == pytest.approx(0.5)


def test_drop_path_is_identity_at_eval() -> None:
    torch.manual_seed(0)
    dropped = CifarResNet(TINY, drop_path_rate=0.5)
    plain = CifarResNet(TINY)
    plain.load_state_dict(dropped.state_dict())
    assert any(isinstance(m, DropPath) for m in dropped.modules())
    x = torch.randn(4, 3, 32, 32)
    dropped.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropped(x), plain(x))

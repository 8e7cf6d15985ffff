"""Pre-activation ResNet: BN-ReLU-conv order, clean identity path, projections, final BN-ReLU, drop-path."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgcls.models import count_params, create_model, get_model_spec
from imgcls.models.preact_resnet import PreActBasicBlock, PreActResNet, PreActResNetConfig

TINY = PreActResNetConfig(layers=(1, 2, 1), widths=(4, 8, 16), stem_width=4)


def test_parameter_count_with_and_without_the_final_bn() -> None:
    with torch.device("meta"):
        model = create_model("preact_resnet18", num_classes=10)
        common = PreActResNet(PreActResNetConfig(final_norm=False), num_classes=10)
    # The registered form has the paper's final BN-ReLU (Sec. 4) ...
    assert count_params(model) == get_model_spec("preact_resnet18").num_params == 11_172_170
    assert isinstance(model.norm, nn.BatchNorm2d) and isinstance(model.act, nn.ReLU)
    # ... one 512-channel BN (2 x 512 parameters) more than the widely copied CIFAR form without it.
    assert count_params(common) == 11_171_146 == count_params(model) - 2 * 512
    assert isinstance(common.norm, nn.Identity)
    assert "norm.weight" in model.state_dict() and "norm.weight" not in common.state_dict()


def test_projection_shortcuts_only_where_the_shape_changes() -> None:
    with torch.device("meta"):
        model = create_model("preact_resnet18")
    blocks = [b for b in model.modules() if isinstance(b, PreActBasicBlock)]
    assert len(blocks) == 8
    has_proj = [b.shortcut is not None for b in blocks]
    assert has_proj == [False, False, True, False, True, False, True, False]
    for b in blocks:
        if b.shortcut is not None:
            assert b.shortcut.kernel_size == (1, 1) and b.shortcut.bias is None


def test_identity_path_is_clean() -> None:
    """With the residual branch switched off a block is exactly the identity: nothing follows the addition."""
    torch.manual_seed(0)
    block = PreActBasicBlock(4, 4).eval()
    with torch.no_grad():
        block.conv2.weight.zero_()
        x = torch.randn(2, 4, 5, 5)
        torch.testing.assert_close(block(x), x)  # x has negative entries: no ReLU after the sum


def test_pre_activation_feeds_the_first_conv_and_the_projection() -> None:
    torch.manual_seed(0)
    block = PreActBasicBlock(4, 8, stride=2).eval()
    seen: dict[str, torch.Tensor] = {}
    block.conv1.register_forward_hook(lambda m, i, o: seen.__setitem__("conv1", i[0]))
    block.shortcut.register_forward_hook(lambda m, i, o: seen.__setitem__("shortcut", i[0]))
    x = torch.randn(2, 4, 6, 6)
    with torch.no_grad():
        block(x)
        pre = torch.relu(block.bn1(x))
    torch.testing.assert_close(seen["conv1"], pre)
    torch.testing.assert_close(seen["shortcut"], pre)


def test_first_block_splits_after_the_activation() -> None:
    torch.manual_seed(0)
    model = PreActResNet(TINY).eval()
    first = model.stages[0][0]
    assert first.preact_shortcut and first.shortcut is None
    assert not any(
        b.preact_shortcut for b in model.modules() if isinstance(b, PreActBasicBlock) and b is not first
    )
    with torch.no_grad():
        first.conv2.weight.zero_()
        x = torch.randn(2, 4, 6, 6)
        torch.testing.assert_close(first(x), torch.relu(first.bn1(x)))


def test_final_bn_relu_before_pooling() -> None:
    torch.manual_seed(0)
    model = create_model("preact_resnet18", num_classes=3, in_chans=1).eval()
    seen: dict[str, torch.Tensor] = {}
    model.norm.register_forward_hook(lambda m, i, o: seen.__setitem__("norm_in", i[0]))
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 1, 28, 28))
        assert feats.shape == (2, 512, 4, 4)  # 28 -> 28 -> 14 -> 7 -> 4
        assert seen["norm_in"].min() < 0  # the last addition has negative entries ...
        torch.testing.assert_close(feats, torch.relu(model.norm(seen["norm_in"])))  # ... BN-ReLU'd to pool


def test_drop_path_rates_decay_linearly_and_vanish_at_eval() -> None:
    torch.manual_seed(0)
    dropped = PreActResNet(TINY, drop_path_rate=0.3)
    rates = [b.drop_path.p for b in dropped.modules() if isinstance(b, PreActBasicBlock)]
    assert rates == pytest.approx([0.3 * (i + 1) / 4 for i in range(4)])
    plain = PreActResNet(TINY)
    plain.load_state_dict(dropped.state_dict())
    dropped.eval()
    plain.eval()
    x = torch.randn(4, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(dropped(x), plain(x))

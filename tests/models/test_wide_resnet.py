"""Wide ResNet specifics: block types, the depth rule, dropout between the convolutions, shortcuts."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models import count_params, create_model, get_model_spec
from imgcls.models.wide_resnet import WideBlock, WideResNet, WideResNetConfig, wide_resnet


def _branch_convs(block: WideBlock) -> list[nn.Conv2d]:
    return [m for m in block.branch if isinstance(m, nn.Conv2d)]


@pytest.mark.parametrize(
    "block_type,kernels",
    [
        ("B(3,3)", [3, 3]),
        ("B(3,1,3)", [3, 1, 3]),
        ("B(1,3,1)", [1, 3, 1]),
        ("B(1,3)", [1, 3]),
        ("B(3,1)", [3, 1]),
        ("B(3,1,1)", [3, 1, 1]),
    ],
)
def test_block_type_kernel_sizes_in_order(block_type: str, kernels: list[int]) -> None:
    model = wide_resnet(10, 2, block_type)  # one block per group
    blocks = [b for stage in model.stages for b in stage]
    assert len(blocks) == 3
    for block in blocks:
        convs = _branch_convs(block)
        assert [c.kernel_size for c in convs] == [(k, k) for k in kernels]
        assert all(c.out_channels == convs[0].out_channels for c in convs)  # no bottleneck inside a block
    # The downsampling block strides its first 3x3 convolution (module docstring) and its shortcut.
    down = _branch_convs(blocks[1])
    first_3x3 = kernels.index(3)
    assert [c.stride for c in down] == [(2, 2) if i == first_3x3 else (1, 1) for i in range(len(kernels))]
    assert blocks[1].shortcut is not None and blocks[1].shortcut.stride == (2, 2)
    x = torch.randn(2, 3, 16, 16)
    assert model.forward_features(x).shape == (2, 128, 4, 4)


@pytest.mark.parametrize(
    "depth,block_type,n", [(16, "B(3,3)", 2), (28, "B(3,3)", 4), (40, "B(1,3,1)", 6), (22, "B(3,1,3)", 3)]
)
def test_depth_rule_gives_n_blocks_per_group(depth: int, block_type: str, n: int) -> None:
    with torch.device("meta"):
        model = wide_resnet(depth, 1, block_type)
    assert [len(stage) for stage in model.stages] == [n, n, n]
    assert model.cfg.blocks_per_group == (depth - 4) // 6 == n


def test_builder_matches_registered_wrn28_10() -> None:
    spec = get_model_spec("wrn28_10")
    with torch.device("meta"):
        model = wide_resnet(28, 10)
    assert count_params(model) == spec.num_params == 36_479_194  # regression pin; the paper prints 36.5M
    assert model.num_features == 640


@pytest.mark.parametrize(
    "depth,fix", [(27, "use depth 22 or 28"), (8, "use depth 10"), (29, "use depth 28 or 34")]
)
def test_bad_depth_raises_config_error_naming_the_fix(depth: int, fix: str) -> None:
    with pytest.raises(ConfigError, match="6n \\+ 4") as err:
        wide_resnet(depth, 4)
    assert fix in str(err.value)
    with pytest.raises(ConfigError, match=fix):  # the same check through the registry
        create_model("wrn28_10", num_classes=10, depth=depth)


def test_unknown_block_type_lists_the_choices() -> None:
    with pytest.raises(ConfigError, match=r"B\(3,1,3\)"):
        wide_resnet(16, 2, "B(5,5)")


def test_dropout_sits_between_convolutions_and_acts_only_in_training() -> None:
    model = wide_resnet(10, 1, "B(3,1,3)", dropout=0.5)
    for stage in model.stages:
        for block in stage:
            layers = list(block.branch)
            drops = [i for i, m in enumerate(layers) if isinstance(m, nn.Dropout)]
            assert len(drops) == 2  # one before each convolution after the first
            for i in drops:
                assert layers[i].p == 0.5
                assert isinstance(layers[i + 1], nn.Conv2d) and isinstance(layers[i - 1], nn.ReLU)
                assert any(isinstance(m, nn.Conv2d) for m in layers[:i])
    x = torch.randn(4, 3, 8, 8)
    torch.manual_seed(0)
    model.train()
    a, b = model(x), model(x)
    assert not torch.allclose(a, b)  # random masks: BatchNorm alone is deterministic in training mode
    model.eval()
    torch.testing.assert_close(model(x), model(x))
    no_drop = WideResNet(WideResNetConfig(10, 1, "B(3,1,3)", dropout=0.0)).train()
    torch.testing.assert_close(no_drop(x), no_drop(x))


def test_create_model_overrides_dropout() -> None:
    with torch.device("meta"):
        model = create_model("wrn16_4", num_classes=10, dropout=0.3)
    ps = {m.p for stage in model.stages for b in stage for m in b.branch if isinstance(m, nn.Dropout)}
    assert ps == {0.3}


def test_identity_shortcut_only_when_shape_is_kept() -> None:
    with torch.device("meta"):
        k1 = wide_resnet(16, 1)
        k2 = wide_resnet(16, 2)
    # k = 1: the first group keeps 16 channels and the resolution -> identity; later groups project.
    identity_k1 = [b.shortcut is None for stage in k1.stages for b in stage]
    identity_k2 = [b.shortcut is None for stage in k2.stages for b in stage]
    assert identity_k1 == [True, True, False, True, False, True]
    assert identity_k2 == [False, True, False, True, False, True]


def test_grayscale_28px_runs() -> None:
    model = wide_resnet(10, 1, num_classes=10, in_chans=1).eval()
    with torch.no_grad():
        assert model.forward_features(torch.randn(2, 1, 28, 28)).shape == (2, 64, 7, 7)

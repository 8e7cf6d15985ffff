"""Channel shuffle, ShuffleNet v1 (Table 1, released-code layout) and ShuffleNet V2 (torchvision's layout)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models import create_model, get_model_spec
from imgcls.models import shufflenet as v1
from imgcls.models import shufflenetv2 as v2
from imgcls.models.layers.shuffle import ChannelShuffle, channel_shuffle, channel_unshuffle

from .conftest import layout, torchvision_layout

# --- channel shuffle ------------------------------------------------------------------------------------


def _channel_ids(channels: int) -> torch.Tensor:
    """(1, C, 2, 2) whose channel c holds the value c everywhere, so a permutation can be read off."""
    return (
        torch.arange(channels, dtype=torch.float32).view(1, channels, 1, 1).expand(1, channels, 2, 2).clone()
    )


@pytest.mark.parametrize("channels,groups", [(6, 2), (6, 3), (12, 4), (24, 8), (5, 1)])
def test_channel_shuffle_is_a_permutation_and_unshuffle_inverts_it(channels: int, groups: int) -> None:
    x = _channel_ids(channels)
    y = channel_shuffle(x, groups)
    perm = y[0, :, 0, 0].long()
    assert sorted(perm.tolist()) == list(range(channels))  # a permutation: nothing lost or repeated
    assert torch.equal(y, x[:, perm])  # whole channels move, the spatial content is untouched
    n = channels // groups
    # Sec. 3.1: reshape to (g, n), transpose, flatten, so output j * g + i reads input i * n + j.
    assert perm.tolist() == [i * n + j for j in range(n) for i in range(groups)]
    assert torch.equal(channel_unshuffle(y, groups), x)
    assert torch.equal(channel_shuffle(y, n), x)  # the inverse is the same reshape read the other way round
    assert torch.equal(ChannelShuffle(groups)(x), y)


def test_channel_shuffle_example_and_bad_groups() -> None:
    assert channel_shuffle(_channel_ids(6), 2)[0, :, 0, 0].tolist() == [0, 3, 1, 4, 2, 5]
    with pytest.raises(ConfigError, match="7 channels"):
        channel_shuffle(torch.zeros(1, 7, 2, 2), 2)


# --- ShuffleNet v1 --------------------------------------------------------------------------------------


@pytest.mark.parametrize("groups", [1, 2, 3, 4, 8])
def test_v1_table_1_columns(groups: int) -> None:
    """Stage widths of Table 1's column g; only stage 2's first pointwise conv is ungrouped (Sec. 3.3)."""
    with torch.device("meta"):
        model = create_model(f"shufflenet_v1_g{groups}_1_0")
    units = [u for stage in model.stages for u in stage]
    assert len(units) == 16  # Table 1 "Repeat": 1 + 3, 1 + 7, 1 + 3
    assert [stage[-1].conv2[0].out_channels for stage in model.stages] == list(v1.STAGE_WIDTHS[groups])
    assert model.num_features == v1.STAGE_WIDTHS[groups][-1]
    assert [u.conv1[0].groups for u in units] == [1] + [groups] * 15
    assert all(u.conv2[0].groups == groups for u in units)
    assert all(u.dwconv[0].groups == u.dwconv[0].in_channels for u in units)  # depthwise
    assert all(
        u.conv1[0].out_channels * 4 == stage[-1].conv2[0].out_channels
        for stage in model.stages
        for u in stage
    )
    assert model.fc.bias is None  # the released code's classifier has no bias


@pytest.mark.parametrize(
    "name,millions",
    [
        ("shufflenet_v1_g3_0_5", 0.7),
        ("shufflenet_v1_g3_1_0", 1.9),
        ("shufflenet_v1_g3_1_5", 3.4),
        ("shufflenet_v1_g3_2_0", 5.4),
        ("shufflenet_v1_g8_1_0", 2.4),
    ],
)
def test_v1_counts_round_to_released_readme(name: str, millions: float) -> None:
    assert round(get_model_spec(name).num_params / 1e6, 1) == millions


def test_v1_unit_shapes_and_small_input() -> None:
    torch.manual_seed(0)
    unit = v1.ShuffleUnit(24, 240, stride=2, groups=3, group_first=False).eval()
    x = torch.randn(2, 24, 8, 8).relu()
    with torch.no_grad():
        y = unit(x)
    assert y.shape == (2, 240, 4, 4)  # concatenation: 24 pooled input channels + 216 from the branch
    torch.testing.assert_close(y[:, :24], nn.functional.avg_pool2d(x, 3, 2, 1))  # ReLU of a non-negative pool
    with pytest.raises(ConfigError, match="divisible by groups"):
        v1.ShuffleUnit(24, 100, stride=2, groups=3)
    with torch.device("meta"):
        small = create_model("shufflenet_v1_g3_1_0", num_classes=10, in_chans=1, image_size=28)
        assert small.forward_features(torch.empty(2, 1, 32, 32)).shape == (2, 960, 4, 4)  # total stride 8


# --- ShuffleNet V2 --------------------------------------------------------------------------------------


def test_v2_torchvision_layout() -> None:
    expected = torchvision_layout("shufflenet_v2_x1_0")
    for image_size in (None, 32):  # the small-input form changes strides only
        with torch.device("meta"):
            model = create_model("shufflenet_v2_x1_0", image_size=image_size)
        assert layout(model) == expected


def test_v2_stride_1_unit_keeps_the_first_half() -> None:
    """Channel split: half the channels skip the branch, then the shuffle interleaves the halves."""
    torch.manual_seed(0)
    unit = v2.InvertedResidual(8, 8, stride=1).eval()
    x = torch.randn(2, 8, 5, 5)
    with torch.no_grad():
        y = unit(x)
    torch.testing.assert_close(y[:, 0::2], x[:, :4])  # shuffle with 2 groups: even outputs are the kept half
    assert len(unit.branch1) == 0  # no parameters on the shortcut path


def test_v2_small_input_form() -> None:
    torch.manual_seed(0)
    model = create_model("shufflenet_v2_x0_5", num_classes=10, in_chans=1, image_size=28).eval()
    x = torch.randn(2, 1, 28, 28)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, 1024, 4, 4)  # 28 -> 14 -> 7 -> 4: total stride 8
        assert model(x).shape == (2, 10)

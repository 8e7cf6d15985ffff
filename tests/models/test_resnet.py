"""ResNet, ResNeXt, WRN, SE-ResNet: torchvision layout, v1.5 stride, SE placement, stochastic depth, FLOPs."""

from __future__ import annotations

import dataclasses

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgcls.analysis import count_flops
from imgcls.models import count_params, create_model
from imgcls.models.layers import DropPath
from imgcls.models.resnet import VARIANTS, BasicBlock, Bottleneck, ResNet, ResNetConfig

from .conftest import layout, torchvision_layout

TINY = ResNetConfig("basic", (1, 2, 1, 1), widths=(4, 8, 8, 16), stem_width=4)
TINY_BOTTLENECK = ResNetConfig("bottleneck", (1, 2, 1, 1), widths=(4, 8, 8, 16), stem_width=8, groups=2)


def _bn(prefix: str, c: int) -> list[tuple[str, list[int]]]:
    return [(f"{prefix}.{s}", [c]) for s in ("weight", "bias", "running_mean", "running_var")] + [
        (f"{prefix}.num_batches_tracked", [])
    ]


def _torchvision_bottleneck_layout(
    layers: tuple[int, ...], width_mult: int = 1
) -> list[tuple[str, list[int]]]:
    """torchvision's ResNet-50/101/152 state_dict layout, written out from its naming rules."""
    out = [("conv1.weight", [64, 3, 7, 7]), *_bn("bn1", 64)]
    in_chs = 64
    for i, (n, planes) in enumerate(zip(layers, (64, 128, 256, 512), strict=True)):
        w = planes * width_mult
        for j in range(n):
            p = f"layer{i + 1}.{j}"
            out += [(f"{p}.conv1.weight", [w, in_chs, 1, 1]), *_bn(f"{p}.bn1", w)]
            out += [(f"{p}.conv2.weight", [w, w, 3, 3]), *_bn(f"{p}.bn2", w)]
            out += [(f"{p}.conv3.weight", [planes * 4, w, 1, 1]), *_bn(f"{p}.bn3", planes * 4)]
            if j == 0:
                out += [
                    (f"{p}.downsample.0.weight", [planes * 4, in_chs, 1, 1]),
                    *_bn(f"{p}.downsample.1", planes * 4),
                ]
            in_chs = planes * 4
    return out + [("fc.weight", [1000, 2048]), ("fc.bias", [1000])]


def test_resnet18_state_dict_is_torchvision_layout() -> None:
    with torch.device("meta"):
        model = create_model("resnet18")
    assert layout(model) == torchvision_layout("resnet18")


@pytest.mark.parametrize("name,width_mult", [("resnet50", 1), ("resnet101", 1), ("wide_resnet50_2", 2)])
def test_bottleneck_state_dict_is_torchvision_layout(name: str, width_mult: int) -> None:
    with torch.device("meta"):
        model = create_model(name)
    assert layout(model) == _torchvision_bottleneck_layout(VARIANTS[name].cfg.layers, width_mult)


def test_resnext_groups_the_3x3_conv() -> None:
    with torch.device("meta"):
        model = create_model("resnext50_32x4d")
    conv = model.layer1[0].conv2
    assert conv.groups == 32 and list(conv.weight.shape) == [128, 4, 3, 3]  # 32 groups of d = 4 channels
    assert list(model.layer4[0].conv2.weight.shape) == [1024, 32, 3, 3]
    # Same keys as ResNet-50, different shapes only in the grouped bottleneck.
    with torch.device("meta"):
        r50 = create_model("resnet50")
    assert list(model.state_dict()) == list(r50.state_dict())


def test_v15_strides_the_3x3_conv_and_v1_the_1x1() -> None:
    with torch.device("meta"):
        v15 = create_model("resnet50")
        v1 = ResNet(dataclasses.replace(VARIANTS["resnet50"].cfg, stride_in_1x1=True))
        se = create_model("seresnet50")
    assert v15.layer2[0].conv1.stride == (1, 1) and v15.layer2[0].conv2.stride == (2, 2)
    assert v1.layer2[0].conv1.stride == (2, 2) and v1.layer2[0].conv2.stride == (1, 1)
    assert se.layer3[0].conv1.stride == (2, 2)  # SE-ResNet-50 in its paper's (v1) form
    assert count_params(v1) == count_params(v15)


@pytest.mark.parametrize("name,paper", [("resnet50", 3.8), ("resnet152", 11.3)])
def test_paper_form_matches_table1_flops(name: str, paper: float) -> None:
    # He et al. 2015, Table 1 ("FLOPs" = multiply-adds), for the stride-on-1x1 bottleneck.
    with torch.device("meta"):
        model = ResNet(dataclasses.replace(VARIANTS[name].cfg, stride_in_1x1=True))
    assert count_flops(model, (3, 224, 224)) / 2e9 == pytest.approx(paper, rel=0.02)


def test_seresnet50_adds_exactly_the_se_parameters() -> None:
    with torch.device("meta"):
        se, plain = create_model("seresnet50"), create_model("resnet50")
    se_params = sum(p.numel() for n, p in se.named_parameters() if ".se." in n)
    # Per bottleneck with C output channels: C*C/16 + C/16 (fc1) + C/16*C + C (fc2).
    expected = sum(
        n * (2 * c * c // 16 + c // 16 + c) for n, c in zip((3, 4, 6, 3), (256, 512, 1024, 2048), strict=True)
    )
    assert se_params == expected == 2_530_992
    assert count_params(se) - count_params(plain) == se_params
    assert (
        count_params(se) == 28_088_024
    )  # regression pin: torchvision's ResNet-50 count + the SE count above


def test_se_gates_the_residual_branch_before_the_addition() -> None:
    torch.manual_seed(0)
    block = Bottleneck(16, 4, se_reduction=4).eval()
    with torch.no_grad():
        block.se.fc2.bias.fill_(-1e4)  # gate = sigmoid(-1e4) = 0: the branch is switched off
        x = torch.randn(2, 16, 5, 5)
        # If SE sat after the addition, the output would be 0; on the branch, only the shortcut is left.
        torch.testing.assert_close(block(x), torch.relu(x))


def _reference_forward(sd: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    """torchvision's ResNet function, written from its definition with functional ops on a state dict."""

    def bn(p: str, t: torch.Tensor) -> torch.Tensor:
        return F.batch_norm(
            t, sd[f"{p}.running_mean"], sd[f"{p}.running_var"], sd[f"{p}.weight"], sd[f"{p}.bias"]
        )

    x = F.relu(bn("bn1", F.conv2d(x, sd["conv1.weight"], stride=2, padding=3)))
    x = F.max_pool2d(x, 3, 2, 1)
    for stage in range(1, 5):
        j = 0
        while f"layer{stage}.{j}.conv1.weight" in sd:
            p = f"layer{stage}.{j}"
            stride = 2 if stage > 1 and j == 0 else 1
            if f"{p}.conv3.weight" in sd:  # bottleneck, stride on the 3x3 conv
                out = F.relu(bn(f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"])))
                w2 = sd[f"{p}.conv2.weight"]
                groups = out.shape[1] // w2.shape[1]
                out = F.relu(bn(f"{p}.bn2", F.conv2d(out, w2, stride=stride, padding=1, groups=groups)))
                out = bn(f"{p}.bn3", F.conv2d(out, sd[f"{p}.conv3.weight"]))
            else:
                out = F.relu(bn(f"{p}.bn1", F.conv2d(x, sd[f"{p}.conv1.weight"], stride=stride, padding=1)))
                out = bn(f"{p}.bn2", F.conv2d(out, sd[f"{p}.conv2.weight"], padding=1))
            if f"{p}.downsample.0.weight" in sd:
                x = bn(f"{p}.downsample.1", F.conv2d(x, sd[f"{p}.downsample.0.weight"], stride=stride))
            x = F.relu(out + x)
            j += 1
    return F.linear(x.mean((2, 3)), sd["fc.weight"], sd["fc.bias"])


@pytest.mark.parametrize("cfg", [TINY, TINY_BOTTLENECK], ids=["basic", "bottleneck"])
def test_forward_computes_torchvisions_function(cfg: ResNetConfig) -> None:
    torch.manual_seed(0)
    model = ResNet(cfg, num_classes=5)
    for m in model.modules():  # non-trivial BN statistics, so a misplaced BN would show
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 1.5)
            nn.init.uniform_(m.weight, 0.5, 1.5)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(model(x), _reference_forward(model.state_dict(), x))


def test_small_input_stem() -> None:
    model = ResNet(TINY, num_classes=3, in_chans=1, small_input=True).eval()
    assert model.conv1.kernel_size == (3, 3) and model.conv1.stride == (1, 1)
    assert isinstance(model.maxpool, nn.Identity)
    with torch.no_grad():
        feats = model.forward_features(torch.randn(2, 1, 28, 28))
    assert feats.shape == (2, 16, 4, 4)  # 28 -> 28 -> 14 -> 7 -> 4 instead of 1x1
    big = ResNet(TINY, num_classes=3).eval()
    with torch.no_grad():
        assert big.forward_features(torch.randn(2, 3, 32, 32)).shape == (2, 16, 1, 1)


def test_zero_init_residual_zeroes_the_last_bn_of_every_block() -> None:
    for cfg, last in ((TINY, "bn2"), (TINY_BOTTLENECK, "bn3")):
        model = ResNet(cfg, zero_init_residual=True)
        blocks = [m for m in model.modules() if isinstance(m, (BasicBlock, Bottleneck))]
        assert len(blocks) == 5
        assert all(getattr(b, last).weight.abs().sum() == 0 for b in blocks)
        assert all(b.bn1.weight.eq(1).all() for b in blocks)
    assert all(b.bn2.weight.eq(1).all() for b in ResNet(TINY).modules() if isinstance(b, BasicBlock))


def test_drop_path_rates_decay_linearly_over_all_blocks() -> None:
    with torch.device("meta"):
        model = create_model("resnet50", drop_path_rate=0.2)
    rates = [m.drop_path.p for m in model.modules() if isinstance(m, Bottleneck)]
    assert len(rates) == 16
    assert rates == pytest.approx([0.2 * (i + 1) / 16 for i in range(16)])  # Huang et al. 2016, Eq. 4
    assert all(isinstance(m.drop_path, DropPath) for m in model.modules() if isinstance(m, Bottleneck))


def test_drop_path_is_identity_at_eval_and_random_in_training() -> None:
    torch.manual_seed(0)
    dropped = ResNet(TINY, num_classes=4, drop_path_rate=0.5)
    plain = ResNet(TINY, num_classes=4)
    plain.load_state_dict(dropped.state_dict())  # drop-path holds no state
    x = torch.randn(8, 3, 32, 32)
    dropped.eval()
    plain.eval()
    with torch.no_grad():
        torch.testing.assert_close(dropped(x), plain(x))
    dropped.train()
    with torch.no_grad():
        a, b = dropped(x), dropped(x)
    assert not torch.allclose(a, b)


def test_bad_configs_raise_clear_errors() -> None:
    from imgcls.errors import ConfigError

    with pytest.raises(ConfigError, match="groups"):
        ResNet(ResNetConfig("basic", (1, 1, 1, 1), groups=3))  # 64 channels do not split into 3 groups
    with pytest.raises(ConfigError, match="drop_path_rate"):
        ResNet(TINY, drop_path_rate=1.0)
    with pytest.raises(ConfigError, match="no argument 'small_inputs'.*small_input"):
        create_model("resnet18", small_inputs=True)  # the error lists the names that are valid


@pytest.mark.parametrize("name", ["resnet18", "resnet34"])
def test_plain_net_is_the_residual_net_without_its_shortcuts(name: str) -> None:
    """The degradation comparison's plain nets (He et al. 2015, Table 2): same layers, no shortcut at all."""
    with torch.device("meta"):
        residual = create_model(name)
        plain = create_model(name, residual=False)
    projections = sum(
        count_params(b.downsample) for b in residual.modules() if getattr(b, "downsample", None)
    )
    assert projections == 173_824  # three 1x1 conv + BN, into 128, 256 and 512 channels
    # The paper's plain nets have no projection either: the residual net's parameters minus them, which its
    # option-A (zero-padding) residual nets match exactly.
    assert count_params(plain) == count_params(residual) - projections
    assert [n for n, _ in plain.named_parameters()] == [
        n for n, _ in residual.named_parameters() if ".downsample." not in n
    ]


def test_plain_net_adds_no_identity() -> None:
    """Silence every block's last BN: a residual net still carries the stem's signal along its identities, a
    plain net outputs zeros (nothing is added after the branch)."""
    torch.manual_seed(0)
    x = torch.randn(2, 3, 32, 32)
    out = {}
    for residual in (True, False):
        model = ResNet(dataclasses.replace(TINY, residual=residual), num_classes=3).eval()
        blocks = [m for m in model.modules() if isinstance(m, BasicBlock)]
        assert all(b.residual is residual for b in blocks)
        with torch.no_grad():
            for b in blocks:
                b.bn2.weight.zero_()
                b.bn2.bias.zero_()
            out[residual] = model.forward_features(x)
    assert out[True].abs().sum() > 0
    assert not out[False].any()


def test_plain_nets_refuse_what_needs_a_residual_branch() -> None:
    from imgcls.errors import ConfigError

    plain = dataclasses.replace(TINY, residual=False)
    with pytest.raises(ConfigError, match="basic blocks only"):
        ResNet(dataclasses.replace(TINY_BOTTLENECK, residual=False))
    with pytest.raises(ConfigError, match="plain net"):
        ResNet(plain, drop_path_rate=0.1)
    with pytest.raises(ConfigError, match="plain net"):
        ResNet(plain, zero_init_residual=True)

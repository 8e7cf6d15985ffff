"""DenseNet specifics: torchvision's key layout, legacy checkpoint names, growth per layer, the CIFAR form."""

from __future__ import annotations

import re

import pytest
import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models import create_model, load_pretrained
from imgcls.models.densenet import DenseBlock, DenseLayer, DenseNet, DenseNetConfig, cifar_config

from .conftest import layout, torchvision_layout


def _tiny(**kw: object) -> DenseNet:
    cfg = DenseNetConfig(growth_rate=4, block_config=(2, 3), num_init_features=8, stem="cifar", **kw)
    return DenseNet(cfg, num_classes=5)


def test_densenet121_state_dict_equals_torchvision_layout() -> None:
    expected = torchvision_layout("densenet121")
    with torch.device("meta"):
        model = create_model("densenet121")
    assert layout(model) == expected  # same keys, same shapes, same order


def test_small_input_form_changes_only_the_stem() -> None:
    with torch.device("meta"):
        big = create_model("densenet121")
        small = create_model("densenet121", image_size=32)
    assert not hasattr(small.features, "pool0") and hasattr(big.features, "pool0")
    big_sd, small_sd = big.state_dict(), small.state_dict()
    assert list(big_sd) == list(small_sd)
    diff = [k for k in big_sd if big_sd[k].shape != small_sd[k].shape]
    assert diff == ["features.conv0.weight"]
    assert small.features.conv0.kernel_size == (3, 3) and small.features.conv0.stride == (1, 1)
    with torch.device("meta"):
        # 32x32 reaches the last block at 4x4 (no stem downsampling, three transitions).
        assert small.forward_features(torch.empty(1, 3, 32, 32)).shape == (1, 1024, 4, 4)


def test_legacy_checkpoint_names_load_through_load_pretrained() -> None:
    torch.manual_seed(0)
    src = _tiny().eval()
    for m in src.modules():  # non-trivial running statistics so the comparison means something
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    # Old torchvision files: denselayerN.norm.1.weight instead of denselayerN.norm1.weight, and no
    # num_batches_tracked.
    legacy = {}
    for key, value in src.state_dict().items():
        if key.endswith("num_batches_tracked"):
            continue
        legacy[re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", key)] = value.clone()
    assert "features.denseblock1.denselayer1.norm.1.weight" in legacy
    assert "features.denseblock1.denselayer1.conv.2.weight" in legacy
    assert not any(re.search(r"denselayer\d+\.(norm|conv)[12]\.", k) for k in legacy)

    torch.manual_seed(1)
    dst = _tiny().eval()
    load_pretrained(dst, legacy)
    for key, value in src.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            torch.testing.assert_close(dst.state_dict()[key], value, rtol=0, atol=0)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(dst(x), src(x))


def test_each_dense_layer_adds_growth_rate_channels() -> None:
    model = create_model("densenet_bc_100_k12", num_classes=10).eval()
    k = 12
    blocks = [m for m in model.features if isinstance(m, DenseBlock)]
    assert len(blocks) == 3 and all(len(b) == 16 for b in blocks)
    seen: dict[str, tuple[int, int]] = {}

    def hook(name: str):
        def fn(mod: nn.Module, inputs: tuple, out: torch.Tensor) -> None:
            features = inputs[0]
            seen[name] = (sum(t.shape[1] for t in features), out.shape[1])

        return fn

    for bi, block in enumerate(blocks):
        for li, layer in enumerate(block.values()):
            layer.register_forward_hook(hook(f"{bi}.{li}"))
    with torch.no_grad():
        model(torch.randn(1, 3, 8, 8))
    first_in = [24, 108, 150]  # 2k stem; then floor(0.5 * (C + 16k)) after each transition
    for bi, c0 in enumerate(first_in):
        for li in range(16):
            assert seen[f"{bi}.{li}"] == (c0 + li * k, k)
    assert model.num_features == 150 + 16 * k == 342


def test_cifar_depth_rule_and_bad_depth() -> None:
    bc = cifar_config(100, 12)
    assert bc.block_config == (16, 16, 16) and bc.num_init_features == 24 and bc.compression == 0.5
    plain = cifar_config(40, 12, bc=False)
    assert plain.block_config == (12, 12, 12) and plain.bn_size == 0 and plain.num_init_features == 16
    with pytest.raises(ConfigError, match="use depth 94 or 100"):
        cifar_config(99, 12)


def test_plain_dense_layer_is_one_3x3_conv() -> None:
    layer = DenseLayer(16, 12, bn_size=0)
    convs = [m for m in layer.modules() if isinstance(m, nn.Conv2d)]
    assert [(c.in_channels, c.out_channels, c.kernel_size) for c in convs] == [(16, 12, (3, 3))]


def test_memory_efficient_gives_the_same_gradients() -> None:
    torch.manual_seed(0)
    a = _tiny().train()
    b = _tiny(memory_efficient=True).train()
    b.load_state_dict(a.state_dict())
    x = torch.randn(2, 3, 8, 8)
    for m in (a, b):
        m(x).square().mean().backward()
    for (name, pa), pb in zip(a.named_parameters(), b.parameters(), strict=True):
        torch.testing.assert_close(pa.grad, pb.grad, msg=name)

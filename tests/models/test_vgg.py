"""VGG specifics: torchvision layout and function, Table 1 depths, batch-norm counts, the small-image form."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from imgcls.models import count_params, create_model
from imgcls.models.vgg import VGG, VGGConfig

from .conftest import layout, torchvision_layout

# torchvision's per-layer lists for configurations A, B, D, E ("M" = 2x2 max-pool), i.e. Table 1 columns.
_CFG_TEXT = {
    "vgg11": "64 M 128 M 256 256 M 512 512 M 512 512 M",
    "vgg13": "64 64 M 128 128 M 256 256 M 512 512 M 512 512 M",
    "vgg16": "64 64 M 128 128 M 256 256 256 M 512 512 512 M 512 512 512 M",
    "vgg19": "64 64 M 128 128 M 256 256 256 256 M 512 512 512 512 M 512 512 512 512 M",
}
TORCHVISION_CFGS = {k: [v if v == "M" else int(v) for v in s.split()] for k, s in _CFG_TEXT.items()}


def _meta(name: str, **kw: object) -> nn.Module:
    with torch.device("meta"):
        return create_model(name, **kw)


def test_vgg16_state_dict_matches_torchvision() -> None:
    assert layout(_meta("vgg16")) == torchvision_layout("vgg16")


@pytest.mark.parametrize("name", sorted(TORCHVISION_CFGS))
@pytest.mark.parametrize("bn", [False, True])
def test_features_follow_torchvisions_make_layers(name: str, bn: bool) -> None:
    """Same layer sequence (and so the same indices and function) as torchvision's ``make_layers``."""
    model = _meta(f"{name}_bn" if bn else name)
    expected: list[tuple[object, ...]] = []
    cin = 3
    for v in TORCHVISION_CFGS[name]:
        if v == "M":
            expected.append(("MaxPool2d", 2, 2))
        else:
            expected.append(("Conv2d", cin, v, (3, 3), (1, 1), (1, 1)))
            if bn:
                expected.append(("BatchNorm2d", v, 1e-5))
            expected.append(("ReLU",))
            cin = v
    got: list[tuple[object, ...]] = []
    for m in model.features:
        if isinstance(m, nn.Conv2d):
            got.append(("Conv2d", m.in_channels, m.out_channels, m.kernel_size, m.stride, m.padding))
        elif isinstance(m, nn.BatchNorm2d):
            got.append(("BatchNorm2d", m.num_features, m.eps))
        elif isinstance(m, nn.MaxPool2d):
            got.append(("MaxPool2d", m.kernel_size, m.stride))
        else:
            got.append((type(m).__name__,))
    assert got == expected
    assert model.avgpool.output_size == (7, 7)
    kinds = [type(m).__name__ for m in model.classifier]
    assert kinds == ["Linear", "ReLU", "Dropout", "Linear", "ReLU", "Dropout", "Linear"]
    # Table 1's name counts weight layers: convolutions + 3 fully connected.
    weight_layers = sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    assert weight_layers == int(name[3:])


BN_EXTRA = [("vgg11", 5_504), ("vgg13", 5_888), ("vgg16", 8_448), ("vgg19", 11_008)]


@pytest.mark.parametrize("name,extra", BN_EXTRA)
def test_batch_norm_adds_two_parameters_per_channel(name: str, extra: int) -> None:
    assert count_params(_meta(f"{name}_bn")) - count_params(_meta(name)) == extra


def test_forward_is_features_pool_classifier() -> None:
    torch.manual_seed(0)
    # A narrow stand-in (8-wide stages, 16-wide classifier) exercises the same forward code cheaply.
    model = VGG(VGGConfig((1, 1, 2, 2, 2), widths=(8, 8, 8, 8, 8), hidden=16), num_classes=5).eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        expected = model.classifier(torch.flatten(F.adaptive_avg_pool2d(model.features(x), (7, 7)), 1))
        torch.testing.assert_close(model(x), expected)


def test_init_follows_torchvision() -> None:
    torch.manual_seed(0)
    model = create_model("vgg11_bn", num_classes=10, small_input=True)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert all(float(m.bias.detach().abs().sum()) == 0 for m in convs + linears)
    w = convs[-1].weight.detach()  # kaiming_normal_, fan_out = 512 * 9
    assert abs(float(w.std()) - (2 / (512 * 9)) ** 0.5) < 2e-3
    assert abs(float(linears[0].weight.detach().std()) - 0.01) < 1e-3


@pytest.mark.parametrize("size", [28, 32])
def test_small_input_form(size: int) -> None:
    model = _meta("vgg16_bn", num_classes=10, in_chans=1, image_size=size)
    pools = sum(isinstance(m, nn.MaxPool2d) for m in model.features)
    assert pools == 4  # the fifth halving is dropped
    feats = model.forward_features(torch.empty(2, 1, size, size, device="meta"))
    assert feats.shape == (2, 512, size // 16, size // 16)
    assert model.num_features == 512 and model.classifier[0].in_features == 512
    assert model.forward_head(feats, pre_logits=True).shape == (2, 512)

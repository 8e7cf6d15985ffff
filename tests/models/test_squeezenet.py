"""SqueezeNet: fire modules (Table 1), torchvision's layout, the ReLU'd classifier, the small-input form."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgcls.models import create_model
from imgcls.models.squeezenet import Fire

from .conftest import layout, torchvision_layout


def test_fire_outputs_expand1x1_then_expand3x3_channels() -> None:
    torch.manual_seed(0)
    fire = Fire(10, squeeze=3, expand1x1=5, expand3x3=7)
    assert fire.out_channels == 12
    x = torch.randn(2, 10, 6, 6)
    out = fire(x)
    assert out.shape == (2, 12, 6, 6)  # the 3x3 expand is padded: the map keeps its size
    # The concatenation puts the 1x1 expand first (torchvision's order): silence the 3x3 path and only the
    # last 7 channels go to zero.
    nn.init.zeros_(fire.expand3x3.weight)
    nn.init.zeros_(fire.expand3x3.bias)
    out = fire(x)
    assert torch.count_nonzero(out[:, 5:]) == 0 and torch.count_nonzero(out[:, :5]) > 0


@pytest.mark.parametrize("name", ["squeezenet1_0", "squeezenet1_1"])
def test_fire_modules_follow_table_1(name: str) -> None:
    """fire2..fire9 output 128, 128, 256, 256, 384, 384, 512, 512 channels, each feeding the next."""
    with torch.device("meta"):
        model = create_model(name)
    fires = [m for m in model.features if isinstance(m, Fire)]
    assert [f.out_channels for f in fires] == [128, 128, 256, 256, 384, 384, 512, 512]
    assert [f.squeeze.in_channels for f in fires[1:]] == [f.out_channels for f in fires[:-1]]
    # Squeeze ratio 1/8 of the expand channels, half of the expand filters 3x3 (Sec. 3.3's SR and pct3x3).
    assert all(f.squeeze.out_channels * 8 == f.out_channels for f in fires)
    assert all(f.expand3x3.out_channels == f.expand1x1.out_channels for f in fires)
    assert sum(isinstance(m, nn.MaxPool2d) for m in model.features) == 3
    assert model.num_features == 512


def test_torchvision_layout() -> None:
    expected = torchvision_layout("squeezenet1_0")
    for image_size in (None, 32):  # the small-input form changes stride and padding only
        with torch.device("meta"):
            model = create_model("squeezenet1_0", image_size=image_size)
        assert layout(model) == expected


def test_small_input_form_and_non_negative_logits() -> None:
    torch.manual_seed(0)
    model = create_model("squeezenet1_1", num_classes=10, in_chans=1, image_size=28).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        assert model.forward_features(x).shape == (2, 512, 4, 4)  # stride-1 conv1, then three pools
        logits = model(x)
    assert logits.shape == (2, 10)
    assert (logits >= 0).all()  # conv10 is followed by a ReLU (Table 1, as torchvision)
    with torch.device("meta"):
        native = create_model("squeezenet1_1", num_classes=10, in_chans=1)
        assert native.forward_features(torch.empty(2, 1, 32, 32)).shape == (2, 512, 1, 1)

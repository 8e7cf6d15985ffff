"""MobileNet v1 (width and resolution multipliers, Tables 6/7) and MobileNetV2 (torchvision layout, Table 2)."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from imgcls.models import create_model, get_model_spec
from imgcls.models import mobilenet as mnv1
from imgcls.models.mobilenetv2 import BLOCKS, InvertedResidual
from imgcls.models.registry import count_params

from .conftest import gmacs, layout, torchvision_layout

# --- MobileNet v1 ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(mnv1.VARIANTS))
def test_v1_matches_paper_tables_6_and_7(name: str) -> None:
    """Our exact count rounds to the paper's "Million Parameters" (its "Million Mult-Adds" are checked, as
    every stored figure, by test_zoo)."""
    assert round(get_model_spec(name).num_params / 1e6, 1) == mnv1.VARIANTS[name].paper_params_m


def test_v1_width_multiplier_scales_every_layer() -> None:
    """alpha = 0.5 halves every layer's channels (Sec. 3.3), so the weights shrink by about alpha^2."""
    with torch.device("meta"):
        full = create_model("mobilenet_v1")
        half = create_model("mobilenet_v1_0_5")
    convs_full = [m for m in full.modules() if isinstance(m, nn.Conv2d)]
    convs_half = [m for m in half.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs_full) == len(convs_half) == 1 + 2 * 13  # stem + 13 depthwise-separable layers (Table 1)
    for a, b in zip(convs_full, convs_half):
        assert b.out_channels * 2 == a.out_channels
        assert b.in_channels * 2 == a.in_channels or a.in_channels == 3  # the image keeps its 3 channels
        assert (a.groups == a.in_channels) == (b.groups == b.in_channels)  # depthwise stays depthwise
    assert half.num_features * 2 == full.num_features == 1024

    def body_params(model: nn.Module) -> int:  # everything but the (width-independent-output) classifier
        return count_params(model) - count_params(model.head)

    assert body_params(half) / body_params(full) == pytest.approx(0.5**2, abs=0.01)


def test_v1_resolution_multiplier_sets_input_size_only() -> None:
    """rho changes the input side (224, 192, 160, 128), not the network; mult-adds scale with about rho^2."""
    base = get_model_spec("mobilenet_v1")
    base_macs = gmacs("mobilenet_v1")
    for res in (192, 160, 128):
        spec = get_model_spec(f"mobilenet_v1_1_0_{res}")
        assert spec.input_size == (3, res, res)
        assert spec.num_params == base.num_params
        assert spec.kwargs["cfg"].resolution == res
        # rho^2 for every conv; the 1024 x 1000 classifier (1 M of 569 M) does not shrink.
        assert gmacs(spec.name) == pytest.approx(base_macs * (res / 224) ** 2, rel=0.01)


def test_v1_small_input_form_keeps_weights_and_ends_at_4x4() -> None:
    with torch.device("meta"):  # shapes only: the meta device computes none of the values
        native = create_model("mobilenet_v1", num_classes=10, in_chans=1)
        small = create_model("mobilenet_v1", num_classes=10, in_chans=1, image_size=28)
        x = torch.empty(2, 1, 32, 32)
        assert small.forward_features(x).shape == (2, 1024, 4, 4)  # total stride 8
        assert native.forward_features(x).shape == (2, 1024, 1, 1)  # total stride 32
    assert layout(small) == layout(native)  # ImageNet-trained weights load into the small form


# --- MobileNetV2 ----------------------------------------------------------------------------------------


def test_v2_torchvision_layout() -> None:
    expected = torchvision_layout("mobilenet_v2")
    for image_size in (None, 32):  # the small-input form changes strides only
        with torch.device("meta"):
            model = create_model("mobilenet_v2", image_size=image_size)
        assert layout(model) == expected


def test_v2_blocks_follow_table_2() -> None:
    with torch.device("meta"):
        model = create_model("mobilenet_v2")
    blocks = [m for m in model.features if isinstance(m, InvertedResidual)]
    assert len(blocks) == sum(n for _, _, n, _ in BLOCKS) == 17
    # A residual connection wherever the shape is kept: the n - 1 repeats of each row, 10 in all.
    assert sum(b.use_res_connect for b in blocks) == 10
    # Linear bottleneck (Sec. 3.2): every block ends with the projection's BN, no activation.
    assert all(isinstance(b.conv[-1], nn.BatchNorm2d) for b in blocks)
    assert [b.out_channels for b in blocks][-1] == 320 and model.num_features == 1280


@pytest.mark.parametrize(
    "name,stem,last",
    [
        ("mobilenet_v2_0_35", 16, 1280),
        ("mobilenet_v2_0_5", 16, 1280),
        ("mobilenet_v2", 32, 1280),
        ("mobilenet_v2_1_4", 48, 1792),
    ],
)
def test_v2_width_multiplier_rounds_to_multiples_of_8(name: str, stem: int, last: int) -> None:
    """make_divisible rounding; the last conv is not thinned below width 1 but is widened above (Sec. 6.1)."""
    with torch.device("meta"):
        model = create_model(name)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs[0].out_channels == stem
    assert convs[-1].out_channels == model.num_features == last
    assert all(c.out_channels % 8 == 0 for c in convs)


def test_v2_small_input_form_ends_at_4x4() -> None:
    with torch.device("meta"):
        model = create_model("mobilenet_v2", num_classes=10, in_chans=1, image_size=32)
        assert model.forward_features(torch.empty(2, 1, 32, 32)).shape == (2, 1280, 4, 4)
        assert model.forward_features(torch.empty(2, 1, 28, 28)).shape == (2, 1280, 4, 4)

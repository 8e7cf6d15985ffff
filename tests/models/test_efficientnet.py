"""EfficientNet: torchvision layout, the compound-scaling rule against the published table, B0 scaling."""

from __future__ import annotations

import math

import pytest
import torch

from imgcls.errors import ConfigError
from imgcls.models import create_model
from imgcls.models.efficientnet import (
    ALPHA,
    BETA,
    GAMMA,
    TABLE_2,
    EfficientNet,
    MBConv,
    compound_scaling,
    efficientnet,
    single_dimension_scaling,
    variant_config,
    variant_scaling,
)

from .conftest import layout, torchvision_layout

# (width, depth, resolution) of the released code (tensorflow/tpu efficientnet_builder.py; torchvision).
PUBLISHED = {
    "efficientnet_b0": (1.0, 1.0, 224),
    "efficientnet_b1": (1.0, 1.1, 240),
    "efficientnet_b2": (1.1, 1.2, 260),
    "efficientnet_b3": (1.2, 1.4, 300),
    "efficientnet_b4": (1.4, 1.8, 380),
    "efficientnet_b5": (1.6, 2.2, 456),
    "efficientnet_b6": (1.8, 2.6, 528),
    "efficientnet_b7": (2.0, 3.1, 600),
}
# Where round(alpha**phi, 1) departs from the published depth: (rule, published). See the module docstring.
DEPTH_DEPARTURES = {
    "efficientnet_b3": (1.5, 1.4),
    "efficientnet_b4": (2.0, 1.8),
    "efficientnet_b5": (2.5, 2.2),
    "efficientnet_b6": (3.1, 2.6),
    "efficientnet_b7": (3.6, 3.1),
}


def test_state_dict_matches_torchvision_b0() -> None:
    expected = torchvision_layout("efficientnet_b0")
    with torch.device("meta"):
        model = create_model("efficientnet_b0")
    assert layout(model) == expected


def test_phi_is_read_off_the_published_resolution() -> None:
    for name, (_, _, res) in PUBLISHED.items():
        assert TABLE_2[name].phi == round(math.log(res / 224) / math.log(GAMMA), 2), name


def test_rule_reproduces_published_width_and_resolution_everywhere_and_depth_up_to_b2() -> None:
    for name, (width, depth, res) in PUBLISHED.items():
        rule = compound_scaling(TABLE_2[name].phi)
        assert rule.width_mult == width, name
        assert rule.resolution == res, name
        if name in DEPTH_DEPARTURES:
            assert (rule.depth_mult, depth) == DEPTH_DEPARTURES[name]
        else:
            assert rule.depth_mult == depth, name


def test_no_single_phi_gives_the_published_depth_and_resolution_of_b4_to_b7() -> None:
    # The module docstring's claim: even allowing the resolution to be off by 5 px, B4-B7 have no phi.
    grid = [k / 1000 for k in range(8001)]
    for name in ("efficientnet_b4", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7"):
        _, depth, res = PUBLISHED[name]
        fits = [
            phi
            for phi in grid
            if compound_scaling(phi).depth_mult == depth and abs(224 * GAMMA**phi - res) <= 5
        ]
        assert fits == [], name


def test_registered_variants_use_the_published_coefficients() -> None:
    for name, (width, depth, res) in PUBLISHED.items():
        row = TABLE_2[name]
        assert tuple(variant_scaling(row)) == (width, depth, res), name
        cfg = variant_config(row)
        assert (cfg.width_mult, cfg.depth_mult) == (width, depth)
        # The override is there only where the rule departs from the published table.
        assert (row.depth_mult is not None) == (name in DEPTH_DEPARTURES)


def test_compound_scaling_is_eq3() -> None:
    s = compound_scaling(2.0, decimals=None)
    assert s.width_mult == pytest.approx(BETA**2) and s.depth_mult == pytest.approx(ALPHA**2)
    assert s.resolution == round(224 * GAMMA**2)
    assert compound_scaling(0.25) == (1.0, 1.0, 232)  # 1.024 / 1.047 round to 1.0; 224 * 1.0356 = 231.97
    with pytest.raises(ConfigError):
        compound_scaling(-1)


def test_single_dimension_scaling_matches_compound_flops() -> None:
    phi = 3.0
    target = (ALPHA * BETA**2 * GAMMA**2) ** phi  # FLOPs grow as d * w^2 * r^2 (Sec. 3.3)
    c = compound_scaling(phi, decimals=None)
    assert c.depth_mult * c.width_mult**2 * (c.resolution / 224) ** 2 == pytest.approx(target, rel=1e-2)
    w = single_dimension_scaling(phi, "width", decimals=None)
    d = single_dimension_scaling(phi, "depth", decimals=None)
    r = single_dimension_scaling(phi, "resolution", decimals=None)
    assert (w.depth_mult, w.resolution) == (1.0, 224) and w.width_mult**2 == pytest.approx(target)
    assert (d.width_mult, d.resolution) == (1.0, 224) and d.depth_mult == pytest.approx(target)
    assert (r.width_mult, r.depth_mult) == (1.0, 1.0)
    assert (r.resolution / 224) ** 2 == pytest.approx(target, rel=1e-2)
    with pytest.raises(ConfigError):
        single_dimension_scaling(phi, "height")  # type: ignore[arg-type]


def _stage_shapes(model: EfficientNet) -> list[tuple[int, int]]:
    # (blocks, output channels) of features[1:8], the seven MBConv stages.
    return [(len(stage), stage[-1].out_channels) for stage in list(model.features)[1:8]]


def test_b7_scales_the_b0_table() -> None:
    # Width 2.0: channels (16, 24, 40, 80, 112, 192, 320) x 2; depth 3.1: ceil(3.1 * (1, 2, 2, 3, 3, 4, 1)).
    with torch.device("meta"):
        model = create_model("efficientnet_b7")
    assert model.features[0][0].out_channels == 64
    assert _stage_shapes(model) == [(4, 32), (7, 48), (7, 80), (10, 160), (10, 224), (13, 384), (4, 640)]
    assert model.num_features == 2560


def test_width_only_and_depth_only_builders() -> None:
    with torch.device("meta"):
        wide = efficientnet(width_mult=1.4)
        deep = efficientnet(depth_mult=1.8)
    assert _stage_shapes(wide) == [(1, 24), (2, 32), (2, 56), (3, 112), (3, 160), (4, 272), (1, 448)]
    assert _stage_shapes(deep) == [(2, 16), (4, 24), (4, 40), (6, 80), (6, 112), (8, 192), (2, 320)]


def test_stochastic_depth_decays_linearly_as_torchvision() -> None:
    with torch.device("meta"):
        model = create_model("efficientnet_b0")
    probs = [m.stochastic_depth.p for m in model.modules() if isinstance(m, MBConv)]
    assert probs == pytest.approx([0.2 * i / 16 for i in range(16)])


def test_batchnorm_and_dropout_follow_torchvision() -> None:
    expected_dropout = {
        "b0": 0.2,
        "b1": 0.2,
        "b2": 0.3,
        "b3": 0.3,
        "b4": 0.4,
        "b5": 0.4,
        "b6": 0.5,
        "b7": 0.5,
    }
    for suffix, p in expected_dropout.items():
        cfg = variant_config(TABLE_2[f"efficientnet_{suffix}"])
        tf_bn = suffix in ("b5", "b6", "b7")
        assert cfg.dropout == p
        assert (cfg.bn_eps, cfg.bn_momentum) == ((1e-3, 0.01) if tf_bn else (1e-5, 0.1))
    with torch.device("meta"):
        bn = create_model("efficientnet_b5").features[0][1]
    assert (bn.eps, bn.momentum) == (1e-3, 0.01)


def test_small_input_keeps_weights_and_reaches_4x4() -> None:
    with torch.device("meta"):
        big = create_model("efficientnet_b0")
        small = create_model("efficientnet_b0", in_chans=1, image_size=28)
        feats = small.forward_features(torch.empty(2, 1, 28, 28))
    assert feats.shape == (2, 1280, 4, 4)
    shapes = {k: v.shape for k, v in big.state_dict().items() if k != "features.0.0.weight"}
    assert shapes == {k: v.shape for k, v in small.state_dict().items() if k != "features.0.0.weight"}
    assert small.features[0][0].weight.shape == (32, 1, 3, 3)  # grayscale straight into the stem


def test_unknown_override_is_a_config_error() -> None:
    with pytest.raises(ConfigError):
        create_model("efficientnet_b0", no_such_option=1)

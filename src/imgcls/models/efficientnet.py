"""EfficientNet (Mingxing Tan and Quoc V. Le 2019, "EfficientNet: Rethinking Model Scaling for Convolutional
Neural Networks", arXiv:1905.11946).

Builds EfficientNet-B0 (the paper's Table 1: a 3x3 stride-2 stem, seven stages of MBConv blocks with
squeeze-excitation and swish, a 1x1 convolution to 1280 channels, pooling and a linear classifier) and
B1-B7 by compound scaling of that table (Eq. 3): depth d = alpha**phi, width w = beta**phi, resolution
r = gamma**phi with alpha = 1.2, beta = 1.1, gamma = 1.15. The layout is torchvision's ``efficientnet_b*``, so
its ImageNet checkpoints load with :func:`imgcls.load_pretrained`.

Headline numbers (Table 2, ImageNet top-1): B0 77.1 % with 5.3 M parameters and 0.39 G FLOPs, up to B7
84.3 % with 66 M parameters and 37 G FLOPs; every row is in ``VARIANTS``.

How the B0-B7 coefficients are derived (the paper publishes neither phi nor the coefficients; the official
TF code and torchvision use the list width/depth/resolution B0 1.0/1.0/224, B1 1.0/1.1/240, B2 1.1/1.2/260,
B3 1.2/1.4/300, B4 1.4/1.8/380, B5 1.6/2.2/456, B6 1.8/2.6/528, B7 2.0/3.1/600):
- phi is read off the published resolution, phi = log(r / 224) / log(gamma), rounded to 0.01:
  0, 0.49, 1.07, 2.09, 3.78, 5.09, 6.14, 7.05 (not the integer after "B").
- :func:`compound_scaling` then rounds beta**phi and alpha**phi half-up to one decimal and 224 * gamma**phi
  to the nearest pixel. This reproduces all eight published resolutions and all eight widths, and the depths
  of B0-B2.
- The rule and the published table disagree on depth from B3 on: round(alpha**phi, 1) gives 1.5, 2.0, 2.5,
  3.1, 3.6 for B3-B7 where the published depths are 1.4, 1.8, 2.2, 2.6, 3.1. For B4-B7 no single phi gives
  both: rounded to one decimal, the published depths need phi in [3.07, 3.37), [4.20, 4.45), [5.13, 5.35),
  [6.12, 6.29), while the published resolutions, even to within 5 px, need [3.69, 3.88], [5.01, 5.16],
  [6.07, 6.20], [6.99, 7.11]: the published B4-B7 are shallower than compound scaling makes them. (B3 alone
  could match with phi = 2 and resolutions rounded up to a multiple of 4, a rounding that misses B5-B7.)
  Integer phi (1 for B1, ...) matches even less (B1: 1.1/1.2/258 against 1.0/1.1/240). We keep the
  published depths, stored as ``depth_mult`` in those five rows, because the published checkpoints and the
  Table 2 figures are for them;
  ``tests/models/test_efficientnet.py`` checks exactly which values the rule reproduces.

Departures from the paper, and why:
- Stage strides follow the released code (and torchvision): 40 -> 80 channels has stride 2 and 80 -> 112
  stride 1; the first arXiv version of Table 1 had them the other way round (the authors confirmed the code,
  tensorflow/tpu issue #383).
- Channels are scaled with :func:`~imgcls.models.layers.make_divisible` (multiples of 8) and repeats with
  ceil(d * repeats), the released code's rounding; the last conv has 4x the last stage's channels (1280 for
  B0), as torchvision, so it scales with width.
- Stochastic depth (Huang et al. 2016) with final rate 0.2 decays linearly over blocks as in torchvision:
  block i of N is dropped with probability 0.2 * i / N (the first block never), one step earlier than
  :func:`~imgcls.models.layers.drop_path_rates`; the paper only says "stochastic depth with survival
  probability 0.8".
- Classifier dropout 0.2 (B0, B1), 0.3 (B2, B3), 0.4 (B4, B5), 0.5 (B6, B7), as the released code; the paper
  says only "from 0.2 for B0 to 0.5 for B7". BatchNorm uses eps 1e-3 / momentum 0.01 (TF's 0.99) for B5-B7,
  whose torchvision weights are ported from TF, and PyTorch's defaults for B0-B4, as torchvision.
- Squeeze-excitation reduces to a quarter of the block's *input* channels (released code), not of the
  expanded ones.
- Small images (28x28, 32x32): the paper has no such form. ``small_input=True`` sets the stride of the stem
  and of the first stride-2 stage (16 -> 24 channels) to 1, so the total stride is 8 and a 32 px image leaves
  the last stage at 4x4. No weight changes shape, so checkpoints still load.
- :func:`single_dimension_scaling` gives the width-only / depth-only / resolution-only baselines of the
  paper's Fig. 8 at the same FLOPs growth as compound scaling; :func:`efficientnet` builds any width/depth
  pair (the paper's Fig. 3 / Fig. 4 sweeps).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal, NamedTuple

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import (
    ConvNormAct,
    DropPath,
    SqueezeExcite,
    drop_path_rates,
    kaiming_init_,
    linear_uniform_out_,
    make_divisible,
    small_input_strides,
)
from imgcls.models.registry import Variant, register_family

__all__ = [
    "B0_STAGES",
    "TABLE_2",
    "VARIANTS",
    "Table2Row",
    "EfficientNet",
    "EfficientNetConfig",
    "MBConv",
    "Scaling",
    "compound_scaling",
    "efficientnet",
    "single_dimension_scaling",
    "variant_scaling",
]

# The compound-scaling constants of Sec. 3.3 (grid search at phi = 1 under alpha * beta^2 * gamma^2 ~ 2).
ALPHA, BETA, GAMMA = 1.2, 1.1, 1.15
BASE_RESOLUTION = 224

# Table 1 (EfficientNet-B0), stages 2-8: one row per stage, (expand ratio t of MBConv-t, kernel k, stride of
# the first block, output channels, layers). Stage 1 is the stem "Conv3x3, 32"; stage 9 "Conv1x1 & Pooling &
# FC, 1280" is the head. Strides as in the released code (see the module docstring).
STEM_WIDTH = 32
B0_STAGES: tuple[tuple[int, int, int, int, int], ...] = (
    (1, 3, 1, 16, 1),
    (6, 3, 2, 24, 2),
    (6, 5, 2, 40, 2),
    (6, 3, 2, 80, 3),
    (6, 5, 1, 112, 3),
    (6, 5, 2, 192, 4),
    (6, 3, 1, 320, 1),
)
HEAD_EXPANSION = 4  # the last conv has 4 x 320 = 1280 channels in B0


class Scaling(NamedTuple):
    """Scaling coefficients of one network: width and depth multipliers and the input resolution."""

    width_mult: float
    depth_mult: float
    resolution: int


def _round_half_up(x: float, decimals: int | None) -> float:
    if decimals is None:
        return x
    scale = 10**decimals
    return math.floor(x * scale + 0.5) / scale  # half-up, not Python's round-half-even


def compound_scaling(
    phi: float,
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
    base_resolution: int = BASE_RESOLUTION,
    decimals: int | None = 1,
) -> Scaling:
    """The paper's Eq. 3: depth alpha**phi, width beta**phi, resolution base * gamma**phi.

    Multipliers are rounded half-up to ``decimals`` decimals (``None``: unrounded), the resolution to the
    nearest pixel, as the published coefficients are (see the module docstring for where they disagree).
    """
    if phi < 0:
        raise ConfigError(f"phi must be >= 0 (0 is B0), got {phi}")
    width = _round_half_up(beta**phi, decimals)
    depth = _round_half_up(alpha**phi, decimals)
    return Scaling(width, depth, round(base_resolution * gamma**phi))


def single_dimension_scaling(
    phi: float,
    dimension: Literal["width", "depth", "resolution"],
    alpha: float = ALPHA,
    beta: float = BETA,
    gamma: float = GAMMA,
    base_resolution: int = BASE_RESOLUTION,
    decimals: int | None = 1,
) -> Scaling:
    """Scale one dimension alone so that FLOPs grow as much as with :func:`compound_scaling` at ``phi``.

    FLOPs grow as d * w^2 * r^2 (Sec. 3.3), i.e. by f = (alpha * beta^2 * gamma^2)**phi under compound
    scaling; the single-dimension baselines of the paper's Fig. 8 use d = f, or w = sqrt(f), or r = sqrt(f).
    """
    f = (alpha * beta**2 * gamma**2) ** phi
    if dimension == "width":
        return Scaling(_round_half_up(math.sqrt(f), decimals), 1.0, base_resolution)
    if dimension == "depth":
        return Scaling(1.0, _round_half_up(f, decimals), base_resolution)
    if dimension == "resolution":
        return Scaling(1.0, 1.0, round(base_resolution * math.sqrt(f)))
    raise ConfigError(f"unknown scaling dimension '{dimension}': use 'width', 'depth' or 'resolution'")


@dataclass(frozen=True)
class EfficientNetConfig:
    """Attributes:
    width_mult: channel multiplier w applied to every row of Table 1 (rounded to multiples of 8).
    depth_mult: layer multiplier d (repeats become ceil(d * layers)).
    dropout: dropout before the classifier.
    stochastic_depth_prob: drop probability of the last block (linear decay from 0, as torchvision).
    bn_eps, bn_momentum: BatchNorm settings (PyTorch defaults; 1e-3 / 0.01 for the TF-ported B5-B7).
    se_ratio: squeeze-excitation width as a fraction of the block's input channels.
    """

    width_mult: float = 1.0
    depth_mult: float = 1.0
    dropout: float = 0.2
    stochastic_depth_prob: float = 0.2
    bn_eps: float = 1e-5
    bn_momentum: float = 0.1
    se_ratio: float = 0.25


class MBConv(nn.Module):
    """Mobile inverted bottleneck with squeeze-excitation (Sandler et al. 2018; Tan et al. 2019, MnasNet).

    1x1 expansion (skipped when the ratio is 1) -> kxk depthwise -> SE -> linear 1x1 projection, with swish
    (SiLU) activations. ``block`` holds them under torchvision's names (``block.0`` ... ``block.3``); the
    input is added back, through stochastic depth, when the stride is 1 and the width is kept.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int,
        stride: int,
        expand_ratio: int,
        se_ratio: float = 0.25,
        drop_path: float = 0.0,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
    ) -> None:
        super().__init__()
        mid = make_divisible(in_chs * expand_ratio, 8)
        layers: list[nn.Module] = []
        if mid != in_chs:
            layers.append(ConvNormAct(in_chs, mid, 1, norm_layer=norm_layer, act_layer=nn.SiLU))
        layers += [
            ConvNormAct(mid, mid, kernel_size, stride, groups=mid, norm_layer=norm_layer, act_layer=nn.SiLU),
            SqueezeExcite(mid, max(1, int(in_chs * se_ratio)), act_layer=nn.SiLU),
            ConvNormAct(mid, out_chs, 1, norm_layer=norm_layer, act_layer=None),  # linear bottleneck
        ]
        self.block = nn.Sequential(*layers)
        self.use_res_connect = stride == 1 and in_chs == out_chs
        self.stochastic_depth = DropPath(drop_path)
        self.out_channels = out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        if self.use_res_connect:
            out = self.stochastic_depth(out) + x
        return out


class EfficientNet(nn.Module):
    """``features`` (stem, 7 MBConv stages, 1x1 conv) -> ``avgpool`` -> ``classifier`` (dropout, linear)."""

    def __init__(
        self,
        cfg: EfficientNetConfig = EfficientNetConfig(),
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        if cfg.width_mult <= 0 or cfg.depth_mult <= 0:
            raise ConfigError(
                f"width_mult and depth_mult must be > 0, got {cfg.width_mult}, {cfg.depth_mult}"
            )
        self.cfg = cfg
        norm = partial(nn.BatchNorm2d, eps=cfg.bn_eps, momentum=cfg.bn_momentum)
        w, d = cfg.width_mult, cfg.depth_mult
        chs = make_divisible(STEM_WIDTH * w, 8)
        # small_input: total stride 8 instead of 32 (see the module docstring).
        stem_stride, strides = small_input_strides([s for _, _, s, _, _ in B0_STAGES], small_input)
        layers: list[nn.Module] = [
            ConvNormAct(in_chans, chs, 3, stem_stride, norm_layer=norm, act_layer=nn.SiLU)
        ]

        repeats = [math.ceil(n * d) for *_, n in B0_STAGES]
        total = sum(repeats)
        # torchvision's schedule: block i of N gets p * i / N, i.e. drop_path_rates shifted by one block.
        rates = [0.0, *drop_path_rates(cfg.stochastic_depth_prob, total)[:-1]]
        block_id = 0
        for (t, k, _, c, _), s, n in zip(B0_STAGES, strides, repeats, strict=True):
            out = make_divisible(c * w, 8)
            stage = []
            for i in range(n):
                stage.append(MBConv(chs, out, k, s if i == 0 else 1, t, cfg.se_ratio, rates[block_id], norm))
                chs, block_id = out, block_id + 1
            layers.append(nn.Sequential(*stage))
        self.num_features = HEAD_EXPANSION * chs
        layers.append(ConvNormAct(chs, self.num_features, 1, norm_layer=norm, act_layer=nn.SiLU))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Dropout(cfg.dropout), self._linear(num_classes))
        self.init_weights()

    def _linear(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def init_weights(self) -> None:
        """The released TF code's initialisers, as torchvision reproduces them.

        Convolutions: normal with std sqrt(2 / fan_out) (``conv_kernel_initializer``, i.e. Kaiming fan-out);
        the classifier: uniform in +-1/sqrt(num_classes) (``dense_kernel_initializer``); biases zero,
        BatchNorm scale one.
        """
        kaiming_init_(self, linear=linear_uniform_out_)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[1] = self._linear(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 4 * C_last, H/32, W/32); H/8 with small_input

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)  # (B, C, h, w) -> (B, C)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def efficientnet(
    *,
    num_classes: int = 1000,
    in_chans: int = 3,
    width_mult: float = 1.0,
    depth_mult: float = 1.0,
    small_input: bool = False,
    **cfg_kwargs: Any,
) -> EfficientNet:
    """B0 scaled by any width / depth pair, e.g. the baselines of :func:`single_dimension_scaling`.

    ``s = compound_scaling(1.5); efficientnet(width_mult=s.width_mult, depth_mult=s.depth_mult)`` builds a
    custom phi (train it at ``s.resolution``). Other :class:`EfficientNetConfig` fields pass as keywords.
    """
    cfg = EfficientNetConfig(width_mult=width_mult, depth_mult=depth_mult, **cfg_kwargs)
    return EfficientNet(cfg, num_classes=num_classes, in_chans=in_chans, small_input=small_input)


@dataclass(frozen=True)
class Table2Row:
    """One row of Table 2 with what the compound-scaling rule needs to rebuild it.

    Attributes:
        phi: compound coefficient, read off the published resolution (module docstring).
        dropout: classifier dropout of the released code.
        num_params: parameter count at 1000 classes (torchvision's figure; equals ours).
        gmacs, top1: Table 2 (multiply-adds, the paper's "FLOPs", and ImageNet top-1 at the variant's resolution);
            for B4, B5 and B7, whose Table 2 figures (4.2, 9.9, 37) are 2-5% below what these networks count,
            torchvision's figures for the same networks (4.39, 10.27, 37.75), which ours match.
        depth_mult: the published depth multiplier where it departs from round(alpha**phi, 1), else None.
        tf_batchnorm: BatchNorm eps 1e-3 / momentum 0.01 (the TF-ported torchvision weights of B5-B7).
    """

    phi: float
    dropout: float
    num_params: int
    gmacs: float
    top1: float
    depth_mult: float | None = None
    tf_batchnorm: bool = False


# Table 2 (EfficientNet-B0 to B7 on ImageNet), one row per row. B4, B5, B7: torchvision's multiply-adds (Table 2
# gives 4.2, 9.9 and 37, see Table2Row).
TABLE_2: dict[str, Table2Row] = {
    "efficientnet_b0": Table2Row(0.0, 0.2, 5_288_548, 0.39, 77.1),
    "efficientnet_b1": Table2Row(0.49, 0.2, 7_794_184, 0.70, 79.1),
    "efficientnet_b2": Table2Row(1.07, 0.3, 9_109_994, 1.0, 80.1),
    "efficientnet_b3": Table2Row(2.09, 0.3, 12_233_232, 1.8, 81.6, depth_mult=1.4),
    "efficientnet_b4": Table2Row(3.78, 0.4, 19_341_616, 4.39, 82.9, depth_mult=1.8),
    "efficientnet_b5": Table2Row(5.09, 0.4, 30_389_784, 10.27, 83.6, depth_mult=2.2, tf_batchnorm=True),
    "efficientnet_b6": Table2Row(6.14, 0.5, 43_040_704, 19.0, 84.0, depth_mult=2.6, tf_batchnorm=True),
    "efficientnet_b7": Table2Row(7.05, 0.5, 66_347_960, 37.75, 84.3, depth_mult=3.1, tf_batchnorm=True),
}


def variant_scaling(row: Table2Row) -> Scaling:
    """The coefficients a row builds with: :func:`compound_scaling` at its phi, with the published depth where
    the two disagree."""
    s = compound_scaling(row.phi)
    return s if row.depth_mult is None else s._replace(depth_mult=row.depth_mult)


def variant_config(row: Table2Row) -> EfficientNetConfig:
    s = variant_scaling(row)
    bn = {"bn_eps": 1e-3, "bn_momentum": 0.01} if row.tf_batchnorm else {}
    return EfficientNetConfig(width_mult=s.width_mult, depth_mult=s.depth_mult, dropout=row.dropout, **bn)


def _variant(row: Table2Row) -> Variant:
    return Variant(
        variant_config(row),
        row.num_params,
        "torchvision (equals ours); Table 2 gives GFLOPs and top-1",
        gmacs=row.gmacs,
        top1=row.top1,
        input_size=variant_scaling(row).resolution,
    )


VARIANTS: dict[str, Variant] = {name: _variant(row) for name, row in TABLE_2.items()}

register_family(
    "efficientnet",
    EfficientNet,
    VARIANTS,
    cam_layer="features",
    test_input_size=(3, 32, 32),
    test_kwargs={"small_input": True},
    small_input_kwargs={"small_input": True},
    # Table 2 prints two significant digits (0.39, 0.70, 1.0, 1.8 B for B0-B3): our counts are within 1.9 %.
    gmacs_rtol=0.02,
)

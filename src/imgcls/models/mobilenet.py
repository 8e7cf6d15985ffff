"""MobileNet v1 (Howard, Zhu, Chen, Kalenichenko, Wang, Weyand, Andreetto & Adam 2017, "MobileNets: Efficient
Convolutional Neural Networks for Mobile Vision Applications", arXiv:1704.04861).

Builds the network of the paper's Table 1: a 3x3 stride-2 convolution followed by 13 depthwise-separable
convolutions (a 3x3 depthwise conv and a 1x1 pointwise conv, each followed by BN and ReLU), global average
pooling and a linear classifier, with the paper's two shrinking hyper-parameters: the width multiplier alpha
(Sec. 3.3, every layer's channels times alpha) and the resolution multiplier rho (Sec. 3.4, the input side
224 * rho; the network itself is unchanged, so it only sets the variant's default input size).

Headline numbers (Tables 6 and 7, 224x224, 1000 classes): 1.0 MobileNet-224 has 4.2 M parameters and 569 M
multiply-adds and reaches 70.6 % top-1; 0.25 MobileNet-224 has 0.5 M parameters and 41 M multiply-adds
(50.6 %). Our exact counts are in ``VARIANTS``; the tests check them against the paper's rounded figures.

Departures from the paper, and why:
- Table 1 gives the 13th depthwise layer stride 2 on a 7x7 input although its output is still 7x7; that is a
  typo (the reference TF-slim implementation and every released checkpoint use stride 1), so we use stride 1.
- The width multiplier rounds channels as the reference TF-slim code does, ``max(8, int(alpha * c))``;
  for the paper's alphas (1, 0.75, 0.5, 0.25) every product is an integer, so nothing is rounded.
- The paper trains without dropout on the classifier; ``drop_rate`` (default 0) is an option.
- Small images (28x28, 32x32): the paper has no such form. ``small_input=True`` sets the stride of the stem
  conv and of the first stride-2 depthwise layer (64 -> 128 channels) to 1, so the total stride is 8 instead
  of 32 and a 32 px image reaches the last layers at 4x4 (as 224 px reaches them at 7x7). No weight changes
  shape, so ImageNet weights still load into this form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import (
    ClassifierHead,
    ConvNormAct,
    kaiming_init_,
    linear_normal_,
    small_input_strides,
)
from imgcls.models.registry import Variant, register_family

__all__ = ["LAYERS", "VARIANTS", "DepthwiseSeparableConv", "MobileNetV1", "MobileNetV1Config"]

# Table 1 (body): (stride, output channels) of the 13 depthwise-separable layers at alpha = 1, after the
# stem "Conv / s2, 3x3x3x32". The last entry's stride is 1 (see the module docstring).
STEM_WIDTH = 32
LAYERS: tuple[tuple[int, int], ...] = (
    (1, 64),
    (2, 128),
    (1, 128),
    (2, 256),
    (1, 256),
    (2, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (1, 512),
    (2, 1024),
    (1, 1024),
)


@dataclass(frozen=True)
class MobileNetV1Config:
    """One row of the paper's Tables 6 and 7.

    Attributes:
        width_mult: the width multiplier alpha (Sec. 3.3): every layer has alpha times the channels of Table 1.
        resolution: the input side 224 * rho (Sec. 3.4); the network is the same at every resolution.
    """

    width_mult: float = 1.0
    resolution: int = 224


def _scaled(channels: int, alpha: float) -> int:
    # TF-slim mobilenet_v1.py: depth(d) = max(int(d * depth_multiplier), min_depth=8).
    return max(8, int(channels * alpha))


class DepthwiseSeparableConv(nn.Sequential):
    """The paper's Fig. 3 right: 3x3 depthwise conv -> BN -> ReLU -> 1x1 pointwise conv -> BN -> ReLU."""

    def __init__(self, in_chs: int, out_chs: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = ConvNormAct(in_chs, in_chs, 3, stride, groups=in_chs)
        self.pw = ConvNormAct(in_chs, out_chs, 1)


class MobileNetV1(nn.Module):
    """Stem (3x3/2 conv) -> 13 depthwise-separable layers (``features``) -> average pool -> ``head``."""

    def __init__(
        self,
        cfg: MobileNetV1Config = MobileNetV1Config(),
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if cfg.width_mult <= 0:
            raise ConfigError(f"width_mult must be > 0, got {cfg.width_mult}")
        self.cfg = cfg
        # small_input: total stride 8 instead of 32 (see the module docstring).
        stem_stride, strides = small_input_strides([s for s, _ in LAYERS], small_input)
        chs = _scaled(STEM_WIDTH, cfg.width_mult)
        self.stem = ConvNormAct(in_chans, chs, 3, stem_stride)
        layers: list[nn.Module] = []
        for stride, (_, out) in zip(strides, LAYERS, strict=True):
            layers.append(DepthwiseSeparableConv(chs, _scaled(out, cfg.width_mult), stride))
            chs = _scaled(out, cfg.width_mult)
        self.features = nn.Sequential(*layers)
        self.num_features: int = chs
        self.drop_rate = drop_rate
        self.head = ClassifierHead(chs, num_classes, drop_rate)
        self.init_weights()

    def init_weights(self) -> None:
        # The paper does not say how it initialises (TF-slim uses a truncated normal of stddev 0.09). We use He
        # et al. 2015 (arXiv:1502.01852) fan_out for the convs and N(0, 0.01) for the classifier, as
        # torchvision's MobileNetV2 does; BN starts as the identity.
        kaiming_init_(self, linear=linear_normal_)

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(self.stem(x))  # (B, 1024 alpha, H/32, W/32); H/8 with small_input

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_SOURCE = (
    "computed (our count; Howard et al. 2017 Tables 6/7 give {}M rounded), GMACs/top-1 from the same table"
)


def _row(
    width_mult: float, resolution: int, num_params: int, paper_m: float, gmacs: float, top1: float
) -> Variant:
    """A row of Table 6 / 7: our exact count, the paper's rounded "Million Parameters", its "Million
    Mult-Adds" / 1000 and its "ImageNet Accuracy"."""
    return Variant(
        MobileNetV1Config(width_mult, resolution),
        num_params,
        _SOURCE.format(paper_m),
        gmacs=gmacs,
        top1=top1,
        paper_params_m=paper_m,
        input_size=resolution,
    )


# Table 6 (width multiplier, 224 px) and Table 7 (resolution multiplier, alpha = 1): one row per row.
VARIANTS: dict[str, Variant] = {
    # Table 6
    "mobilenet_v1": _row(1.0, 224, 4_231_976, 4.2, 0.569, 70.6),
    "mobilenet_v1_0_75": _row(0.75, 224, 2_585_560, 2.6, 0.325, 68.4),
    "mobilenet_v1_0_5": _row(0.5, 224, 1_331_592, 1.3, 0.149, 63.7),
    "mobilenet_v1_0_25": _row(0.25, 224, 470_072, 0.5, 0.041, 50.6),
    # Table 7 (the first row, 1.0 MobileNet-224, is mobilenet_v1 above)
    "mobilenet_v1_1_0_192": _row(1.0, 192, 4_231_976, 4.2, 0.418, 69.1),
    "mobilenet_v1_1_0_160": _row(1.0, 160, 4_231_976, 4.2, 0.290, 67.2),
    "mobilenet_v1_1_0_128": _row(1.0, 128, 4_231_976, 4.2, 0.186, 64.4),
}


register_family(
    "mobilenet",
    MobileNetV1,
    VARIANTS,
    cam_layer="features",
    # 64 px exercises every stride of the ImageNet form (2x2 final map) at 1/12 of the cost of 224.
    test_input_size=(3, 64, 64),
    small_input_kwargs={"small_input": True},
)

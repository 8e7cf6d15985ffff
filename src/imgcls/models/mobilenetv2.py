"""MobileNetV2 (Sandler, Howard, Zhu, Zhmoginov & Chen 2018, "MobileNetV2: Inverted Residuals and Linear
Bottlenecks", arXiv:1801.04381).

Builds the network of the paper's Table 2: a 3x3 stride-2 convolution, 17 inverted-residual bottlenecks
(1x1 expansion by t -> ReLU6 -> 3x3 depthwise -> ReLU6 -> linear 1x1 projection, with a residual connection
when the shape is kept), a 1x1 convolution to 1280 channels, global average pooling and a linear classifier,
with the width multiplier of Sec. 6.1. The layout (attribute names and order) is torchvision's
``mobilenet_v2``, so its ImageNet checkpoints load with :func:`imgcls.load_pretrained`.

Headline numbers (Table 4, 224x224, 1000 classes): MobileNetV2 has 3.4 M parameters and 300 M multiply-adds
and reaches 72.0 % top-1; MobileNetV2 (1.4) reaches 74.7 % with 585 M multiply-adds. Our exact counts are in
``VARIANTS`` (3,504,872 for width 1.0, torchvision's figure).

Departures from the paper, and why:
- Channels are scaled by the width multiplier and rounded to a multiple of 8 with
  :func:`~imgcls.models.layers.make_divisible` (the released TF and torchvision code; the paper only says
  the multiplier scales every layer but the last). The last conv keeps 1280 channels for multipliers below 1
  and is scaled above 1, as the paper states.
- Table 4 gives MobileNetV2 (1.4) 6.9 M parameters; the network of Table 2 at width 1.4 has 6.1 M (6,108,776,
  also the released checkpoint's count), so we store our computed count and note the paper's figure.
- Dropout: the paper says it uses it ("utilize dropout and batch normalization during training", Sec. 4)
  but gives neither its rate nor its place. We put dropout 0.2 before the linear classifier (torchvision's
  layout: ``classifier.0`` is the dropout, ``classifier.1`` the linear layer), the rate of the authors'
  TF-Slim training scope (``dropout_keep_prob=0.8``) and of torchvision.
- Widths 0.75, 0.5 and 0.35 are the points of the paper's Fig. 5 / Sec. 6.1 trade-off curve (no table row),
  registered with computed counts because they are cheap to train on a CPU.
- Small images (28x28, 32x32): the paper has no such form. ``small_input=True`` sets the stride of the stem
  conv and of the first stride-2 bottleneck (16 -> 24 channels) to 1, so the total stride is 8 instead of 32
  and a 32 px image reaches the last stage at 4x4 (as 224 px reaches it at 7x7). No weight changes shape, so
  torchvision's checkpoints still load into this form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import (
    ConvNormAct,
    kaiming_init_,
    linear_normal_,
    make_divisible,
    small_input_strides,
)
from imgcls.models.registry import Variant, register_family

__all__ = ["BLOCKS", "VARIANTS", "InvertedResidual", "MobileNetV2", "MobileNetV2Config"]

# Table 2: one row per bottleneck sequence, (t expansion, c output channels, n repeats, s first stride),
# between the stem "conv2d 3x3, 32, stride 2" and the final "conv2d 1x1, 1280".
STEM_WIDTH = 32
LAST_WIDTH = 1280
BLOCKS: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


@dataclass(frozen=True)
class MobileNetV2Config:
    """The width setting of Table 2's network.

    Attributes:
        width_mult: the width multiplier (Sec. 6.1); channels are rounded to multiples of ``round_nearest``.
        round_nearest: channel divisor of the rounding (8 in the released code).
    """

    width_mult: float = 1.0
    round_nearest: int = 8


class InvertedResidual(nn.Module):
    """The paper's Table 1 / Fig. 3b: 1x1 expand (t > 1 only) -> 3x3 depthwise -> linear 1x1 projection.

    ``conv`` holds the layers under torchvision's names: ``conv.0`` / ``conv.1`` are conv-BN-ReLU6 blocks,
    ``conv.2`` the projection and ``conv.3`` its BN (without the expansion: ``conv.0``, ``conv.1``,
    ``conv.2``). The input is added back when stride is 1 and the channel count is kept.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int, expand_ratio: int) -> None:
        super().__init__()
        hidden = int(round(in_chs * expand_ratio))
        self.use_res_connect = stride == 1 and in_chs == out_chs
        layers: list[nn.Module] = []
        if expand_ratio != 1:
            layers.append(ConvNormAct(in_chs, hidden, 1, act_layer=nn.ReLU6))
        layers += [
            ConvNormAct(hidden, hidden, 3, stride, groups=hidden, act_layer=nn.ReLU6),
            nn.Conv2d(hidden, out_chs, 1, bias=False),  # linear bottleneck: no activation (Sec. 3.2)
            nn.BatchNorm2d(out_chs),
        ]
        self.conv = nn.Sequential(*layers)
        self.out_channels = out_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(x) if self.use_res_connect else self.conv(x)


class MobileNetV2(nn.Module):
    """``features`` (stem, 17 bottlenecks, 1x1 conv to 1280) -> average pool -> ``classifier`` (dropout, linear)."""

    def __init__(
        self,
        cfg: MobileNetV2Config = MobileNetV2Config(),
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.2,
    ) -> None:
        super().__init__()
        if cfg.width_mult <= 0:
            raise ConfigError(f"width_mult must be > 0, got {cfg.width_mult}")
        self.cfg = cfg
        w, r = cfg.width_mult, cfg.round_nearest
        chs = make_divisible(STEM_WIDTH * w, r)
        # small_input: total stride 8 instead of 32 (see the module docstring).
        stem_stride, strides = small_input_strides([s for *_, s in BLOCKS], small_input)
        layers: list[nn.Module] = [ConvNormAct(in_chans, chs, 3, stem_stride, act_layer=nn.ReLU6)]
        for (t, c, n, _), s in zip(BLOCKS, strides, strict=True):
            out = make_divisible(c * w, r)
            for i in range(n):
                layers.append(InvertedResidual(chs, out, s if i == 0 else 1, t))
                chs = out
        # Sec. 6.1: the last conv is not thinned for multipliers below one.
        self.num_features: int = make_divisible(LAST_WIDTH * max(1.0, w), r)
        layers.append(ConvNormAct(chs, self.num_features, 1, act_layer=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.drop_rate = drop_rate
        self.classifier = nn.Sequential(nn.Dropout(drop_rate), self._linear(num_classes))
        self.init_weights()

    def _linear(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(fc.weight, 0, 0.01)  # torchvision's MobileNetV2 initialisation
        nn.init.zeros_(fc.bias)
        return fc

    def init_weights(self) -> None:
        # torchvision's MobileNetV2 (the paper does not say): He et al. 2015 (arXiv:1502.01852) fan_out normal
        # for convs, BN as the identity, N(0, 0.01) for the classifier (set in _linear).
        kaiming_init_(self, linear=linear_normal_)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[1] = self._linear(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 1280, H/32, W/32); H/8 with small_input

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, C, h, w) -> (B, C)
        return x if pre_logits else self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Table 4 (the two MobileNetV2 rows), then the widths of Fig. 5 / Sec. 6.1 without a table row, whose
# "computed" counts are regression pins (no published count).
VARIANTS: dict[str, Variant] = {
    "mobilenet_v2": Variant(
        MobileNetV2Config(1.0),
        3_504_872,
        "torchvision mobilenet_v2 (count); Sandler et al. 2018 Table 4 (3.4M, 300M MAdds)",
        gmacs=0.300,
        top1=72.0,
    ),
    "mobilenet_v2_1_4": Variant(
        MobileNetV2Config(1.4),
        6_108_776,
        "computed (Sandler et al. 2018 Table 4 says 6.9M; 585M MAdds, 74.7 % top-1)",
        gmacs=0.585,
        top1=74.7,
    ),
    "mobilenet_v2_0_75": Variant(MobileNetV2Config(0.75), 2_636_424, "computed (Fig. 5 width 0.75)"),
    "mobilenet_v2_0_5": Variant(MobileNetV2Config(0.5), 1_968_680, "computed (Fig. 5 width 0.5)"),
    "mobilenet_v2_0_35": Variant(MobileNetV2Config(0.35), 1_677_128, "computed (Fig. 5 width 0.35)"),
}


register_family(
    "mobilenetv2",
    MobileNetV2,
    VARIANTS,
    cam_layer="features",
    # 64 px exercises every stride of the ImageNet form (2x2 final map) at 1/12 of the cost of 224.
    test_input_size=(3, 64, 64),
    small_input_kwargs={"small_input": True},
)

"""ShuffleNet v1 (Zhang, Zhou, Lin & Sun 2017, "ShuffleNet: An Extremely Efficient Convolutional Neural Network
for Mobile Devices", arXiv:1707.01083).

Builds the network of the paper's Table 1: a 3x3 stride-2 convolution and a 3x3 stride-2 max-pool, three
stages of ShuffleNet units (Fig. 2b/c: 1x1 group conv -> channel shuffle -> 3x3 depthwise conv -> 1x1 group
conv, added to the input, or concatenated with a 3x3 average-pooled input where the unit has stride 2),
global average pooling and a linear classifier, for 1, 2, 3, 4 or 8 groups and the scale factors 0.5x-2x
(Sec. 4.1.1, "ShuffleNet s x": s times the channels of ShuffleNet 1x).

Headline numbers (224x224, 1000 classes): ShuffleNet 1x needs 133-143 M multiply-adds (Table 1) and has
1,864,728 parameters with g = 3 and 2,433,768 with g = 8; the authors' released models reach 67.8 % (1x,
g = 3) and 74.1 % top-1 (2x, g = 3) and beat MobileNet v1 at every budget.

Departures from the paper, and why:
- We build the layout of the authors' released PyTorch code (megvii-model/ShuffleNet-Series, ShuffleNetV1),
  which the parameter counts above refer to: the first pointwise layer of stage 2 is not grouped (the paper
  says so too, Sec. 3.3: its 24 input channels are too few), every bottleneck has 1/4 of its stage's output
  channels (also for the stride-2 unit, whose residual branch outputs stage width minus input width), and the
  classifier has no bias.
- Scale factors other than 1x take the channel counts of the released code (0.5x: stem 12, 1.5x: stem 24,
  2x: stem 48; the stage widths are s times Table 1's). The paper's tables give no counts for them.
- Channel shuffle is the paper's (Sec. 3.1: reshape to (g, n), transpose, flatten), the shared
  :func:`~imgcls.models.layers.shuffle.channel_shuffle`. The released code reshapes to (n, g) instead, the
  inverse permutation; both mix every group into every group and train alike, but the released weights
  would need that inverse to compute the same function (and their own attribute names) to load.
- Weight initialisation is He et al. 2015 (arXiv:1502.01852) fan_out for convs, as our other conv families;
  the released code draws conv weights from N(0, 1/fan_in) (the paper does not say).
- The ReLU after a stride-2 unit follows the concatenation (Fig. 2c); the released code applies it to the
  branch only, which is the same because the pooled input is already non-negative.
- Small images (28x28, 32x32): the paper has no such form. ``small_input=True`` gives the stem conv stride 1
  and drops the max-pool, so the total stride is 8 instead of 32 and a 32 px image reaches stage 4 at 4x4
  (as 224 px reaches it at 7x7). No weight changes shape.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import ConvNormAct, kaiming_init_, linear_normal_
from imgcls.models.layers.shuffle import channel_shuffle
from imgcls.models.registry import Variant, register_family

__all__ = ["STAGE_WIDTHS", "VARIANTS", "ShuffleNetV1", "ShuffleNetV1Config", "ShuffleUnit"]

# Table 1: output channels of stages 2, 3, 4 of ShuffleNet 1x for each number of groups g.
STAGE_WIDTHS: dict[int, tuple[int, int, int]] = {
    1: (144, 288, 576),
    2: (200, 400, 800),
    3: (240, 480, 960),
    4: (272, 544, 1088),
    8: (384, 768, 1536),
}


@dataclass(frozen=True)
class ShuffleNetV1Config:
    """One column of the paper's Table 1, scaled by s.

    Attributes:
        groups: groups of the pointwise convolutions (Table 1's g).
        widths: output channels of stages 2, 3, 4.
        stem_width: output channels of conv1 (24 in Table 1).
        depths: units per stage (Table 1's "Repeat": 1 + 3, 1 + 7, 1 + 3).
    """

    groups: int
    widths: tuple[int, int, int]
    stem_width: int = 24
    depths: tuple[int, int, int] = (4, 8, 4)


class ShuffleUnit(nn.Module):
    """Fig. 2b (stride 1: residual addition) and Fig. 2c (stride 2: concatenation with a pooled shortcut).

    ``conv1`` (1x1, ``groups`` or 1 where ``group_first`` is False) -> BN -> ReLU -> channel shuffle ->
    ``dwconv`` (3x3 depthwise, stride) -> BN -> ``conv2`` (1x1, ``groups``) -> BN; no ReLU after the
    depthwise conv (Sec. 3.2).
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int, groups: int, group_first: bool = True) -> None:
        super().__init__()
        mid = out_chs // 4  # Sec. 3.3: bottleneck channels are 1/4 of the unit's output channels
        branch_out = out_chs - in_chs if stride == 2 else out_chs
        first_groups = groups if group_first else 1
        checks = {"bottleneck": mid, "branch output": branch_out, "input": in_chs if group_first else 0}
        for what, chs in checks.items():
            if chs % groups:
                raise ConfigError(f"ShuffleNet unit: {what} channels {chs} not divisible by groups={groups}")
        self.stride = stride
        self.groups = groups
        self.conv1 = ConvNormAct(in_chs, mid, 1, groups=first_groups)
        self.dwconv = ConvNormAct(mid, mid, 3, stride, groups=mid, act_layer=None)
        self.conv2 = ConvNormAct(mid, branch_out, 1, groups=groups, act_layer=None)
        self.shortcut: nn.Module = nn.AvgPool2d(3, 2, padding=1) if stride == 2 else nn.Identity()
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.conv1(x)
        if self.groups > 1:
            out = channel_shuffle(out, self.groups)
        out = self.conv2(self.dwconv(out))
        if self.stride == 2:
            return self.relu(torch.cat([self.shortcut(x), out], dim=1))  # (B, in + branch_out, H/2, W/2)
        return self.relu(x + out)


class ShuffleNetV1(nn.Module):
    """``stem`` (3x3/2 conv) -> ``maxpool`` -> ``stages`` (stages 2-4) -> average pool -> ``fc`` (no bias)."""

    def __init__(
        self,
        cfg: ShuffleNetV1Config,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        # small_input: total stride 8 instead of 32 (see the module docstring).
        self.stem = ConvNormAct(in_chans, cfg.stem_width, 3, 1 if small_input else 2)
        self.maxpool: nn.Module = nn.Identity() if small_input else nn.MaxPool2d(3, 2, padding=1)
        chs = cfg.stem_width
        stages: list[nn.Module] = []
        for i, (depth, width) in enumerate(zip(cfg.depths, cfg.widths)):
            units = []
            for j in range(depth):
                # Sec. 3.3: the first pointwise layer of stage 2 is not grouped (its input is only the stem).
                units.append(
                    ShuffleUnit(chs, width, 2 if j == 0 else 1, cfg.groups, group_first=i > 0 or j > 0)
                )
                chs = width
            stages.append(nn.Sequential(*units))
        self.stages = nn.Sequential(*stages)
        self.num_features: int = chs
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = self._linear(num_classes)
        self.init_weights()

    def _linear(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Linear(self.num_features, num_classes, bias=False)  # released code: no classifier bias
        nn.init.normal_(fc.weight, 0, 0.01)  # released code's classifier initialisation
        return fc

    def init_weights(self) -> None:
        # He et al. 2015 (arXiv:1502.01852) fan_out for convs (see the module docstring), BN as the identity;
        # the classifier is drawn in _linear.
        kaiming_init_(self, linear=linear_normal_)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = self._linear(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.maxpool(self.stem(x)))  # (B, C, H/32, W/32); H/8 with small_input

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (B, C, h, w) -> (B, C)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_T1 = "computed; GMACs: Zhang et al. 2017 Table 1 (complexity row)"
_T1_REL = _T1 + "; top-1 (100 - error): megvii ShuffleNet-Series README (released model, {}M parameters)"
_REL = "computed (released README: {}M); GMACs and top-1 (100 - error) from megvii ShuffleNet-Series README"


def _cfg(groups: int, scale: float = 1.0, stem: int = 24) -> ShuffleNetV1Config:
    widths = tuple(int(w * scale) for w in STAGE_WIDTHS[groups])
    return ShuffleNetV1Config(groups, widths, stem)  # type: ignore[arg-type]


# Counts are ours ("computed"); the released README's rounded ones check five of them (the tests), the g1,
# g2 and g4 counts are regression pins.
# Table 1: one row per column g at 1x (complexity row: 143, 140, 137, 133, 137 MFLOPs, which are multiply-adds);
# then the g = 3 scale factors of Sec. 4.1.1 / Table 5 with the released code's stem widths. (osmr/imgclsmob's
# ShuffleNet counts, e.g. 2,434,768 for g = 8, are these plus 1000: its classifier has a bias.)
VARIANTS: dict[str, Variant] = {
    "shufflenet_v1_g1_1_0": Variant(_cfg(1), 1_530_936, _T1, gmacs=0.143),
    "shufflenet_v1_g2_1_0": Variant(_cfg(2), 1_732_848, _T1, gmacs=0.140),
    "shufflenet_v1_g3_1_0": Variant(_cfg(3), 1_864_728, _T1_REL.format(1.9), gmacs=0.137, top1=67.8),
    "shufflenet_v1_g4_1_0": Variant(_cfg(4), 1_967_344, _T1, gmacs=0.133),
    "shufflenet_v1_g8_1_0": Variant(_cfg(8), 2_433_768, _T1_REL.format(2.4), gmacs=0.137, top1=68.0),
    "shufflenet_v1_g3_0_5": Variant(_cfg(3, 0.5, stem=12), 717_324, _REL.format(0.7), gmacs=0.038, top1=57.3),
    "shufflenet_v1_g3_1_5": Variant(_cfg(3, 1.5), 3_441_168, _REL.format(3.4), gmacs=0.292, top1=71.6),
    "shufflenet_v1_g3_2_0": Variant(
        _cfg(3, 2.0, stem=48), 5_449_776, _REL.format(5.4), gmacs=0.524, top1=74.1
    ),
}

register_family(
    "shufflenet",
    ShuffleNetV1,
    VARIANTS,
    cam_layer="stages",
    # 64 px exercises every stride of the ImageNet form (2x2 final map) at 1/12 of the cost of 224.
    test_input_size=(3, 64, 64),
    small_input_kwargs={"small_input": True},
    # Table 1's complexity row and the released README round to whole MFLOPs: our counts are within 1.1 %.
    gmacs_rtol=0.015,
)

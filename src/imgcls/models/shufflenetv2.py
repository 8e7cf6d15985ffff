"""ShuffleNet V2 (Ma, Zhang, Zheng & Sun 2018, "ShuffleNet V2: Practical Guidelines for Efficient CNN
Architecture Design", arXiv:1807.11164).

Builds the network of the paper's Table 5 at the four complexities 0.5x, 1x, 1.5x and 2x: a 3x3 stride-2
convolution and a 3x3 stride-2 max-pool, three stages of ShuffleNet V2 units (Fig. 3c: channel split, one half
passed through 1x1 conv -> 3x3 depthwise conv -> 1x1 conv, concatenation and channel shuffle; Fig. 3d: the
stride-2 unit, which processes both copies of the input and so doubles the channels), a 1x1 convolution,
global average pooling and a linear classifier. The layout is torchvision's ``shufflenet_v2_x*``, so its
ImageNet checkpoints load with :func:`imgcls.load_pretrained`.

Headline numbers (Table 5, 224x224, 1000 classes): 41, 146, 299 and 591 M multiply-adds ("FLOPs") and 1.4,
2.3, 3.5 and 7.4 M parameters; the exact counts (torchvision's) are 1,366,792 / 2,278,604 / 3,503,624 /
7,393,996. torchvision's ImageNet weights for 1x reach 69.362 % top-1 (2x: 76.230 %).

Departures from the paper, and why:
- The channel split is torchvision's (and the released code's) ``chunk``: the first half is the shortcut;
  the paper's Fig. 3 does not say which half is which, so any choice is the same network.
- Weight initialisation: He et al. 2015 (arXiv:1502.01852) fan_out normal for convs, BN as the identity and
  N(0, 0.01) for the classifier, as our other conv families (the paper does not say; torchvision keeps
  PyTorch's defaults).
- Small images (28x28, 32x32): the paper has no such form. ``small_input=True`` gives conv1 stride 1 and drops
  the max-pool, so the total stride is 8 instead of 32 and a 32 px image reaches stage 4 at 4x4 (as 224 px
  reaches it at 7x7). No weight changes shape, so torchvision's checkpoints still load into this form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import ConvNormAct, kaiming_init_, linear_normal_
from imgcls.models.layers.shuffle import channel_shuffle
from imgcls.models.registry import Variant, register_family

__all__ = ["VARIANTS", "InvertedResidual", "ShuffleNetV2", "ShuffleNetV2Config"]


@dataclass(frozen=True)
class ShuffleNetV2Config:
    """One column of the paper's Table 5.

    Attributes:
        widths: output channels of conv1, stage 2, stage 3, stage 4 and conv5.
        depths: units per stage (Table 5's "Repeat": 1 + 3, 1 + 7, 1 + 3).
    """

    widths: tuple[int, int, int, int, int]
    depths: tuple[int, int, int] = (4, 8, 4)


def _dw(chs: int, stride: int) -> list[nn.Module]:
    # A 3x3 depthwise conv and its BN, without ReLU (as in ShuffleNet v1, Sec. 3.2 of that paper).
    return [nn.Conv2d(chs, chs, 3, stride, 1, groups=chs, bias=False), nn.BatchNorm2d(chs)]


def _pw(in_chs: int, out_chs: int) -> list[nn.Module]:
    return [nn.Conv2d(in_chs, out_chs, 1, bias=False), nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True)]


class InvertedResidual(nn.Module):
    """The ShuffleNet V2 unit (Fig. 3c, stride 1; Fig. 3d, stride 2), named as torchvision names it.

    Stride 1: split the input in halves, keep the first, pass the second through ``branch2`` (1x1 -> BN ->
    ReLU -> 3x3 dw -> BN -> 1x1 -> BN -> ReLU), concatenate. Stride 2: ``branch1`` (3x3 dw -> BN -> 1x1 -> BN
    -> ReLU) and ``branch2`` both see the whole input. Then shuffle the two halves together.
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        if out_chs % 2:
            raise ConfigError(f"ShuffleNetV2 unit: output channels {out_chs} must be even (two branches)")
        if stride == 1 and in_chs != out_chs:
            raise ConfigError(f"ShuffleNetV2 stride-1 unit keeps its width: got {in_chs} -> {out_chs}")
        self.stride = stride
        half = out_chs // 2
        # Flat Sequentials (not ConvNormAct) so the indices are torchvision's (branch2.3 is the dw conv, ...).
        self.branch1 = (
            nn.Sequential(*_dw(in_chs, stride), *_pw(in_chs, half)) if stride > 1 else nn.Sequential()
        )
        self.branch2 = nn.Sequential(
            *_pw(in_chs if stride > 1 else half, half), *_dw(half, stride), *_pw(half, half)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)  # (B, C, H, W) -> 2 x (B, C/2, H, W)
            out = torch.cat([x1, self.branch2(x2)], dim=1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], dim=1)  # (B, out, H/2, W/2)
        return channel_shuffle(out, 2)


class ShuffleNetV2(nn.Module):
    """``conv1`` -> ``maxpool`` -> ``stage2..4`` -> ``conv5`` -> average pool -> ``fc`` (torchvision's names)."""

    def __init__(
        self,
        cfg: ShuffleNetV2Config,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        stem, *stage_widths, last = cfg.widths
        # small_input: total stride 8 instead of 32 (see the module docstring).
        self.conv1 = ConvNormAct(in_chans, stem, 3, 1 if small_input else 2)
        self.maxpool: nn.Module = nn.Identity() if small_input else nn.MaxPool2d(3, 2, padding=1)
        chs = stem
        stage_names = []
        for i, (depth, width) in enumerate(zip(cfg.depths, stage_widths)):
            units = [InvertedResidual(chs, width, 2)] + [
                InvertedResidual(width, width, 1) for _ in range(depth - 1)
            ]
            name = f"stage{i + 2}"
            self.add_module(name, nn.Sequential(*units))
            stage_names.append(name)
            chs = width
        self.stage_names: tuple[str, ...] = tuple(stage_names)
        self.conv5 = ConvNormAct(chs, last, 1)
        self.num_features: int = last
        self.fc = self._linear(num_classes)
        self.init_weights()

    @property
    def stages(self) -> list[nn.Module]:
        """Stages 2, 3 and 4 in order, for feature extraction."""
        return [getattr(self, n) for n in self.stage_names]

    def _linear(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        fc = nn.Linear(self.num_features, num_classes)
        nn.init.normal_(fc.weight, 0, 0.01)  # as torchvision's MobileNetV2 classifier (see init_weights)
        nn.init.zeros_(fc.bias)
        return fc

    def init_weights(self) -> None:
        # He et al. 2015 (arXiv:1502.01852) fan_out for convs, BN as the identity (see the module docstring);
        # the classifier is drawn in _linear.
        kaiming_init_(self, linear=linear_normal_)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = self._linear(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.conv1(x))  # (B, 24, H/4, W/4); (B, 24, H, W) with small_input
        for stage in self.stages:
            x = stage(x)
        return self.conv5(x)  # (B, num_features, H/32, W/32); H/8 with small_input

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean((2, 3))  # global average pool: (B, C, h, w) -> (B, C)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_SOURCE = "torchvision ShuffleNet_V2_{}_Weights (parameters, top-1); GMACs: Ma et al. 2018 Table 5"

# Table 5: one column per complexity; widths are conv1, stages 2-4 and conv5 (2048 at 2x). Parameters at 1000
# classes, multiply-adds at 224 (G), ImageNet top-1 (%).
VARIANTS: dict[str, Variant] = {
    "shufflenet_v2_x0_5": Variant(
        ShuffleNetV2Config((24, 48, 96, 192, 1024)),
        1_366_792,
        _SOURCE.format("X0_5"),
        gmacs=0.041,
        top1=60.552,
    ),
    "shufflenet_v2_x1_0": Variant(
        ShuffleNetV2Config((24, 116, 232, 464, 1024)),
        2_278_604,
        _SOURCE.format("X1_0"),
        gmacs=0.146,
        top1=69.362,
    ),
    "shufflenet_v2_x1_5": Variant(
        ShuffleNetV2Config((24, 176, 352, 704, 1024)),
        3_503_624,
        _SOURCE.format("X1_5"),
        gmacs=0.299,
        top1=72.996,
    ),
    "shufflenet_v2_x2_0": Variant(
        ShuffleNetV2Config((24, 244, 488, 976, 2048)),
        7_393_996,
        _SOURCE.format("X2_0"),
        gmacs=0.591,
        top1=76.230,
    ),
}

register_family(
    "shufflenetv2",
    ShuffleNetV2,
    VARIANTS,
    cam_layer="conv5",
    # 64 px exercises every stride of the ImageNet form (2x2 final map) at 1/12 of the cost of 224.
    test_input_size=(3, 64, 64),
    small_input_kwargs={"small_input": True},
    # Table 5's MFLOPs (41, 146, 299, 591) are 0.8-1.3 % above our counts.
    gmacs_rtol=0.015,
)

"""ResNet (He, Zhang, Ren & Sun 2015, "Deep Residual Learning for Image Recognition", arXiv:1512.03385).

Builds the ImageNet ResNets of the paper's Table 1 (18/34 layers with basic blocks, 50/101/152 with
bottlenecks) in torchvision's layout, so its published checkpoints load with :func:`imgcls.load_pretrained`,
plus three bottleneck relatives that share the code:

- ResNeXt-50 32x4d (Xie, Girshick, Dollar, Tu & He 2017, "Aggregated Residual Transformations for Deep Neural
  Networks", arXiv:1611.05431): the 3x3 conv of every bottleneck is grouped (cardinality 32, width 4 each).
- Wide ResNet-50-2 (Zagoruyko & Komodakis 2016, "Wide Residual Networks", arXiv:1605.07146): bottleneck width
  doubled, outer widths unchanged (torchvision's ``wide_resnet50_2``).
- SE-ResNet-50 (Hu, Shen & Sun 2018, "Squeeze-and-Excitation Networks", arXiv:1709.01507): a
  squeeze-and-excitation gate (reduction r = 16) in every bottleneck.

Headline numbers (224x224 single crop, 1000 classes): ResNet-50 has 25.6 M parameters, 4.1 GMACs and reaches
76.1 % top-1 with torchvision's V1 weights; the paper's ResNet-152 ensemble won ILSVRC 2015 with 3.57 % top-5
error. Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth", arXiv:1603.09382) is an
option (``drop_path_rate``) with the paper's linear decay over all blocks.

Departures from the papers, and why:
- "ResNet v1.5": in resnet50/101/152 and wide_resnet50_2 a downsampling bottleneck puts its stride 2 on the
  3x3 conv (the ResNet paper puts it on the first 1x1 conv, which skips three quarters of the input).
  torchvision, whose checkpoints we load, does this; it is about 0.5 % top-1 better for about 6 % more compute
  (4.09 vs 3.86 GMACs for ResNet-50). ``ResNetConfig(stride_in_1x1=True)`` gives the paper's form, whose
  multiply-adds the tests check against Table 1. ResNeXt's own code already strides the 3x3 conv; SE-ResNet-50
  is registered in its paper's form (stride on the 1x1, like the original SENet model). Basic blocks are
  unaffected (their first conv is the 3x3).
- Projection shortcuts are used only where the shape changes (the paper's option B, Table 3), as torchvision.
- Plain networks: ``ResNetConfig(residual=False)`` (``create_model("resnet34", residual=False)``) builds the
  plain 18/34-layer baselines of the degradation comparison (Sec. 3.3 / 4.1, Table 2, Fig. 4 left): the same
  stacked layers with no shortcut at all, so no identity addition and no projection either (the paper's
  plain nets have none; a stage's first conv changes the width and strides). In that comparison the paper's
  residual nets use parameter-free zero-padding shortcuts (option A), "so they have no extra parameter
  compared to the plain counterparts"; ours project (option B, as torchvision), so a plain net has exactly
  the parameters of its residual net minus the three 1x1 conv + BN projections (173,824 for 18 and 34
  layers: plain-18 11,515,688, plain-34 21,623,848). Basic blocks only: the paper trains no plain
  bottleneck nets.
- SE placement: the gate rescales the output of the residual branch after its last BN (``bn3``), before
  the addition of the shortcut (Hu et al. 2018, Fig. 3, "SE-ResNet module"); the squeeze is two 1x1 convs with
  bias, C -> C/16 -> C, ReLU then sigmoid. With r = 16 this adds 2,530,992 parameters to ResNet-50, giving
  exactly 28,088,024 (the paper speaks of "~2.5 million additional parameters"; the tests check the count).
  It has no torchvision layout; its keys follow the same naming plus ``layerN.M.se.fc1/fc2``.
- Zero-initialised last BN gamma of each residual branch (``zero_init_residual=True``, off by default as in
  torchvision) follows Goyal et al. 2017 (arXiv:1706.02677), not the ResNet paper.
- Small images (28x28, 32x32): the paper has no such form. ``small_input=True`` replaces the 7x7 stride-2 stem
  conv and the 3x3 stride-2 max-pool by a single 3x3 stride-1 conv (the "CIFAR-style" stem of the paper's
  Section 4.2 networks), so at 32x32 the four stages see 32/16/8/4 pixels instead of 8/4/2/1.
  ``conv1.weight`` then has shape (64, C, 3, 3), so ImageNet checkpoints do not load into this form.
- Stochastic depth was proposed for these networks (Huang et al. evaluate it on the ImageNet ResNet-152); we
  drop the residual branch per sample and rescale by 1/(1-p) during training (identity at evaluation) rather
  than rescaling at test time, which is the same in expectation.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import DropPath, SqueezeExcite, drop_path_rates, kaiming_init_
from imgcls.models.registry import Variant, register_family

__all__ = ["BasicBlock", "Bottleneck", "ResNet", "ResNetConfig", "VARIANTS", "conv1x1", "conv3x3"]


@dataclass(frozen=True)
class ResNetConfig:
    """One column of the paper's Table 1 (plus the ResNeXt / WRN / SE width options).

    Attributes:
        block: ``"basic"`` (two 3x3 convs) or ``"bottleneck"`` (1x1 reduce, 3x3, 1x1 expand x4).
        layers: blocks per stage (conv2_x .. conv5_x in Table 1).
        widths: the stage widths ``planes`` (a bottleneck outputs 4x this).
        stem_width: output channels of the stem conv.
        groups: cardinality of the 3x3 convs (ResNeXt's C): the middle conv of a bottleneck; both convs of a
            basic block (an option of ours, so that ``create_model("resnet18", groups=2)`` works: ResNeXt
            groups bottleneck blocks only).
        width_per_group: bottleneck width per group at the first stage's 64 planes (ResNeXt's d; 64 with
            groups=1 is ResNet, 128 is WRN-50-2).
        se_reduction: squeeze-and-excitation reduction ratio r; 0 means no SE.
        stride_in_1x1: put a downsampling bottleneck's stride on its first 1x1 conv, as the ResNet and SENet
            papers do ("v1"); False puts it on the 3x3 conv, as torchvision does ("v1.5").
        residual: False builds the paper's plain network (basic blocks without any shortcut).
    """

    block: Literal["basic", "bottleneck"]
    layers: tuple[int, ...]
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    groups: int = 1
    width_per_group: int = 64
    se_reduction: int = 0
    stride_in_1x1: bool = False
    residual: bool = True


def conv3x3(in_chs: int, out_chs: int, stride: int = 1, groups: int = 1) -> nn.Conv2d:
    """3x3 conv, padding 1, no bias (a BN follows)."""
    return nn.Conv2d(in_chs, out_chs, 3, stride, padding=1, groups=groups, bias=False)


def conv1x1(in_chs: int, out_chs: int, stride: int = 1) -> nn.Conv2d:
    """1x1 conv, no bias (a BN follows)."""
    return nn.Conv2d(in_chs, out_chs, 1, stride, bias=False)


def _se(channels: int, reduction: int) -> nn.Module:
    return SqueezeExcite(channels, channels // reduction) if reduction else nn.Identity()


class BasicBlock(nn.Module):
    """Two 3x3 conv-BN layers plus a shortcut (the paper's Fig. 2 left); ReLU after the addition.

    ``downsample`` maps the input to the output's shape where they differ (a 1x1 conv + BN projection in the
    ImageNet nets, a parameter-free zero-padding shortcut in the CIFAR nets). ``residual=False`` removes the
    shortcut altogether: the "plain" networks of the paper's degradation experiment (Fig. 6).
    """

    expansion = 1

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        residual: bool = True,
        groups: int = 1,
        se_reduction: int = 0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        if drop_path > 0 and not residual:
            raise ConfigError("drop_path needs a residual block: a plain block has no shortcut to keep")
        self.conv1 = conv3x3(in_chs, planes, stride, groups)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes, groups=groups)
        self.bn2 = nn.BatchNorm2d(planes)
        self.se = _se(planes, se_reduction)
        self.downsample = downsample
        self.residual = residual
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn2

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.se(self.bn2(self.conv2(out)))
        if not self.residual:
            return self.relu(out)
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.drop_path(out) + shortcut)


class Bottleneck(nn.Module):
    """1x1 reduce -> 3x3 (grouped for ResNeXt) -> 1x1 expand x4, plus a shortcut (the paper's Fig. 5 right).

    A downsampling block strides its 3x3 conv (v1.5), or its first 1x1 conv with ``stride_in_1x1`` (v1).
    With ``se_reduction`` the SE gate rescales the branch output after ``bn3``, before the addition.
    """

    expansion = 4

    def __init__(
        self,
        in_chs: int,
        planes: int,
        stride: int = 1,
        downsample: nn.Module | None = None,
        *,
        groups: int = 1,
        width_per_group: int = 64,
        se_reduction: int = 0,
        stride_in_1x1: bool = False,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        # ResNeXt: C groups of d channels at the first stage's 64 planes, scaled with the stage width.
        width = int(planes * (width_per_group / 64.0)) * groups
        out_chs = planes * self.expansion
        s1, s3 = (stride, 1) if stride_in_1x1 else (1, stride)
        self.conv1 = conv1x1(in_chs, width, s1)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = conv3x3(width, width, s3, groups)
        self.bn2 = nn.BatchNorm2d(width)
        self.conv3 = conv1x1(width, out_chs)
        self.bn3 = nn.BatchNorm2d(out_chs)
        self.relu = nn.ReLU(inplace=True)
        self.se = _se(out_chs, se_reduction)
        self.downsample = downsample
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def last_bn(self) -> nn.BatchNorm2d:
        return self.bn3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.se(self.bn3(self.conv3(out)))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(self.drop_path(out) + shortcut)


class ResNet(nn.Module):
    """Stem (7x7/2 conv, 3x3/2 max-pool) -> four stages ``layer1..layer4`` -> global average pool -> ``fc``.

    Attribute names are torchvision's (``conv1``, ``bn1``, ``layer1``.., ``fc``) so its checkpoints load.
    """

    def __init__(
        self,
        cfg: ResNetConfig,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        zero_init_residual: bool = False,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(cfg.layers) != len(cfg.widths):
            raise ConfigError(
                f"ResNetConfig has {len(cfg.layers)} layers entries but {len(cfg.widths)} widths"
            )
        if cfg.block == "basic" and cfg.width_per_group != 64:
            raise ConfigError("basic blocks take no width_per_group: use block='bottleneck'")
        if cfg.groups < 1 or (
            cfg.block == "basic" and any(w % cfg.groups for w in (cfg.stem_width, *cfg.widths))
        ):
            raise ConfigError(
                f"groups={cfg.groups} must be >= 1 and, for basic blocks, divide every width "
                f"({cfg.stem_width}, {', '.join(map(str, cfg.widths))})"
            )
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        if not cfg.residual:
            if cfg.block != "basic":
                raise ConfigError(
                    "residual=False builds the paper's plain nets, which have basic blocks only"
                )
            if drop_path_rate > 0 or zero_init_residual:
                raise ConfigError(
                    "drop_path_rate and zero_init_residual act on residual branches: a plain net "
                    "(residual=False) has none"
                )
        self.cfg = cfg
        if small_input:
            # CIFAR-style stem (He et al. 2015, Sec. 4.2): one 3x3 stride-1 conv, no max-pool.
            self.conv1 = nn.Conv2d(in_chans, cfg.stem_width, 3, 1, padding=1, bias=False)
            self.maxpool: nn.Module = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(in_chans, cfg.stem_width, 7, 2, padding=3, bias=False)
            self.maxpool = nn.MaxPool2d(3, 2, padding=1)
        self.bn1 = nn.BatchNorm2d(cfg.stem_width)
        self.relu = nn.ReLU(inplace=True)

        expansion = BasicBlock.expansion if cfg.block == "basic" else Bottleneck.expansion
        rates = drop_path_rates(drop_path_rate, sum(cfg.layers))
        in_chs = cfg.stem_width
        stage_names = []
        for i, (depth, planes) in enumerate(zip(cfg.layers, cfg.widths, strict=True)):
            stride = 1 if i == 0 else 2
            blocks: list[nn.Module] = []
            for j in range(depth):
                s = stride if j == 0 else 1
                out_chs = planes * expansion
                down = None
                if cfg.residual and (s != 1 or in_chs != out_chs):  # projection shortcut (option B, Table 3)
                    down = nn.Sequential(conv1x1(in_chs, out_chs, s), nn.BatchNorm2d(out_chs))
                blocks.append(self._block(in_chs, planes, s, down, rates.pop(0)))
                in_chs = out_chs
            name = f"layer{i + 1}"
            self.add_module(name, nn.Sequential(*blocks))
            stage_names.append(name)
        self.stage_names: tuple[str, ...] = tuple(stage_names)
        self.num_features: int = in_chs
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc: nn.Module = nn.Linear(in_chs, num_classes) if num_classes > 0 else nn.Identity()
        self.init_weights(zero_init_residual)

    def _block(self, in_chs: int, planes: int, stride: int, down: nn.Module | None, dp: float) -> nn.Module:
        cfg = self.cfg
        if cfg.block == "basic":
            return BasicBlock(
                in_chs,
                planes,
                stride,
                down,
                groups=cfg.groups,
                residual=cfg.residual,
                se_reduction=cfg.se_reduction,
                drop_path=dp,
            )
        return Bottleneck(
            in_chs,
            planes,
            stride,
            down,
            groups=cfg.groups,
            width_per_group=cfg.width_per_group,
            se_reduction=cfg.se_reduction,
            stride_in_1x1=cfg.stride_in_1x1,
            drop_path=dp,
        )

    @property
    def stages(self) -> Sequence[nn.Module]:
        """The four stages in order (``layer1``..``layer4``), for feature extraction."""
        return [getattr(self, n) for n in self.stage_names]

    def init_weights(self, zero_init_residual: bool = False) -> None:
        # He et al. 2015 ("Delving Deep into Rectifiers", arXiv:1502.01852) with fan_out, as torchvision and
        # fb.resnet.torch initialise ResNets; the SE gates' conv biases keep PyTorch's default.
        kaiming_init_(self, zero_conv_bias=False)
        if zero_init_residual:
            # Goyal et al. 2017 (arXiv:1706.02677, Sec. 5.1): each residual block starts as the identity.
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    nn.init.zeros_(m.last_bn().weight)

    def reset_classifier(self, num_classes: int) -> None:
        self.fc = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))  # (B, 64, H/4, W/4); (B, 64, H, W) small_input
        for stage in self.stages:
            x = stage(x)
        return x  # (B, num_features, H/32, W/32); H/8 with small_input

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)  # (B, C, h, w) -> (B, C)
        return x if pre_logits else self.fc(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_TV = "torchvision {} IMAGENET1K_V1 (parameters, GFLOPs at 224, top-1 single crop)"

# He et al. 2015, Table 1: one column per depth. (The paper's own FLOPs, 1.8/3.6/3.8/7.6/11.3 x 10^9, are for
# stride-on-1x1 bottlenecks; torchvision's figures below are for the v1.5 models built here.)
VARIANTS: dict[str, Variant] = {
    "resnet18": Variant(
        ResNetConfig("basic", (2, 2, 2, 2)),
        11_689_512, _TV.format("ResNet18_Weights"), gmacs=1.81, top1=69.758,
    ),
    "resnet34": Variant(
        ResNetConfig("basic", (3, 4, 6, 3)),
        21_797_672, _TV.format("ResNet34_Weights"), gmacs=3.66, top1=73.314,
    ),
    "resnet50": Variant(
        ResNetConfig("bottleneck", (3, 4, 6, 3)),
        25_557_032, _TV.format("ResNet50_Weights"), gmacs=4.09, top1=76.13,
    ),
    "resnet101": Variant(
        ResNetConfig("bottleneck", (3, 4, 23, 3)),
        44_549_160, _TV.format("ResNet101_Weights"), gmacs=7.80, top1=77.374,
    ),
    "resnet152": Variant(
        ResNetConfig("bottleneck", (3, 8, 36, 3)),
        60_192_808, _TV.format("ResNet152_Weights"), gmacs=11.51, top1=78.312,
    ),
    # Xie et al. 2017, Table 1 (right column, ResNeXt-50 32x4d: 25.0 M params, 4.2 GFLOPs).
    "resnext50_32x4d": Variant(
        ResNetConfig("bottleneck", (3, 4, 6, 3), groups=32, width_per_group=4),
        25_028_904, _TV.format("ResNeXt50_32X4D_Weights"), gmacs=4.23, top1=77.618,
    ),
    # Zagoruyko & Komodakis 2016, Sec. "ImageNet" (WRN-50-2-bottleneck), as torchvision's wide_resnet50_2.
    "wide_resnet50_2": Variant(
        ResNetConfig("bottleneck", (3, 4, 6, 3), width_per_group=128),
        68_883_240, _TV.format("Wide_ResNet50_2_Weights"), gmacs=11.40, top1=78.468,
    ),
    # Hu et al. 2018, Table 2 (SE-ResNet-50: 3.87 GFLOPs, 23.29 % top-1 error, single 224 crop); the count is
    # ResNet-50 + 2,530,992 SE parameters (the paper's "~2.5 million additional parameters").
    "seresnet50": Variant(
        ResNetConfig("bottleneck", (3, 4, 6, 3), se_reduction=16, stride_in_1x1=True),
        28_088_024, "Hu et al. 2018 Table 2 (GFLOPs; top-1 = 100 - 23.29 % error); count: ResNet-50 + SE",
        gmacs=3.87, top1=76.71,
    ),
}  # fmt: skip

register_family(
    "resnet",
    ResNet,
    VARIANTS,
    cam_layer="layer4",
    # 64 px is the cheapest input that exercises every stride of the ImageNet stem (2x2 final map).
    test_input_size=(3, 64, 64),
    small_input_kwargs={"small_input": True},
)

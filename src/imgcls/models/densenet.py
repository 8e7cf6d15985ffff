"""DenseNet: the ImageNet DenseNets in torchvision's layout, and the CIFAR DenseNets.

Paper: "Densely Connected Convolutional Networks", Gao Huang, Zhuang Liu, Laurens van der Maaten and Kilian Q.
Weinberger, CVPR 2017, arXiv:1608.06993.

Builds DenseNets: dense blocks in which every layer (BN-ReLU-conv1x1 bottleneck to ``bn_size * k`` channels,
then BN-ReLU-conv3x3 to ``k``) receives the concatenation of all earlier feature maps of its block, joined by
transition layers (BN-ReLU-conv1x1 compressing by ``compression``, then 2x2 average pooling). Headline:
DenseNet-121 (8.0M parameters) reaches 74.434% ImageNet top-1 with torchvision's weights (25.02% error in
the paper's Table 3); DenseNet-BC (L=190, k=40) 3.46% CIFAR-10+ error, DenseNet-BC (L=100, k=12) 4.51% with
0.8M parameters (Table 2).

The ImageNet variants (Table 1: DenseNet-121/169/201/264, k = 32) follow torchvision's module names, so
``state_dict()`` keys and shapes equal torchvision's (``features.conv0``, ``features.norm0``,
``features.denseblock{i}.denselayer{j}.norm1/conv1/norm2/conv2``, ``features.transition{i}.norm/conv``,
``features.norm5``, ``classifier``) and torchvision's ImageNet checkpoints load with
:func:`imgcls.models.load_pretrained` (which also maps the old ``denselayer1.norm.1`` names); the forward
pass computes torchvision's function (features -> ReLU -> global average pool -> linear).

Where we depart from the paper, or decide what it leaves open:
- Small-input form (``small_input=True``, picked by ``create_model(..., image_size<=64)`` for the ImageNet
  variants): after the paper's ImageNet stem (7x7/2 conv, 3x3/2 max-pool) a 28x28 image is 7x7, 1x1 after
  the second transition, and the third transition's 2x2 pooling fails. We use a 3x3 stride-1 ``conv0`` and
  drop ``pool0``, keeping ``norm0``/``relu0`` and every other layer (so all other weights keep their shapes
  and can be fine-tuned from an ImageNet checkpoint with ``strict=False``). A 32x32 image then reaches the
  four blocks at 32, 16, 8 and 4 pixels. This is our adaptation; the paper's own small-image networks are
  the CIFAR variants below.
- CIFAR variants (Table 2): the paper's form: one 3x3 convolution with 16 channels (2k for DenseNet-BC) and
  no BN-ReLU before the first block (the first dense layer's BN-ReLU follows it), three dense blocks of
  ``(L - 4) / 3`` plain layers (BN-ReLU-conv3x3) or ``(L - 4) / 6`` bottleneck layers (DenseNet-BC), and
  compression 0.5 for -BC, 1 otherwise. They keep torchvision's naming, with the closing norm named
  ``norm{blocks + 1}`` (``norm4`` for three blocks; torchvision's ``norm5`` follows four).
- Dropout (``drop_rate``) after each dense layer's 3x3 convolution, as torchvision does; the paper uses 0.2
  after every convolution except the first, and only on CIFAR without augmentation. Default 0.
- The transition output width is ``floor(compression * C)``; torchvision's ``C // 2`` is the same for 0.5.
- ``memory_efficient=True`` recomputes each bottleneck's concatenation + BN-ReLU-conv1x1 in the backward pass
  (gradient checkpointing; Pleiss et al. 2017, arXiv:1707.06990) instead of storing it: quadratic memory
  becomes linear at about 15-20% more compute. As in torchvision, BatchNorm running statistics are then
  updated twice per step (once more in the recomputation), a negligible change to their moving average.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from dataclasses import dataclass

import torch
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import kaiming_init_, linear_zero_bias_
from imgcls.models.registry import Variant, register_family

__all__ = [
    "VARIANTS",
    "DenseBlock",
    "DenseLayer",
    "DenseNet",
    "DenseNetConfig",
    "Transition",
    "cifar_config",
    "densenet_cifar",
]


@dataclass(frozen=True)
class DenseNetConfig:
    """A DenseNet.

    Attributes:
        growth_rate: k, the channels each dense layer adds.
        block_config: dense layers per block.
        num_init_features: channels of the stem convolution.
        bn_size: bottleneck width as a multiple of k (4 in the paper, "DenseNet-B"); 0 for no bottleneck
            (a layer is then one BN-ReLU-conv3x3).
        compression: transition output width over its input width (0.5 for "DenseNet-C", 1 for none).
        stem: ``"imagenet"`` (7x7/2 conv, BN-ReLU, 3x3/2 max-pool) or ``"cifar"`` (one 3x3 conv).
        small_input: for the ImageNet stem, use a 3x3 stride-1 ``conv0`` and no max-pool (module docstring).
        drop_rate: dropout after each dense layer.
        memory_efficient: recompute bottlenecks in the backward pass instead of storing them.
    """

    growth_rate: int = 32
    block_config: tuple[int, ...] = (6, 12, 24, 16)
    num_init_features: int = 64
    bn_size: int = 4
    compression: float = 0.5
    stem: str = "imagenet"
    small_input: bool = False
    drop_rate: float = 0.0
    memory_efficient: bool = False

    def __post_init__(self) -> None:
        if self.stem not in ("imagenet", "cifar"):
            raise ConfigError(f"unknown DenseNet stem '{self.stem}': use 'imagenet' or 'cifar'")
        if not 0.0 < self.compression <= 1.0:
            raise ConfigError(f"DenseNet compression must be in (0, 1], got {self.compression}")
        if self.growth_rate < 1 or not self.block_config or min(self.block_config) < 1:
            raise ConfigError(
                f"DenseNet needs growth_rate >= 1 and at least one layer per block, got "
                f"k={self.growth_rate}, blocks={self.block_config}"
            )


def cifar_config(depth: int, growth_rate: int, bc: bool = True) -> DenseNetConfig:
    """The paper's CIFAR DenseNet of depth L (three blocks; Table 2): -BC when ``bc``, plain otherwise.

    L counts the stem conv, the two transition convs, the classifier and the dense layers' convolutions
    (two per bottleneck layer), so a block has ``(L - 4) / 6`` layers for -BC and ``(L - 4) / 3`` otherwise.
    """
    convs_per_layer = 2 if bc else 1
    step = 3 * convs_per_layer
    if depth < 4 + step or (depth - 4) % step:
        below = max(4 + step, depth - (depth - 4) % step)
        raise ConfigError(
            f"DenseNet{'-BC' if bc else ''} depth {depth} is not of the form {step}n + 4 (n layers per "
            f"block): use depth {below} or {below + step}"
        )
    n = (depth - 4) // step
    return DenseNetConfig(
        growth_rate=growth_rate,
        block_config=(n, n, n),
        num_init_features=2 * growth_rate if bc else 16,
        bn_size=4 if bc else 0,
        compression=0.5 if bc else 1.0,
        stem="cifar",
    )


_TV = "torchvision (DenseNet{}_Weights.IMAGENET1K_V1 meta: num_params, GFLOPS, acc@1)"
_T2 = "computed from the paper's definition; arXiv:1608.06993 Table 2 prints {}"


def _tv(blocks: tuple[int, ...]) -> DenseNetConfig:
    return DenseNetConfig(block_config=blocks)


def _cifar(depth: int, k: int, bc: bool, num_params: int, printed: str, top1: float) -> Variant:
    """A Table 2 row: a 32 px network whose count is taken at 10 classes; the registry test runs it at 8x8
    (8 -> 4 -> 2), which keeps the deep ones fast on CPU."""
    cfg = cifar_config(depth, k, bc=bc)
    return Variant(
        cfg, num_params, _T2.format(printed), top1=top1, input_size=32, num_classes=10, test_size=8
    )


VARIANTS: dict[str, Variant] = {
    # Table 1 of the paper: the ImageNet architectures, k = 32, blocks of (6, 12, n3, n4) layers.
    "densenet121": Variant(_tv((6, 12, 24, 16)), 7_978_856, _TV.format(121), gmacs=2.834, top1=74.434),
    "densenet169": Variant(_tv((6, 12, 32, 32)), 14_149_480, _TV.format(169), gmacs=3.36, top1=75.6),
    "densenet201": Variant(_tv((6, 12, 48, 32)), 20_013_928, _TV.format(201), gmacs=4.29, top1=76.896),
    # No published count: a regression pin.
    "densenet264": Variant(_tv((6, 12, 64, 48)), 33_337_704, "computed from Table 1 of arXiv:1608.06993"),
    # Table 2 of the paper: the CIFAR networks (L, k, #params); top-1 = 100 - CIFAR-10+ error (the
    # standard flip/translate augmentation).
    "densenet40_k12": _cifar(40, 12, False, 1_019_722, "1.0M", 94.76),
    "densenet100_k12": _cifar(100, 12, False, 6_979_642, "7.0M", 95.90),
    "densenet100_k24": _cifar(100, 24, False, 27_249_082, "27.2M", 96.26),
    "densenet_bc_100_k12": _cifar(100, 12, True, 769_162, "0.8M", 95.49),
    "densenet_bc_250_k24": _cifar(250, 24, True, 15_324_406, "15.3M", 96.38),
    "densenet_bc_190_k40": _cifar(190, 40, True, 25_624_430, "25.6M", 96.54),
}


class DenseLayer(nn.Module):
    """BN-ReLU-conv1x1 (to ``bn_size * k``) -> BN-ReLU-conv3x3 (to k) on the concatenated earlier features.

    With ``bn_size=0`` (no bottleneck) it is BN-ReLU-conv3x3 alone, named ``norm1/relu1/conv1``.
    Names follow torchvision's ``_DenseLayer``.
    """

    def __init__(
        self,
        in_chs: int,
        growth_rate: int,
        bn_size: int,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_chs)
        self.relu1 = nn.ReLU(inplace=True)
        self.bottleneck = bn_size > 0
        if self.bottleneck:
            self.conv1 = nn.Conv2d(in_chs, bn_size * growth_rate, 1, bias=False)
            self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
            self.relu2 = nn.ReLU(inplace=True)
            self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, 3, padding=1, bias=False)
        else:
            self.conv1 = nn.Conv2d(in_chs, growth_rate, 3, padding=1, bias=False)
        self.drop_rate = drop_rate
        self.memory_efficient = memory_efficient

    def _first(self, *features: torch.Tensor) -> torch.Tensor:
        # concat (B, C0, H, W), (B, k, H, W), ... -> (B, C0 + j*k, H, W), then BN-ReLU-conv1
        return self.conv1(self.relu1(self.norm1(torch.cat(features, 1))))

    def forward(self, features: list[torch.Tensor]) -> torch.Tensor:
        if self.memory_efficient and self.bottleneck and torch.is_grad_enabled():
            out = cp.checkpoint(self._first, *features, use_reentrant=False)
        else:
            out = self._first(*features)
        if self.bottleneck:
            out = self.conv2(self.relu2(self.norm2(out)))
        if self.drop_rate > 0:
            out = F.dropout(out, p=self.drop_rate, training=self.training)
        return out


class DenseBlock(nn.ModuleDict):
    """``num_layers`` dense layers ``denselayer1..n``; returns the input and all new maps concatenated."""

    def __init__(
        self,
        num_layers: int,
        in_chs: int,
        growth_rate: int,
        bn_size: int,
        drop_rate: float = 0.0,
        memory_efficient: bool = False,
    ) -> None:
        super().__init__()
        for i in range(num_layers):
            layer = DenseLayer(in_chs + i * growth_rate, growth_rate, bn_size, drop_rate, memory_efficient)
            self.add_module(f"denselayer{i + 1}", layer)
        self.out_chs = in_chs + num_layers * growth_rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for layer in self.values():
            features.append(layer(features))
        return torch.cat(features, 1)  # (B, C_in + n*k, H, W)


class Transition(nn.Sequential):
    """BN-ReLU-conv1x1 (to ``out_chs``) -> 2x2 average pooling; names follow torchvision's ``_Transition``."""

    def __init__(self, in_chs: int, out_chs: int) -> None:
        super().__init__(
            OrderedDict(
                norm=nn.BatchNorm2d(in_chs),
                relu=nn.ReLU(inplace=True),
                conv=nn.Conv2d(in_chs, out_chs, 1, bias=False),
                pool=nn.AvgPool2d(2, stride=2),
            )
        )


class DenseNet(nn.Module):
    """DenseNet with torchvision's module names: ``features`` (stem, blocks, transitions, final norm) and
    ``classifier``."""

    def __init__(self, cfg: DenseNetConfig, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        c = cfg.num_init_features
        stem: list[tuple[str, nn.Module]]
        if cfg.stem == "cifar":
            stem = [("conv0", nn.Conv2d(in_chans, c, 3, padding=1, bias=False))]
        else:
            k, s = (3, 1) if cfg.small_input else (7, 2)
            stem = [
                ("conv0", nn.Conv2d(in_chans, c, k, stride=s, padding=k // 2, bias=False)),
                ("norm0", nn.BatchNorm2d(c)),
                ("relu0", nn.ReLU(inplace=True)),
            ]
            if not cfg.small_input:
                stem.append(("pool0", nn.MaxPool2d(3, stride=2, padding=1)))
        self.features = nn.Sequential(OrderedDict(stem))
        for i, n in enumerate(cfg.block_config):
            block = DenseBlock(n, c, cfg.growth_rate, cfg.bn_size, cfg.drop_rate, cfg.memory_efficient)
            self.features.add_module(f"denseblock{i + 1}", block)
            c = block.out_chs
            if i != len(cfg.block_config) - 1:
                out = int(math.floor(c * cfg.compression))
                self.features.add_module(f"transition{i + 1}", Transition(c, out))
                c = out
        self.features.add_module(f"norm{len(cfg.block_config) + 1}", nn.BatchNorm2d(c))
        self.num_features = c
        self.classifier: nn.Module = nn.Linear(c, num_classes) if num_classes > 0 else nn.Identity()
        self.init_weights()

    def init_weights(self) -> None:
        # torchvision's DenseNet init: He-normal (fan-in) convolutions, unit/zero BatchNorm, zero linear bias.
        kaiming_init_(self, mode="fan_in", linear=linear_zero_bias_)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.features(x))  # (B, num_features, h, w); torchvision applies this ReLU in forward

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, C, h, w) -> (B, C)
        if pre_logits:
            return x
        return self.classifier(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def densenet_cifar(
    depth: int,
    growth_rate: int,
    bc: bool = True,
    drop_rate: float = 0.0,
    *,
    num_classes: int = 10,
    in_chans: int = 3,
) -> DenseNet:
    """The paper's CIFAR DenseNet(-BC) of depth L and growth rate k, e.g. ``densenet_cifar(100, 12)``."""
    cfg = dataclasses.replace(cifar_config(depth, growth_rate, bc), drop_rate=drop_rate)
    return DenseNet(cfg, num_classes=num_classes, in_chans=in_chans)


# create_model("densenet121", small_input=True, memory_efficient=True) overrides fields of the row.
register_family(
    "densenet",
    DenseNet,
    VARIANTS,
    cam_layer="features",
    # 32x32 is the smallest input that survives the ImageNet stem and three transitions (32 -> 8 -> 4 -> 2 -> 1).
    test_input_size=(3, 32, 32),
    small_input_kwargs={"small_input": True},
)

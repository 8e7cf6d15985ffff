"""Pre-activation ResNet (He, Zhang, Ren & Sun 2016, "Identity Mappings in Deep Residual Networks",
arXiv:1603.05027).

Builds the CIFAR pre-activation ResNet-18: a 3x3 conv stem with 64 filters, four stages of two basic
pre-activation blocks (BN -> ReLU -> 3x3 conv, twice) at 64/128/256/512 filters (stages 2-4 start with
stride 2), a final BN -> ReLU, global average pooling and a linear classifier. With the activation moved
before the convolutions, nothing follows the addition: the shortcut path from any block to any later one is
a pure identity, which the paper shows makes very deep networks (ResNet-1001) easier to optimise
(Eqs. 4-5; the "full pre-activation" unit of Fig. 4(e)).

Headline numbers: the paper's pre-activation ResNet-1001 (10.2 M parameters) reaches 4.62 % CIFAR-10 error
(abstract); the 18-layer form registered here has 11,172,170 parameters at 10 classes.

Departures from the paper, and why:
- The paper's CIFAR networks are the 6n+2 / 9n+2 designs of width 16/32/64 (ResNet-110, -164, -1001). The
  form registered here (``preact_resnet18``) is not in the paper: it is the widely used CIFAR adaptation of
  the ImageNet ResNet-18 (Table 1 of arXiv:1512.03385) with pre-activation blocks, a 3x3 stride-1 stem and no
  max-pool, so 32x32 inputs reach 4x4 maps. ``PreActResNetConfig`` can also express the paper's basic-block
  CIFAR nets (e.g. ``layers=(18, 18, 18), widths=(16, 32, 64), stem_width=16`` for ResNet-110).
- Shortcuts: identity where the shape is unchanged; a 1x1 conv (stride 2 where the block downsamples, no BN,
  no bias) where it changes. As in the authors' released CIFAR code, a block that changes shape applies its
  first BN -> ReLU before splitting, so the projection sees the pre-activated input.
- The final BN -> ReLU before pooling is the paper's: for the last unit it adopts "an extra activation right
  after its element-wise addition" (Sec. 4), as the authors' released code does (a BatchNorm and ReLU before
  the average pool). A widely copied CIFAR implementation pools the raw last addition instead, and its count,
  11,171,146 at 10 classes, is the one quoted most often; ``PreActResNetConfig(final_norm=False)`` builds that
  form (1,024 parameters fewer than our 11,172,170). The tests check both counts.
- The stem is a bare conv, and the first block's BN -> ReLU feeds both of its paths: the paper applies the
  first activation right after conv1, before splitting into two paths (Sec. 4). Same function, same
  parameters; the BN just lives in the block (``stages.0.0.bn1``).
- Stochastic depth (Huang et al. 2016, arXiv:1603.09382) is an option, ``drop_path_rate``, with the paper's
  linear decay over all blocks; it drops the residual branch, never the identity path.
- 28x28 inputs (Fashion-MNIST) need no change: the stages then see 28/14/7/4 pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import ClassifierHead, DropPath, cifar_stages, kaiming_init_
from imgcls.models.registry import Variant, register_family
from imgcls.models.resnet import conv1x1, conv3x3

__all__ = ["VARIANTS", "PreActBasicBlock", "PreActResNet", "PreActResNetConfig"]


@dataclass(frozen=True)
class PreActResNetConfig:
    """Blocks and widths of each stage; stages after the first start with stride 2.

    ``final_norm`` adds the paper's BN -> ReLU after the last block (Sec. 4).
    """

    layers: tuple[int, ...] = (2, 2, 2, 2)
    widths: tuple[int, ...] = (64, 128, 256, 512)
    stem_width: int = 64
    final_norm: bool = True


class PreActBasicBlock(nn.Module):
    """BN -> ReLU -> 3x3 conv -> BN -> ReLU -> 3x3 conv, added to the shortcut with nothing after the sum.

    The paper's Fig. 4(e) "full pre-activation" unit. ``shortcut`` is None for an identity, else a 1x1 conv
    applied to the pre-activated input. ``preact_shortcut=True`` makes the identity carry the pre-activated
    input too (the network's first block, which takes the paper's activation after conv1).
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        stride: int = 1,
        drop_path: float = 0.0,
        *,
        preact_shortcut: bool = False,
    ) -> None:
        super().__init__()
        self.preact_shortcut = preact_shortcut
        self.bn1 = nn.BatchNorm2d(in_chs)
        self.conv1 = conv3x3(in_chs, out_chs, stride)
        self.bn2 = nn.BatchNorm2d(out_chs)
        self.conv2 = conv3x3(out_chs, out_chs)
        self.relu = nn.ReLU(inplace=True)
        self.shortcut = conv1x1(in_chs, out_chs, stride) if stride != 1 or in_chs != out_chs else None
        self.drop_path = DropPath(drop_path) if drop_path > 0 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Not in place: x itself is the identity shortcut.
        pre = torch.relu(self.bn1(x))
        if self.shortcut is not None:
            shortcut = self.shortcut(pre)
        else:
            shortcut = pre if self.preact_shortcut else x
        out = self.conv1(pre)
        out = self.conv2(self.relu(self.bn2(out)))
        return self.drop_path(out) + shortcut


class PreActResNet(nn.Module):
    """``stem`` (3x3 conv) -> ``stages`` -> ``norm`` + ``act`` (final BN-ReLU) -> ``head`` (pool, linear)."""

    def __init__(
        self,
        cfg: PreActResNetConfig,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(cfg.layers) != len(cfg.widths):
            raise ConfigError(
                f"PreActResNetConfig has {len(cfg.layers)} layers entries but {len(cfg.widths)} widths"
            )
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        self.cfg = cfg
        self.stem = conv3x3(in_chans, cfg.stem_width)

        def block(index: int, in_chs: int, out_chs: int, stride: int, drop_path: float) -> nn.Module:
            # The network's first block takes the paper's activation after conv1 (module docstring).
            return PreActBasicBlock(in_chs, out_chs, stride, drop_path, preact_shortcut=index == 0)

        self.stages = cifar_stages(block, cfg.stem_width, cfg.layers, cfg.widths, drop_path_rate)
        width = cfg.widths[-1]
        self.norm: nn.Module = nn.BatchNorm2d(width) if cfg.final_norm else nn.Identity()
        self.act: nn.Module = nn.ReLU(inplace=True) if cfg.final_norm else nn.Identity()
        self.num_features: int = width
        self.head = ClassifierHead(width, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        # He et al. 2015 (arXiv:1502.01852), fan_out, as the paper's fb.resnet.torch-based code.
        kaiming_init_(self)

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.act(self.norm(x))  # (B, 512, H/8, W/8)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Not a row of the paper's tables (see the module docstring): the CIFAR ResNet-18 layout of arXiv:1512.03385
# Table 1 with pre-activation blocks. Parameters at 10 classes.
VARIANTS: dict[str, Variant] = {
    "preact_resnet18": Variant(
        PreActResNetConfig(layers=(2, 2, 2, 2), widths=(64, 128, 256, 512), final_norm=True),
        11_172_170,
        "counted: CIFAR PreAct-ResNet-18 (3x3 stem, [2,2,2,2] pre-act blocks, 1x1 projections) with "
        "the paper's final BN-ReLU (Sec. 4)",
    ),
}

register_family(
    "preact_resnet",
    PreActResNet,
    VARIANTS,
    cam_layer="act",
    input_size=(3, 32, 32),
    ref_kwargs={"num_classes": 10},
)

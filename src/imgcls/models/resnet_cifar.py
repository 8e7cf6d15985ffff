"""CIFAR ResNets (He, Zhang, Ren & Sun 2015, "Deep Residual Learning for Image Recognition", arXiv:1512.03385,
Section 4.2) and their plain counterparts.

Builds the 6n+2-layer networks the paper trains on CIFAR-10: a 3x3 conv with 16 filters, three stages of n
basic blocks at 16/32/64 filters on 32x32/16x16/8x8 maps (the first block of stages 2 and 3 strides by 2),
global average pooling and a linear classifier. Shortcuts are the paper's option A: identity, with
stride-2 subsampling and zero-padded extra channels where the shape changes, so they add no parameters. The
plain networks (``residual=False``) are the same stacks without shortcuts, the baselines of the paper's
degradation experiment (Fig. 6: plain-56 trains to a higher training error than plain-20, ResNet-56 to a
lower one than ResNet-20).

Headline numbers (Table 6, CIFAR-10 test error, best of 5 runs): ResNet-20 8.75 % with 0.27 M parameters,
ResNet-56 6.97 % with 0.85 M, ResNet-110 6.43 % (mean 6.61 +- 0.16 %) with 1.7 M.

The residual block is :class:`imgcls.models.resnet.BasicBlock` (the same two 3x3 conv-BN layers as the
ImageNet ResNet-18/34), given a zero-padding shortcut instead of a projection.

Departures from the paper, and why:
- Table 6's ResNet-1202 (19.4 M parameters) is not registered: 1202 layers are too slow for the registry's
  per-model tests on a CPU. ``CifarResNet(CifarResNetConfig(depth=1202))`` builds it.
- Option A pads the new channels after the existing ones: the paper does not say where; fb.resnet.torch's
  shortcut type A likewise concatenates zeros after the identity.
- Stochastic depth (Huang et al. 2016, "Deep Networks with Stochastic Depth", arXiv:1603.09382, who use
  these networks with p_L = 0.5 on ResNet-110) is an option, ``drop_path_rate``, with the paper's linear
  decay over all blocks; plain networks refuse it (there is no shortcut to fall back on).
- 28x28 inputs (Fashion-MNIST) need no change: the stages then see 28/14/7 pixels. The option-A
  subsampling ``x[..., ::2, ::2]`` keeps ceil(H/2) rows, the output size of the stride-2 3x3 convs, so the
  shapes agree for odd sizes too.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import ClassifierHead, ConvNormAct, cifar_stages, kaiming_init_
from imgcls.models.registry import Variant, register_family
from imgcls.models.resnet import BasicBlock

__all__ = ["VARIANTS", "CifarResNet", "CifarResNetConfig", "ZeroPadShortcut"]


@dataclass(frozen=True)
class CifarResNetConfig:
    """One row of the paper's Table 6.

    Attributes:
        depth: weighted layers, 6n + 2 (n blocks per stage, two convs each, plus stem conv and classifier).
        widths: filters of the three stages.
        residual: False builds the plain network (no shortcuts).
    """

    depth: int
    widths: tuple[int, int, int] = (16, 32, 64)
    residual: bool = True

    @property
    def blocks_per_stage(self) -> int:
        return (self.depth - 2) // 6


class ZeroPadShortcut(nn.Module):
    """The paper's option-A shortcut: subsample by ``stride``, append ``out_chs - in_chs`` zero channels.

    Parameter-free (He et al. 2015, Sec. 3.3 and 4.2).
    """

    def __init__(self, in_chs: int, out_chs: int, stride: int) -> None:
        super().__init__()
        if out_chs < in_chs:
            raise ConfigError(f"a zero-padding shortcut cannot reduce channels ({in_chs} -> {out_chs})")
        self.pad = out_chs - in_chs
        self.stride = stride

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x[:, :, :: self.stride, :: self.stride]  # (B, C, H, W) -> (B, C, ceil(H/s), ceil(W/s))
        return F.pad(x, (0, 0, 0, 0, 0, self.pad))  # (B, C, h, w) -> (B, C + pad, h, w), zeros last

    def extra_repr(self) -> str:
        return f"pad={self.pad}, stride={self.stride}"


class CifarResNet(nn.Module):
    """``stem`` (3x3 conv-BN-ReLU) -> ``stages`` (three stages of basic blocks) -> ``head`` (pool, linear)."""

    def __init__(
        self,
        cfg: CifarResNetConfig,
        *,
        num_classes: int = 10,
        in_chans: int = 3,
        drop_path_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if cfg.depth < 8 or (cfg.depth - 2) % 6:
            raise ConfigError(
                f"CIFAR ResNet depth must be 6n + 2 (20, 32, 44, 56, 110, ...), got {cfg.depth}"
            )
        if not 0.0 <= drop_path_rate < 1.0:
            raise ConfigError(f"drop_path_rate must be in [0, 1), got {drop_path_rate}")
        if drop_path_rate > 0 and not cfg.residual:
            raise ConfigError("drop_path_rate needs shortcuts: use a residual network, not a plain one")
        self.cfg = cfg
        n = cfg.blocks_per_stage
        self.stem = ConvNormAct(in_chans, cfg.widths[0], 3)
        self.stages = cifar_stages(self._block, cfg.widths[0], (n, n, n), cfg.widths, drop_path_rate)
        self.num_features: int = cfg.widths[-1]
        self.head = ClassifierHead(self.num_features, num_classes)
        self.init_weights()

    def _block(self, index: int, in_chs: int, out_chs: int, stride: int, drop_path: float) -> nn.Module:
        residual = self.cfg.residual
        down = None
        if residual and (stride != 1 or in_chs != out_chs):
            down = ZeroPadShortcut(in_chs, out_chs, stride)
        return BasicBlock(in_chs, out_chs, stride, down, residual=residual, drop_path=drop_path)

    def init_weights(self) -> None:
        # "We use the weight initialization in [He et al. 2015, arXiv:1502.01852]" (Sec. 4.2); fan_out as in
        # fb.resnet.torch.
        kaiming_init_(self)

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (B, 64, H/4, W/4)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


_T6 = (
    "He et al. 2015 Table 6 (0.27/0.46/0.66/0.85/1.7 M; top-1 = 100 - best CIFAR-10 error); exact count ours"
)
_F6 = "He et al. 2015 Fig. 6 (plain nets: same layers as the ResNet, no shortcuts, so the same count)"

# He et al. 2015, Table 6 (CIFAR-10): parameters at 10 classes (exact; the tests count them again from the
# paper's description), top-1 = CIFAR-10 test accuracy %. The plain rows are the Fig. 6 baselines of the
# same depth.
VARIANTS: dict[str, Variant] = {
    "cifar_resnet20": Variant(CifarResNetConfig(20), 269_722, _T6, top1=91.25),
    "cifar_resnet32": Variant(CifarResNetConfig(32), 464_154, _T6, top1=92.49),
    "cifar_resnet44": Variant(CifarResNetConfig(44), 658_586, _T6, top1=92.83),
    "cifar_resnet56": Variant(CifarResNetConfig(56), 853_018, _T6, top1=93.03),
    "cifar_resnet110": Variant(CifarResNetConfig(110), 1_727_962, _T6, top1=93.57),
    "plain20": Variant(CifarResNetConfig(20, residual=False), 269_722, _F6),
    "plain56": Variant(CifarResNetConfig(56, residual=False), 853_018, _F6),
}

register_family(
    "resnet_cifar",
    CifarResNet,
    VARIANTS,
    cam_layer="stages",
    input_size=(3, 32, 32),
    ref_kwargs={"num_classes": 10},
)

"""Wide ResNets for CIFAR.

Paper: "Wide Residual Networks", Sergey Zagoruyko and Nikos Komodakis, BMVC 2016, arXiv:1605.07146.

Builds WRN-d-k: a 3x3 stem convolution with 16 channels, three groups of pre-activation residual blocks
(BN-ReLU-conv) with widths 16k, 32k, 64k at strides 1, 2, 2, a closing BN-ReLU, global average pooling and a
linear classifier. Any block type of the paper's block-type study is available (``B(3,3)`` is the basic block;
``B(3,1,3)``, ``B(1,3,1)``, ``B(1,3)``, ``B(3,1)``, ``B(3,1,1)`` list their convolutions' kernel sizes), with
dropout between the convolutions of a block (section 2.4). Headline: WRN-28-10 (36.5M parameters) reaches
4.00% CIFAR-10 / 19.25% CIFAR-100 test error with mean/std preprocessing, 3.89% / 18.85% with dropout 0.3
(median of 5 runs; arXiv v4 Tables 5-6, restated in the authors' README).

:func:`wide_resnet` builds any WRN-d-k with any block type; the registered variants are rows of the paper's
tables.

Where the paper leaves a choice open, and where we depart from it:
- Depth rule. The paper names a B(3,3) network by its depth ``d = 6n + 4`` (n blocks of two 3x3 convolutions
  per group) and, as far as its parameter counts show, keeps ``n = (d - 4) / 6`` for every block type (the
  authors' code asserts ``(depth - 4) % 6 == 0``; a block type only changes the list of kernels). So a
  "depth" of a three-convolution block type is its name, not its number of layers: B(1,3,1) at d = 40 has 6
  blocks of 3 convolutions per group. This is the reading that reproduces the block-type table's parameter
  counts (B(1,3,1) / B(3,1,1) at 40: 1.43M / 1.34M, B(3,1,3) at 22: 1.15M, printed as 1.4M / 1.3M / 1.1M);
  counting layers instead (n = (d - 4) / 9) would give 0.95M / 0.87M / 0.74M.
- Where the stride goes. The paper downsamples "by the first layers in groups conv3 and conv4"; for blocks
  that open with a 1x1 convolution (B(1,3,1), B(1,3)) we put the stride on the block's first 3x3 convolution,
  as a strided 1x1 convolution would discard three quarters of the positions before any spatial filtering
  (the same reasoning as torchvision's ResNet "v1.5"). For B(3,3) this is the first convolution, as in the
  paper.
- Dropout. The paper places one dropout between the two convolutions of B(3,3); for three-convolution blocks
  we place one before every convolution after the first (after its BN-ReLU), i.e. between each pair.
- The shortcut. As in the authors' code (models/wide-resnet.lua), when a block changes the width its first
  BN-ReLU is shared by the residual branch and the 1x1 projection shortcut; otherwise the shortcut is the
  identity on the block's raw input. We also project when only the stride changes (never the case in the
  paper's layouts, where the width doubles whenever the resolution halves).
- Input size. WRNs are CIFAR (32x32) networks; no small-input form is needed. 28x28 (Fashion-MNIST) inputs run
  unchanged (28 -> 14 -> 7 in the three groups), and grayscale works through ``in_chans=1``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import ClassifierHead, cifar_stages, kaiming_init_, linear_zero_bias_
from imgcls.models.registry import Variant, register_family

__all__ = ["BLOCK_TYPES", "VARIANTS", "WideBlock", "WideResNet", "WideResNetConfig", "wide_resnet"]

# The block types of the paper's block-type study (Table 2 of arXiv v4, "B(M)" with M the list of kernel
# sizes of the block's convolutions); every convolution of a block has the block's output width (the paper:
# B(1,3,1) is a "straightened" bottleneck with the same dimensionality of all convolutions).
BLOCK_TYPES: dict[str, tuple[int, ...]] = {
    "B(3,3)": (3, 3),
    "B(3,1,3)": (3, 1, 3),
    "B(1,3,1)": (1, 3, 1),
    "B(1,3)": (1, 3),
    "B(3,1)": (3, 1),
    "B(3,1,1)": (3, 1, 1),
}


def _depth_hint(depth: int) -> str:
    """The valid depths (6n + 4, n >= 1) nearest to ``depth``."""
    below = max(10, depth - (depth - 4) % 6)
    above = below + 6 if below < depth else below
    return " or ".join(str(d) for d in sorted({below, above}))


@dataclass(frozen=True)
class WideResNetConfig:
    """WRN-d-k with a block type; ``dropout`` is the probability between a block's convolutions."""

    depth: int
    widen_factor: int
    block_type: str = "B(3,3)"
    dropout: float = 0.0

    def __post_init__(self) -> None:
        if self.block_type not in BLOCK_TYPES:
            raise ConfigError(
                f"unknown WRN block type '{self.block_type}': choose one of {', '.join(BLOCK_TYPES)}"
            )
        if self.widen_factor < 1:
            raise ConfigError(f"WRN widen_factor must be a positive integer, got {self.widen_factor}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"WRN dropout must be in [0, 1), got {self.dropout}")
        if self.depth < 10 or (self.depth - 4) % 6:
            raise ConfigError(
                f"WRN depth {self.depth} is not of the form 6n + 4 (n >= 1 blocks per group, the paper's "
                f"rule for every block type): use depth {_depth_hint(self.depth)}"
            )

    @property
    def kernels(self) -> tuple[int, ...]:
        """Kernel sizes of a block's convolutions, in order."""
        return BLOCK_TYPES[self.block_type]

    @property
    def blocks_per_group(self) -> int:
        """The paper's N = (d - 4) / 6, for every block type (see the module docstring)."""
        return (self.depth - 4) // 6

    @property
    def widths(self) -> tuple[int, int, int]:
        k = self.widen_factor
        return (16 * k, 32 * k, 64 * k)


def _wrn(depth: int, k: int, block_type: str = "B(3,3)") -> WideResNetConfig:
    return WideResNetConfig(depth=depth, widen_factor=k, block_type=block_type)


def _row(
    table: str, cfg: WideResNetConfig, num_params: int, printed: str, top1: float | None = None
) -> Variant:
    """A row of ``table`` (arXiv v4): our exact count at 10 classes, 3 channels, computed from the paper's
    definition (a regression pin), and the count the table prints, which it rounds to; top-1 on CIFAR-10
    where registered."""
    source = f"computed from the paper's definition; arXiv:1605.07146 v4 {table}: {printed}"
    return Variant(cfg, num_params, source, top1=top1)


VARIANTS: dict[str, Variant] = {
    # Table 4 of arXiv v4: WRN-d-k with B(3,3) blocks on CIFAR (depth, k, #params, test error).
    "wrn40_1": _row("Table 4", _wrn(40, 1), 563_930, "0.6M"),
    "wrn40_2": _row("Table 4", _wrn(40, 2), 2_243_546, "2.2M"),
    "wrn40_4": _row("Table 4", _wrn(40, 4), 8_949_210, "8.9M"),
    "wrn40_8": _row("Table 4", _wrn(40, 8), 35_748_314, "35.7M"),
    # top-1 = 100 - 4.00% error: mean/std preprocessing, median of 5 runs (Table 5; the authors' README).
    "wrn28_10": _row("Table 4", _wrn(28, 10), 36_479_194, "36.5M", 96.0),
    "wrn28_12": _row("Table 4", _wrn(28, 12), 52_517_850, "52.5M"),
    "wrn22_8": _row("Table 4", _wrn(22, 8), 17_158_106, "17.2M"),
    "wrn22_10": _row("Table 4", _wrn(22, 10), 26_797_914, "26.8M"),
    "wrn16_8": _row("Table 4", _wrn(16, 8), 10_961_370, "11.0M"),
    "wrn16_10": _row("Table 4", _wrn(16, 10), 17_116_634, "17.1M"),
    # Table 6 of arXiv v4: the dropout study's WRN-16-4.
    "wrn16_4": _row("Table 6", _wrn(16, 4), 2_748_890, "2.7M"),
    # Table 2 of arXiv v4: block types at k = 2 (depths chosen there to keep the parameter counts close).
    "wrn40_2_b131": _row("Table 2", _wrn(40, 2, "B(1,3,1)"), 1_429_082, "1.4M"),
    "wrn40_2_b31": _row("Table 2", _wrn(40, 2, "B(3,1)"), 1_211_354, "1.2M"),
    "wrn40_2_b13": _row("Table 2", _wrn(40, 2, "B(1,3)"), 1_297_370, "1.3M"),
    "wrn40_2_b311": _row("Table 2", _wrn(40, 2, "B(3,1,1)"), 1_343_066, "1.3M"),
    "wrn28_2": _row("Table 2", _wrn(28, 2), 1_467_610, "1.5M"),
    "wrn22_2_b313": _row("Table 2", _wrn(22, 2, "B(3,1,3)"), 1_145_498, "1.1M"),
}


class WideBlock(nn.Module):
    """Pre-activation residual block: BN-ReLU, then convolutions of ``kernels`` with BN-ReLU-dropout between.

    ``branch`` holds the convolutions (the first one takes the pre-activated input); ``shortcut`` is None
    (identity on the raw input) or a 1x1 projection of the pre-activated input.
    """

    def __init__(
        self, in_chs: int, out_chs: int, stride: int, kernels: tuple[int, ...], dropout: float = 0.0
    ) -> None:
        super().__init__()
        self.norm1 = nn.BatchNorm2d(in_chs)
        self.act1 = nn.ReLU(inplace=True)
        stride_at = kernels.index(3) if 3 in kernels else 0  # see the module docstring
        layers: list[nn.Module] = []
        chs = in_chs
        for i, k in enumerate(kernels):
            if i > 0:
                layers += [nn.BatchNorm2d(out_chs), nn.ReLU(inplace=True), nn.Dropout(dropout)]
            s = stride if i == stride_at else 1
            layers.append(nn.Conv2d(chs, out_chs, k, stride=s, padding=k // 2, bias=False))
            chs = out_chs
        self.branch = nn.Sequential(*layers)
        self.shortcut: nn.Module | None = None
        if in_chs != out_chs or stride != 1:
            self.shortcut = nn.Conv2d(in_chs, out_chs, 1, stride=stride, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        o = self.act1(self.norm1(x))
        skip = x if self.shortcut is None else self.shortcut(o)
        return skip + self.branch(o)


class WideResNet(nn.Module):
    """WRN-d-k for CIFAR: stem, three groups (``stages``), closing BN-ReLU, pooled linear ``head``."""

    def __init__(self, cfg: WideResNetConfig, *, num_classes: int = 10, in_chans: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Conv2d(in_chans, 16, 3, padding=1, bias=False)

        def block(index: int, in_chs: int, out_chs: int, stride: int, drop_path: float) -> nn.Module:
            return WideBlock(in_chs, out_chs, stride, cfg.kernels, cfg.dropout)  # no stochastic depth in WRN

        n = cfg.blocks_per_group
        self.stages = cifar_stages(block, 16, (n, n, n), cfg.widths)
        chs = cfg.widths[-1]
        self.norm = nn.BatchNorm2d(chs)  # the pre-activation network's closing BN-ReLU
        self.act = nn.ReLU(inplace=True)
        self.num_features = chs
        self.head = ClassifierHead(chs, num_classes)
        self.init_weights()

    def init_weights(self) -> None:
        # Convolutions: the authors' MSRinit (models/utils.lua), N(0, 2 / (k*k*out_channels)), i.e. He fan-out.
        # Linear: the authors' FCinit zeroes the bias and keeps Torch's default uniform weight, which matches
        # PyTorch's default bound 1/sqrt(fan_in).
        kaiming_init_(self, linear=linear_zero_bias_)

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stages(self.stem(x))
        return self.act(self.norm(x))  # (B, 64k, H/4, W/4)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def wide_resnet(
    depth: int,
    widen_factor: int,
    block_type: str = "B(3,3)",
    dropout: float = 0.0,
    *,
    num_classes: int = 10,
    in_chans: int = 3,
) -> WideResNet:
    """Build WRN-``depth``-``widen_factor`` with any block type (see :data:`BLOCK_TYPES`).

    ``wide_resnet(28, 10, dropout=0.3)`` is the paper's best CIFAR network; a depth that does not fit the
    block type raises :class:`~imgcls.errors.ConfigError` naming the nearest valid depths.
    """
    cfg = WideResNetConfig(depth=depth, widen_factor=widen_factor, block_type=block_type, dropout=dropout)
    return WideResNet(cfg, num_classes=num_classes, in_chans=in_chans)


# ``create_model("wrn28_10", dropout=0.3)`` overrides a field of the registered row (see create_model).
register_family(
    "wide_resnet",
    WideResNet,
    VARIANTS,
    cam_layer="act",
    input_size=(3, 32, 32),
    ref_kwargs={"num_classes": 10},
    # 8x8 runs every layer (8 -> 8 -> 4 -> 2 through the three groups) at 1/16 of the CIFAR cost:
    # keeps the registry test of the 36M-53M parameter rows fast on CPU.
    test_input_size=(3, 8, 8),
)

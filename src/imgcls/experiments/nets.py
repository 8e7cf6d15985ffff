"""Small networks some experiments need that are not in the zoo, built from the zoo's shared blocks.

Each is ``features`` (a Sequential of the blocks under study) then the shared :class:`ClassifierHead`, with the
zoo's model contract (``forward_features``, ``forward_head``, ``reset_classifier``), so the trainer, the
analysis and the feature baselines handle them as any registered model while an experiment registers them.
"""

from __future__ import annotations

import torch
from torch import nn

from imgcls.models.googlenet import BasicConv2d, Inception
from imgcls.models.layers import ClassifierHead, ConvNormAct

__all__ = [
    "INCEPTION_3A",
    "NaiveInception",
    "SmallNet",
    "conv_stack_net",
    "inception_module",
    "inception_net",
]


class SmallNet(nn.Module):
    """``features`` -> global average pool -> linear."""

    def __init__(self, features: nn.Sequential, out_chs: int, num_classes: int) -> None:
        super().__init__()
        self.features = features
        self.head = ClassifierHead(out_chs, num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, C_in, H, W) -> (B, C, H', W')

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        return self.head(x, pre_logits=pre_logits)

    def reset_classifier(self, num_classes: int) -> None:
        self.head.reset(num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


def conv_stack_net(
    kernel: int, layers: int, *, width: int = 32, num_classes: int = 10, in_chans: int = 1
) -> SmallNet:
    """A stem 3x3 conv, then two stages (``width`` and 2 x ``width`` channels, a 2x2 max-pool between) of
    ``layers`` ``kernel`` x ``kernel`` conv-BN-ReLU each: VGG's stack of 3x3 convolutions (kernel 3, layers n)
    or the single larger convolution of the same receptive field (kernel 2n + 1, layers 1)."""
    blocks: list[nn.Module] = [ConvNormAct(in_chans, width, 3)]
    chs = width
    for stage, out in enumerate((width, 2 * width)):
        if stage:
            blocks.append(nn.MaxPool2d(2))
        for _ in range(layers):
            blocks.append(ConvNormAct(chs, out, kernel))
            chs = out
    return SmallNet(nn.Sequential(*blocks), chs, num_classes)


class NaiveInception(nn.Module):
    """Fig. 2(a), the naive Inception module: 1x1, 3x3 and 5x5 convolutions and a 3x3 max-pool straight
    from the input, concatenated (the pool branch passes all ``in_chs`` channels through)."""

    def __init__(self, in_chs: int, ch1x1: int, ch3x3: int, ch5x5: int) -> None:
        super().__init__()
        self.branch1 = BasicConv2d(in_chs, ch1x1, 1)
        self.branch2 = BasicConv2d(in_chs, ch3x3, 3, padding=1)
        self.branch3 = BasicConv2d(in_chs, ch5x5, 5, padding=2)
        self.branch4 = nn.MaxPool2d(3, stride=1, padding=1)
        self.out_chs = ch1x1 + ch3x3 + ch5x5 + in_chs

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


# Inception (3a) of Table 1: #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj.
INCEPTION_3A = (64, 96, 128, 16, 32, 32)


def inception_module(in_chs: int, reductions: bool, scale: float = 1.0) -> Inception | NaiveInception:
    """Inception (3a)'s widths times ``scale``, with (Fig. 2b) or without (Fig. 2a) the 1x1 reductions."""
    c1, r3, c3, r5, c5, pp = (max(1, round(c * scale)) for c in INCEPTION_3A)
    if reductions:
        return Inception(in_chs, c1, r3, c3, r5, c5, pp, branch3_kernel=5)
    return NaiveInception(in_chs, c1, c3, c5)


def inception_net(
    reductions: bool, *, scale: float = 0.25, stem: int = 48, num_classes: int = 10, in_chans: int = 1
) -> SmallNet:
    """A 3x3 stem conv, two Inception modules (3a's widths times ``scale``) with a 2x2 max-pool between."""
    first = inception_module(stem, reductions, scale)
    second = inception_module(first.out_chs, reductions, scale)
    features = nn.Sequential(ConvNormAct(in_chans, stem, 3), first, nn.MaxPool2d(2), second)
    return SmallNet(features, second.out_chs, num_classes)

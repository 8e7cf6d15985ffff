"""VGG: Simonyan & Zisserman 2014, "Very Deep Convolutional Networks for Large-Scale Image Recognition",
arXiv:1409.1556 (ICLR 2015).

Builds configurations A, B, D and E of the paper's Table 1 (VGG-11/13/16/19), with and without batch
normalisation, in torchvision's layout, so that torchvision's ImageNet checkpoints load (``features.N`` /
``classifier.N``, the same indices, keys and shapes). Headline numbers: 133 / 133 / 138 / 144 million
parameters (Table 2; exactly 132,863,336 / 133,047,848 / 138,357,544 / 143,667,240 at 1000 classes); one
network reaches 7.0% and two combined 6.8% top-5 test error on ILSVRC-2012 (Table 7, multi-crop and dense
evaluation). Each variant's spec stores torchvision's top-1 and GFLOPs for its checkpoint.

A network is five stages of 3x3 / stride 1 / padding 1 convolutions with ReLU, each stage closed by a 2x2 / 2
max-pool, then fc 4096 -> fc 4096 -> fc 1000 with ReLU and dropout 0.5 on the first two (Sec. 2.1, 3.1).

Departures from the paper, and why:
- torchvision's layout: an ``AdaptiveAvgPool2d((7, 7))`` before the classifier (the identity at 224x224; the
  paper instead turns the fully connected layers into convolutions for dense multi-scale evaluation, Sec. 3.2)
  and dropout placed after each hidden ReLU as torchvision has it.
- ``vgg*_bn``: batch normalisation (Ioffe & Szegedy 2015, later than the paper) after every convolution, as
  torchvision's ``vgg*_bn``; it adds 2 parameters per conv channel (5,504 / 5,888 / 8,448 / 11,008).
- Initialisation: torchvision's (Kaiming-normal fan-out convolutions, N(0, 0.01^2) linear layers, zero
  biases), not the paper's (N(0, 0.01^2) for A, then deeper nets initialised from A's trained layers,
  Sec. 3.1).
- Configurations A-LRN and C of Table 1 are not registered: the paper found LRN useless (Sec. 4.1) and C is
  superseded by D.
- Small-image form (``small_input=True``, picked by ``create_model(..., image_size=28 or 32)``), the usual
  CIFAR VGG rather than anything in the paper: the last max-pool is dropped (five halvings would take 28x28
  to 0x0), the 7x7 adaptive pool becomes a global average pool, and the classifier shrinks to 512 -> 512 ->
  512 -> classes (same three-linear / dropout layout). The reference parameter counts are for the ImageNet
  form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from imgcls.models.layers import kaiming_init_, linear_normal_
from imgcls.models.registry import Variant, register_family

__all__ = ["VARIANTS", "VGG", "VGGConfig"]


@dataclass(frozen=True)
class VGGConfig:
    """A column of Table 1: ``depths[i]`` 3x3 convolutions of width ``widths[i]`` in stage ``i``."""

    depths: tuple[int, int, int, int, int]
    widths: tuple[int, int, int, int, int] = (64, 128, 256, 512, 512)
    batch_norm: bool = False
    hidden: int = 4096
    drop_rate: float = 0.5


# Table 1 of the paper, one row per column there (A, B, D, E): convolutions per stage.
_TABLE_1: dict[str, tuple[str, tuple[int, int, int, int, int]]] = {
    "vgg11": ("A", (1, 1, 2, 2, 2)),
    "vgg13": ("B", (2, 2, 2, 2, 2)),
    "vgg16": ("D", (2, 2, 3, 3, 3)),
    "vgg19": ("E", (2, 2, 4, 4, 4)),
}

# Reference figures: parameters at 1000 classes (torchvision num_params, = Table 2 rounded), torchvision's
# acc@1 and GFLOPS for its IMAGENET1K_V1 checkpoints.
_REFERENCE: dict[str, tuple[int, float, float]] = {
    "vgg11": (132_863_336, 69.02, 7.61),
    "vgg13": (133_047_848, 69.928, 11.31),
    "vgg16": (138_357_544, 71.592, 15.47),
    "vgg19": (143_667_240, 72.376, 19.63),
    "vgg11_bn": (132_868_840, 70.37, 7.61),
    "vgg13_bn": (133_053_736, 71.586, 11.31),
    "vgg16_bn": (138_365_992, 73.36, 15.47),
    "vgg19_bn": (143_678_248, 74.218, 19.63),
}


def _row(base: str, batch_norm: bool) -> Variant:
    column, depths = _TABLE_1[base]
    name = f"{base}_bn" if batch_norm else base
    params, top1, gmacs = _REFERENCE[name]
    source = (
        f"Simonyan & Zisserman 2014, Table 1 config {column}; count, acc@1, GFLOPS: torchvision 0.28 {name}"
    )
    return Variant(VGGConfig(depths, batch_norm=batch_norm), params, source, gmacs=gmacs, top1=top1)


# Every column of Table 1, without and with batch normalisation (torchvision's ``_bn`` forms).
VARIANTS: dict[str, Variant] = {
    f"{base}_bn" if bn else base: _row(base, bn) for base in _TABLE_1 for bn in (False, True)
}

_SMALL_HIDDEN = 512  # classifier width of the small-image form


class VGG(nn.Module):
    """VGG in torchvision's layout: ``features`` (one flat Sequential), ``avgpool``, ``classifier``."""

    def __init__(
        self, cfg: VGGConfig, *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False
    ) -> None:
        super().__init__()
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = in_chans
        for stage, (depth, width) in enumerate(zip(cfg.depths, cfg.widths, strict=True)):
            for _ in range(depth):
                layers.append(nn.Conv2d(cin, width, 3, padding=1))
                if cfg.batch_norm:
                    layers.append(nn.BatchNorm2d(width))
                layers.append(nn.ReLU(inplace=True))
                cin = width
            if not (small_input and stage == len(cfg.depths) - 1):
                layers.append(nn.MaxPool2d(2, 2))
        self.features = nn.Sequential(*layers)
        pool = 1 if small_input else 7
        hidden = _SMALL_HIDDEN if small_input else cfg.hidden
        self.avgpool = nn.AdaptiveAvgPool2d((pool, pool))
        self.num_features = hidden
        self.classifier = nn.Sequential(
            nn.Linear(cin * pool * pool, hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.drop_rate),
            nn.Linear(hidden, hidden), nn.ReLU(inplace=True), nn.Dropout(cfg.drop_rate),
            self._make_fc(num_classes),
        )  # fmt: skip
        self.init_weights()

    def _make_fc(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def init_weights(self) -> None:
        """torchvision's VGG init: Kaiming-normal (fan-out, ReLU) convs, BN (1, 0), linears N(0, 0.01^2),
        all biases 0."""
        kaiming_init_(self, linear=linear_normal_)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[-1] = self._make_fc(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 512, H/32, W/32); small-image form (B, 512, H/16, W/16)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)  # (B, 512, 7, 7) -> (B, 25088); small-image form (B, 512)
        x = self.classifier[:-1](x)  # (B, hidden)
        if pre_logits:
            return x
        return self.classifier[-1](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


register_family(
    "vgg",
    VGG,
    VARIANTS,
    cam_layer="features",
    test_input_size=(3, 32, 32),
    test_kwargs={"small_input": True},
    small_input_kwargs={"small_input": True},
)

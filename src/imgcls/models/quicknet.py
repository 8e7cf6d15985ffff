"""QuickNet: the small, fast convolutional network behind ``imgcls train``'s default presets.

Not from a paper: an airbench-style design (Keller Jordan, "94% on CIFAR-10 in 3.29 seconds", 2024,
arXiv:2404.00498) adapted to 28x28 / 32x32 images on a 2-core CPU. A stem convolution, then stages of
conv (halving the resolution) -> BN -> act -> conv -> BN -> act, global max pooling and a bias-free linear
classifier whose logits are scaled down (airbench's ``scaling_factor``), which lets the trainer use a high
learning rate.

Where it departs from airbench, and why (measured on the 2-core CPU, see README and benchmarks/):
- Downsampling by a stride-2 convolution instead of conv -> 2x2 max-pool: a quarter of that conv's
  multiply-adds and no max-pool backward (9.6 M vs 18.8 M multiply-adds per image for ``quicknet_s`` with a
  full-resolution stem); at 10 epochs on Fashion-MNIST both reach the same accuracy (93.2 % with flip TTA, one
  seed each). ``downsample="pool"`` gives airbench's form.
- ReLU instead of GELU: GELU's forward and backward were 17 % of a training step here, ReLU's are nearly
  free (in place), at equal accuracy (93.2 % vs 93.15 %, 10 epochs, one seed each). ``act="gelu"`` restores it.
- ``quicknet_s`` has a stride-2 stem (``stem_stride=2``; its first stage then keeps the resolution). A
  full-resolution stem is cheap in multiply-adds (0.17 M) but not in time: its 24 x 28 x 28 activations made
  the stem's conv, BN and ReLU, forward and backward, and the next conv's backward about half of a training
  step (torch.profiler, batch 512, bf16). The stride-2 stem has the same parameters (295,048) and runs a
  step about 1.35x faster; at 6 epochs it reached 93.18 % (one seed) against the full-resolution stem's
  93.19 % (mean of 3 seeds), and the ``fast`` preset spends the time saved on a seventh epoch.
  ``quicknet_m`` keeps a full-resolution stem (``stem_stride=1`` builds that form of either).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from imgcls.models.layers import kaiming_init_
from imgcls.models.registry import Variant, register_family

__all__ = ["QuickNet", "QuickNetConfig"]


@dataclass(frozen=True)
class QuickNetConfig:
    stem: int  # channels of the stem convolution
    widths: tuple[int, ...]  # channels of each stage; each stage halves the resolution
    # "pool": conv -> 2x2 max-pool (airbench); "stride": a stride-2 conv, a quarter of the multiply-adds.
    downsample: Literal["pool", "stride"] = "pool"
    act: Literal["gelu", "relu"] = "gelu"
    logit_scale: float = 1 / 9
    # stem_stride 2: the stem convolution halves the resolution and the first stage keeps it (same final size).
    stem_stride: int = 1
    stem_kernel: int = 3


# Our own presets (no paper table): sized so that the training presets meet their time budgets on the
# 2-core CPU, see benchmarks/time_to_accuracy.py.
# Parameter counts at 10 classes, 1 channel: regression pins (produced by this code, no outside source).
_OWN = "imgcls preset (own design)"
VARIANTS: dict[str, Variant] = {
    "quicknet_s": Variant(
        QuickNetConfig(stem=24, widths=(32, 64, 128), downsample="stride", act="relu", stem_stride=2),
        295_048,
        _OWN,
    ),
    "quicknet_m": Variant(
        QuickNetConfig(stem=32, widths=(48, 96, 192), downsample="stride", act="relu"), 660_256, _OWN
    ),
}


def _bn(c: int) -> nn.BatchNorm2d:
    # airbench: momentum 0.6 (i.e. PyTorch momentum 0.4) reaches useful running stats within few steps.
    return nn.BatchNorm2d(c, momentum=0.4)


def _act(name: str) -> nn.Module:
    return nn.GELU() if name == "gelu" else nn.ReLU(inplace=True)


class _Stage(nn.Sequential):
    def __init__(self, cin: int, cout: int, downsample: str, act: str) -> None:
        if downsample == "none":  # the first stage after a stride-2 stem
            down = [nn.Conv2d(cin, cout, 3, padding=1, bias=False)]
        elif downsample == "pool":
            # pooling before BN/act: the BN then runs on 4x fewer values; ceil_mode keeps 7 -> 4 like stride 2
            down = [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.MaxPool2d(2, ceil_mode=True)]
        else:
            down = [nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False)]
        super().__init__(
            *down,
            _bn(cout),
            _act(act),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False),
            _bn(cout),
            _act(act),
        )


class QuickNet(nn.Module):
    def __init__(self, cfg: QuickNetConfig, num_classes: int = 10, in_chans: int = 1) -> None:
        super().__init__()
        self.cfg = cfg
        self.stem = nn.Sequential(
            nn.Conv2d(
                in_chans,
                cfg.stem,
                cfg.stem_kernel,
                stride=cfg.stem_stride,
                padding=(cfg.stem_kernel - 1) // 2,
                bias=False,
            ),
            _bn(cfg.stem),
            _act(cfg.act),
        )
        chans = (cfg.stem, *cfg.widths)
        downs = ["none" if i == 0 and cfg.stem_stride > 1 else cfg.downsample for i in range(len(cfg.widths))]
        self.stages = nn.Sequential(
            *[_Stage(a, b, d, cfg.act) for a, b, d in zip(chans[:-1], chans[1:], downs)]
        )
        self.num_features = cfg.widths[-1]
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.head = self._make_head(num_classes)
        self.init_weights()

    def _make_head(self, num_classes: int) -> nn.Module:
        # num_classes 0: no classifier, forward returns the pooled features (the model contract)
        return nn.Linear(self.num_features, num_classes, bias=False) if num_classes > 0 else nn.Identity()

    def init_weights(self) -> None:
        # He et al. 2015 (arXiv:1502.01852) fan-out normal convolutions, BN as the identity, as the zoo's
        # ResNets; the classifier keeps PyTorch's default.
        kaiming_init_(self)

    def reset_classifier(self, num_classes: int) -> None:
        self.head = self._make_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.stages(self.stem(x))  # (B, C, H/2^S, W/2^S)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.pool(x).flatten(1)  # (B, C)
        if pre_logits or isinstance(self.head, nn.Identity):  # the scale is the logits', not the features'
            return x
        return self.head(x) * self.cfg.logit_scale

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


# Config fields can be overridden by name (``--model-kwargs widths=[48,96,192]``): see create_model.
register_family(
    "quicknet",
    QuickNet,
    VARIANTS,
    cam_layer="stages",
    input_size=(1, 28, 28),
    ref_kwargs={"num_classes": 10, "in_chans": 1},
    test_input_size=(1, 28, 28),
)

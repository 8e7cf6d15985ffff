"""SqueezeNet (Iandola, Han, Moskewicz, Ashraf, Dally & Keutzer 2016, "SqueezeNet: AlexNet-level accuracy with
50x fewer parameters and <0.5MB model size", arXiv:1602.07360).

Builds SqueezeNet 1.0 of the paper's Table 1 (a 7x7 stride-2 convolution, eight fire modules with three
max-pools between them, a 1x1 convolution to the classes and global average pooling) and SqueezeNet 1.1, the
authors' later revision (released in their GitHub repository, not in the paper: a 3x3 stem with 64 channels
and the pools moved earlier, 2.4x less computation at the same accuracy). A fire module squeezes with 1x1
convolutions and expands with parallel 1x1 and 3x3 convolutions whose outputs are concatenated (Sec. 3.2).
The layout is torchvision's ``squeezenet1_0`` / ``squeezenet1_1``, so its ImageNet checkpoints load with
:func:`imgcls.load_pretrained`.

Headline numbers: SqueezeNet 1.0 has 1,248,424 parameters (Table 1, the same as torchvision's count) and
reaches 57.5 % top-1 (Table 2), AlexNet's accuracy with 50x fewer parameters; SqueezeNet 1.1 has 1,235,496.

Departures from the paper, and why:
- None in the 1.0 network: the classifier is dropout 0.5 -> conv10 (1x1, with bias) -> ReLU -> global
  average pooling, as in Table 1 and torchvision. The ReLU on the logits is the paper's (they are
  non-negative); we keep it so that torchvision's checkpoints compute the same function.
- Max-pools round their output size up (``ceil_mode=True``) as Caffe, the paper's framework, and torchvision.
- Weight initialisation is torchvision's (He uniform for convs, N(0, 0.01) for conv10), not Caffe's Xavier.
- The paper's pruned / Deep-Compression and bypass variants (Tables 2 and 3) are not built.
- Small images (28x28, 32x32): the paper has no such form. ``small_input=True`` gives conv1 stride 1 (and
  'same' padding), so with the three pools the last fire module sees a 32 px image at 4x4 instead of
  collapsing it to 1x1. No weight changes shape, so torchvision's checkpoints still load into this form.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from imgcls.models.registry import Variant, register_family

__all__ = ["VARIANTS", "Fire", "SqueezeNet", "SqueezeNetConfig"]


@dataclass(frozen=True)
class SqueezeNetConfig:
    """One SqueezeNet version (Table 1's columns for 1.0).

    Attributes:
        stem_width, stem_kernel: output channels and kernel of conv1 (stride 2).
        fires: (squeeze 1x1, expand 1x1, expand 3x3) channels of fire2 .. fire9 (Table 1's s1x1, e1x1, e3x3).
        pool_before: indices into ``fires`` of the modules preceded by a 3x3 stride-2 max-pool.
    """

    stem_width: int
    stem_kernel: int
    fires: tuple[tuple[int, int, int], ...]
    pool_before: tuple[int, ...]


# Table 1 (SqueezeNet 1.0): fire2 .. fire9; maxpool1 precedes fire2, maxpool4 fire5, maxpool8 fire9.
_FIRES = (
    (16, 64, 64),
    (16, 64, 64),
    (32, 128, 128),
    (32, 128, 128),
    (48, 192, 192),
    (48, 192, 192),
    (64, 256, 256),
    (64, 256, 256),
)
SQUEEZENET1_0 = SqueezeNetConfig(96, 7, _FIRES, pool_before=(0, 3, 7))
# SqueezeNet 1.1 (authors' repository, DeepScale/SqueezeNet): conv1 3x3/2 with 64 channels and the pools
# before fire2, fire4 and fire6, same fire modules.
SQUEEZENET1_1 = SqueezeNetConfig(64, 3, _FIRES, pool_before=(0, 2, 4))


class Fire(nn.Module):
    """The paper's Fig. 1: squeeze 1x1 -> ReLU -> [expand 1x1 -> ReLU, expand 3x3 -> ReLU] concatenated.

    Outputs ``expand1x1 + expand3x3`` channels (``out_channels``). Attribute names are torchvision's.
    """

    def __init__(self, in_chs: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Conv2d(in_chs, squeeze, 1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze, expand1x1, 1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze, expand3x3, 3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)
        self.out_channels = expand1x1 + expand3x3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze_activation(self.squeeze(x))
        e1 = self.expand1x1_activation(self.expand1x1(x))
        e3 = self.expand3x3_activation(self.expand3x3(x))
        return torch.cat([e1, e3], dim=1)  # (B, e1x1 + e3x3, H, W)


class SqueezeNet(nn.Module):
    """``features`` (conv1, ReLU, pools and fire modules) -> ``classifier`` (dropout, conv10, ReLU, avg pool)."""

    def __init__(
        self,
        cfg: SqueezeNetConfig = SQUEEZENET1_0,
        *,
        num_classes: int = 1000,
        in_chans: int = 3,
        small_input: bool = False,
        drop_rate: float = 0.5,
    ) -> None:
        super().__init__()
        self.cfg = cfg
        k = cfg.stem_kernel
        # small_input: stride 1 and 'same' padding (see the module docstring); torchvision pads 0 at stride 2.
        conv1 = nn.Conv2d(
            in_chans, cfg.stem_width, k, stride=1 if small_input else 2, padding=k // 2 if small_input else 0
        )
        layers: list[nn.Module] = [conv1, nn.ReLU(inplace=True)]
        chs = cfg.stem_width
        for i, (s, e1, e3) in enumerate(cfg.fires):
            if i in cfg.pool_before:
                layers.append(nn.MaxPool2d(3, 2, ceil_mode=True))
            fire = Fire(chs, s, e1, e3)
            layers.append(fire)
            chs = fire.out_channels
        self.features = nn.Sequential(*layers)
        self.num_features: int = chs
        self.drop_rate = drop_rate
        self.classifier = nn.Sequential(
            nn.Dropout(drop_rate),
            self._final_conv(num_classes),
            nn.ReLU(inplace=True),
            nn.AdaptiveAvgPool2d(1),
        )
        self.init_weights()

    def _final_conv(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        conv = nn.Conv2d(self.num_features, num_classes, 1)
        nn.init.normal_(conv.weight, 0.0, 0.01)  # torchvision: conv10 starts small
        nn.init.zeros_(conv.bias)
        return conv

    def init_weights(self) -> None:
        # torchvision's SqueezeNet: He uniform (arXiv:1502.01852) for every conv but conv10, which _final_conv
        # draws from N(0, 0.01); biases zero.
        for m in self.features.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        conv10 = self.classifier[1]
        if isinstance(conv10, nn.Conv2d):
            nn.init.normal_(conv10.weight, 0.0, 0.01)
            nn.init.zeros_(conv10.bias)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[1] = self._final_conv(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)  # (B, 512, h, w): 13x13 at 224 px

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            # The classifier acts on every position before pooling; its input, pooled, is the feature vector.
            return nn.functional.adaptive_avg_pool2d(x, 1).flatten(1)  # (B, 512)
        return self.classifier(x).flatten(1)  # (B, classes, 1, 1) -> (B, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


VARIANTS: dict[str, Variant] = {
    "squeezenet1_0": Variant(
        SQUEEZENET1_0,
        1_248_424,
        "Iandola et al. 2016 Table 1 (= torchvision); top-1 Table 2; GMACs torchvision",
        gmacs=0.82,
        top1=57.5,
    ),
    "squeezenet1_1": Variant(
        SQUEEZENET1_1, 1_235_496, "torchvision squeezenet1_1 (parameters, GMACs at 224)", gmacs=0.35
    ),
}

register_family(
    "squeezenet",
    SqueezeNet,
    VARIANTS,
    cam_layer="features",
    # 64 px exercises every stride of the ImageNet form (3x3 final map) at 1/12 of the cost of 224.
    test_input_size=(3, 64, 64),
    small_input_kwargs={"small_input": True},
)

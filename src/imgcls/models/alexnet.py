"""AlexNet: Krizhevsky, Sutskever & Hinton 2012, "ImageNet Classification with Deep Convolutional Neural
Networks", NeurIPS 2012 (no arXiv id).

Builds the paper's eight-layer network (five convolutions, three fully connected layers) in three forms:
as one tower (``alexnet_paper``), as the paper's two-GPU split (``alexnet_paper_2gpu``), and in torchvision's
layout (``alexnet``), whose ``state_dict`` loads torchvision's ImageNet checkpoint. Headline numbers: the
paper reports 60 million parameters and 40.7% / 18.2% top-1 / top-5 error on the ILSVRC-2012 validation set
for one network (Table 2, averaging ten crops); torchvision's checkpoint reaches 56.52% top-1 at 0.71 GFLOPs.

The paper's network (Sec. 3, Fig. 2): conv1 96 @ 11x11 / 4, conv2 256 @ 5x5, conv3 384 @ 3x3, conv4 384 @ 3x3,
conv5 256 @ 3x3, fc6 4096, fc7 4096, fc8 1000; ReLU after every layer but the last; local response
normalisation (k=2, n=5, alpha=1e-4, beta=0.75, Sec. 3.3) after the ReLU of conv1 and conv2; overlapping 3x3 /
2 max-pooling (Sec. 3.4) after both normalisations and after conv5; dropout 0.5 on the outputs of fc6 and fc7
(Sec. 4.2). Weights N(0, 0.01^2); biases 1 in conv2, conv4, conv5, fc6, fc7 and 0 elsewhere (Sec. 5).

In the two-GPU network each GPU holds half the kernels of every layer and "the GPUs communicate only in
certain layers": conv2, conv4 and conv5 see only the maps on their own GPU (``groups=2``: 60,965,224
parameters), conv3 and the fully connected layers see everything; the single tower connects everything
(62,378,344). The LRN of the two-GPU form normalises over neighbouring maps on the same GPU
(``LocalResponseNorm(groups=2)``).

torchvision's ``alexnet`` follows Krizhevsky 2014 ("One weird trick...", arXiv:1404.5997) rather than the 2012
paper: conv widths 64-192-384-256-256, conv1 padded by 2, no LRN, an ``AdaptiveAvgPool2d((6, 6))`` before the
classifier, dropout on the *inputs* of fc6 and fc7, and PyTorch's default initialisation. We reproduce it
exactly (61,100,840 parameters; keys and shapes equal torchvision's).

Departures from the paper, and why:
- Input 227x227, not the 224x224 the paper states: the layer sizes of Fig. 2 (55, 27, 13, 6) only work out
  with 227 (a well-known erratum).
- The paper's variants also end the convolutions with an ``AdaptiveAvgPool2d((6, 6))``, which is the identity
  at 227x227 and lets the same weights run at other input sizes.
- Input scale: the paper feeds raw 0-255 RGB values minus the training-set mean (Sec. 2), and its LRN
  constants and N(0, 0.01^2) init are set for that scale; imgcls feeds standardised pixels, about 58 times
  smaller, under which the LRN would divide by a constant. The paper forms therefore multiply their input by
  ``RAW_PIXEL_SCALE`` = 255 x 0.226 (``AlexNetConfig.input_scale``; :mod:`imgcls.models.layers.lrn`), which
  gives back mean-subtracted 0-255 pixels. At 227 px and at init the LRN then divides the strongest 1% of
  conv1's responses by about 6% more than the weakest (tested; 1e-5 without the rescaling), and by more as
  the weights grow; in the small-image form, whose 3x3 conv1 sums 27 inputs instead of 363, by under 2% at
  init. torchvision's ``alexnet`` (no LRN) takes standardised inputs as they are.
- The paper trains with its own loss, augmentation (crops, flips, PCA colour noise) and schedule; those belong
  to the trainer, not to the model.
- Small-image form (``small_input=True``, picked by ``create_model(..., image_size=28 or 32)``), an adaptation
  of ours (the paper has none): conv1 becomes 3x3 / stride 1 / padding 1 (an 11x11 / 4 kernel would reduce a
  32x32 image to 6x6 at once), conv2 runs at stride 1, and the max-pool after conv5 is dropped. A 32x32
  image then reaches conv5 at 7x7 (28x28: 6x6), so the adaptive pool gives the 6x6x256 the classifier
  expects and the fully connected layers are unchanged. All other layers (LRN, pools after conv1 / conv2,
  dropout) stay.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

import torch
from torch import nn

from imgcls.models.layers.lrn import RAW_PIXEL_SCALE, LocalResponseNorm
from imgcls.models.registry import Variant, register_family

__all__ = ["AlexNet", "AlexNetConfig", "small_input_config"]


@dataclass(frozen=True)
class AlexNetConfig:
    """An AlexNet-style network: five convolutions, three fully connected layers.

    ``convs`` rows are ``(out_chs, kernel, stride, padding, groups)`` for conv1..conv5. Shared with ZFNet
    (:mod:`imgcls.models.zfnet`), which changes the first two rows, the pooling mode and the biases.
    """

    convs: tuple[tuple[int, int, int, int, int], ...]
    pool_after: tuple[int, ...] = (0, 1, 4)  # 0-based conv indices followed by a 3x3 / 2 max-pool
    lrn_after: tuple[int, ...] = ()  # conv indices followed by local response normalisation
    lrn_groups: int = 1  # 2 in the two-GPU network: neighbours on the same GPU only
    lrn_before_pool: bool = True  # AlexNet: ReLU -> LRN -> pool; ZFNet: ReLU -> pool -> LRN
    pool_ceil_mode: bool = False
    pool_size: int = 6  # the adaptive pool's output side before fc6
    hidden: int = 4096
    drop_rate: float = 0.5
    dropout_on_inputs: bool = False  # torchvision: Dropout before fc6 / fc7; paper: after their ReLU
    # "normal": N(0, 0.01^2) weights, biases 0 except in ``unit_bias``; "torchvision": PyTorch's default init.
    init: Literal["torchvision", "normal"] = "normal"
    # Weight layers (conv1..conv5, fc6..fc8 numbered 0..7) whose bias starts at 1: Krizhevsky 2012, Sec. 5.
    unit_bias: tuple[int, ...] = (1, 3, 4, 5, 6)
    # Multiply the (standardised) input by this first; RAW_PIXEL_SCALE gives the 0-255 pixels the paper's LRN
    # constants and init assume (imgcls.models.layers.lrn). None: feed the input as it is (torchvision).
    input_scale: float | None = None


# The paper has no table of variants; the rows below are Sec. 3.5 / Fig. 2 (one tower and the two-GPU
# split) and torchvision's layout (Krizhevsky 2014, Sec. 3 / torchvision.models.alexnet).
# conv1..conv5 as (out_chs, kernel, stride, padding, groups):
_PAPER_CONVS = ((96, 11, 4, 0, 1), (256, 5, 1, 2, 1), (384, 3, 1, 1, 1), (384, 3, 1, 1, 1), (256, 3, 1, 1, 1))
_TV_CONVS = ((64, 11, 4, 2, 1), (192, 5, 1, 2, 1), (384, 3, 1, 1, 1), (256, 3, 1, 1, 1), (256, 3, 1, 1, 1))
# Two GPUs: the same layers, conv2, conv4 and conv5 connected only to the maps on their own GPU.
_PAPER_2GPU_CONVS = tuple(
    (c, k, s, p, 2 if i in (1, 3, 4) else 1) for i, (c, k, s, p, _) in enumerate(_PAPER_CONVS)
)

VARIANTS: dict[str, Variant] = {
    "alexnet_paper": Variant(
        AlexNetConfig(_PAPER_CONVS, lrn_after=(0, 1), input_scale=RAW_PIXEL_SCALE), 62_378_344,
        "Krizhevsky et al. 2012, Sec. 3 / Fig. 2, one tower (counted from the layer sizes)",
        input_size=227,
    ),
    "alexnet_paper_2gpu": Variant(
        AlexNetConfig(_PAPER_2GPU_CONVS, lrn_after=(0, 1), lrn_groups=2, input_scale=RAW_PIXEL_SCALE),
        60_965_224,
        "Krizhevsky et al. 2012, Sec. 3 / Fig. 2, two GPUs (counted); top-1: Table 2, 1 CNN, ILSVRC-2012 val",
        top1=59.3, input_size=227,
    ),
    "alexnet": Variant(
        AlexNetConfig(_TV_CONVS, dropout_on_inputs=True, init="torchvision"), 61_100_840,
        "torchvision 0.28 alexnet (num_params; acc@1, GFLOPS of its IMAGENET1K_V1 weights)",
        gmacs=0.71, top1=56.522,
    ),
}  # fmt: skip


def small_input_config(cfg: AlexNetConfig) -> AlexNetConfig:
    """The 28x28 / 32x32 adaptation (module docstring): conv1 3x3 / 1, conv2 stride 1, no pool after conv5."""
    out1 = cfg.convs[0][0]
    out2, k2, _, _, g2 = cfg.convs[1]
    convs = ((out1, 3, 1, 1, cfg.convs[0][4]), (out2, k2, 1, k2 // 2, g2), *cfg.convs[2:])
    last = len(cfg.convs) - 1
    return replace(cfg, convs=convs, pool_after=tuple(i for i in cfg.pool_after if i != last))


class AlexNet(nn.Module):
    """AlexNet / ZFNet: ``features`` (convolutions), ``avgpool`` (adaptive), ``classifier`` (three linears).

    Attribute names and the ``features`` / ``classifier`` indices of the torchvision row equal torchvision's,
    so its checkpoint loads.
    """

    def __init__(
        self, cfg: AlexNetConfig, *, num_classes: int = 1000, in_chans: int = 3, small_input: bool = False
    ) -> None:
        super().__init__()
        if small_input:
            cfg = small_input_config(cfg)
        self.cfg = cfg
        layers: list[nn.Module] = []
        cin = in_chans
        for i, (cout, k, s, p, g) in enumerate(cfg.convs):
            layers += [nn.Conv2d(cin, cout, k, s, p, groups=g), nn.ReLU(inplace=True)]
            lrn = (
                [LocalResponseNorm(5, alpha=1e-4, beta=0.75, k=2.0, groups=cfg.lrn_groups)]
                if i in cfg.lrn_after
                else []
            )
            pool = [nn.MaxPool2d(3, 2, ceil_mode=cfg.pool_ceil_mode)] if i in cfg.pool_after else []
            layers += lrn + pool if cfg.lrn_before_pool else pool + lrn
            cin = cout
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(cfg.pool_size)
        flat = cin * cfg.pool_size**2
        h = cfg.hidden
        if cfg.dropout_on_inputs:  # torchvision: Dropout, fc6, ReLU, Dropout, fc7, ReLU, fc8
            mlp = [nn.Dropout(cfg.drop_rate), nn.Linear(flat, h), nn.ReLU(inplace=True)]
            mlp += [nn.Dropout(cfg.drop_rate), nn.Linear(h, h), nn.ReLU(inplace=True)]
        else:  # paper Sec. 4.2: dropout sets the *outputs* of the fc6 / fc7 neurons to zero
            mlp = [nn.Linear(flat, h), nn.ReLU(inplace=True), nn.Dropout(cfg.drop_rate)]
            mlp += [nn.Linear(h, h), nn.ReLU(inplace=True), nn.Dropout(cfg.drop_rate)]
        self.num_features = h
        self.classifier = nn.Sequential(*mlp, self._make_fc(num_classes))
        self.init_weights()

    def _make_fc(self, num_classes: int) -> nn.Module:
        return nn.Linear(self.num_features, num_classes) if num_classes > 0 else nn.Identity()

    def init_weights(self) -> None:
        """The config's ``init``: ``normal`` draws N(0, 0.01^2) weights and sets the biases of the layers in
        ``unit_bias`` to 1, the others to 0 (Krizhevsky 2012, Sec. 5, with the default ``unit_bias``);
        ``torchvision`` keeps PyTorch's default init, as torchvision's AlexNet does.
        """
        if self.cfg.init == "torchvision":
            return
        convs = [m for m in self.features if isinstance(m, nn.Conv2d)]
        linears = [m for m in self.classifier if isinstance(m, nn.Linear)]
        for i, m in enumerate(convs + linears):  # conv1..conv5, fc6..fc8 (fc8 absent without a classifier)
            nn.init.normal_(m.weight, 0.0, 0.01)
            nn.init.constant_(m.bias, 1.0 if i in self.cfg.unit_bias else 0.0)

    def reset_classifier(self, num_classes: int) -> None:
        self.classifier[-1] = self._make_fc(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if self.cfg.input_scale is not None:
            x = x * self.cfg.input_scale  # standardised -> mean-subtracted 0-255 pixels (paper Sec. 2)
        return self.features(x)  # (B, 256, 6, 6) at the native input size

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = self.avgpool(x).flatten(1)  # (B, C, 6, 6) -> (B, C * 36)
        x = self.classifier[:-1](x)  # fc6, fc7 (+ ReLU, dropout): (B, 4096)
        if pre_logits:
            return x
        return self.classifier[-1](x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))


register_family(
    "alexnet",
    AlexNet,
    VARIANTS,
    cam_layer="features",
    test_input_size=(3, 32, 32),
    test_kwargs={"small_input": True},
    small_input_kwargs={"small_input": True},
)

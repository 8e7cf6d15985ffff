"""ZFNet: Zeiler & Fergus 2013, "Visualizing and Understanding Convolutional Networks", arXiv:1311.2901
(ECCV 2014).

Builds the network of the paper's Fig. 3 (``zfnet``): AlexNet (:mod:`imgcls.models.alexnet`) with the first
layer changed from 11x11 / 4 to 7x7 / 2 and the second from stride 1 to 5x5 / 2, which the paper's
visualisations showed to remove aliasing and dead filters (Sec. 4.1), and with dense connections throughout
(one GPU). Headline numbers: 62,357,608 parameters at 224x224 and 1000 classes (counted from Fig. 3);
38.3% top-1 / 16.4% top-5 validation error for one network (Table 2, ten crops).

Layers (Fig. 3): conv1 96 @ 7x7 / 2 -> 3x3 / 2 max-pool -> contrast norm -> conv2 256 @ 5x5 / 2 -> 3x3 / 2
max-pool -> contrast norm -> conv3 384 @ 3x3 -> conv4 384 @ 3x3 -> conv5 256 @ 3x3 -> 3x3 / 2 max-pool ->
fc6 4096 -> fc7 4096 -> fc8; ReLU after every layer but the last, dropout 0.5 on fc6 and fc7 (Sec. 3).
Feature map sides at 224x224: 110, 55, 26, 13, 13, 13, 6.

Departures from the paper, and why:
- Padding: Fig. 3's sides (110 after conv1, 55 and 13 after the first two pools) need conv1 padding 1 and
  ceil-mode pooling; the paper does not list paddings, so we use those two, which reproduce every side.
- "Contrast normalisation across feature maps" is given without constants; we use the AlexNet paper's local
  response normalisation (n=5, k=2, alpha=1e-4, beta=0.75), which the paper cites for this operation.
- Initialisation: "all weights initialized to 10^-2 and biases set to 0" (Sec. 3) is read as N(0, 0.01^2)
  weights (a constant would leave every filter identical), biases 0.
- The training-time filter renormalisation (Sec. 3: any filter whose RMS exceeds 0.1 is rescaled to RMS 0.1)
  is a step of the optimiser loop, not of the model: :func:`renormalize_filters_` does it; a trainer calls it
  after each update.
- As for AlexNet, an ``AdaptiveAvgPool2d((6, 6))`` (the identity at 224x224) ends the convolutions, and the
  small-image form (``small_input=True``) makes conv1 3x3 / 1 / padding 1, runs conv2 at stride 1 (padding
  2) and drops the pool after conv5, so 28x28 / 32x32 images reach the unchanged classifier at 6x6 (see
  :func:`imgcls.models.alexnet.small_input_config`).
"""

from __future__ import annotations

import torch
from torch import nn

from imgcls.models.alexnet import AlexNet, AlexNetConfig
from imgcls.models.registry import Variant, register_family

__all__ = ["VARIANTS", "renormalize_filters_"]

# Fig. 3 of the paper; conv rows are (out_chs, kernel, stride, padding, groups).
VARIANTS: dict[str, Variant] = {
    "zfnet": Variant(
        AlexNetConfig(
            convs=(
                (96, 7, 2, 1, 1),
                (256, 5, 2, 0, 1),
                (384, 3, 1, 1, 1),
                (384, 3, 1, 1, 1),
                (256, 3, 1, 1, 1),
            ),
            lrn_after=(0, 1),
            lrn_before_pool=False,  # Fig. 3: conv -> ReLU -> pool -> contrast norm
            pool_ceil_mode=True,
            init="zfnet",
        ),
        62_357_608,
        "Zeiler & Fergus 2013, Fig. 3 (counted from the layer sizes); top-1: Table 2, 1 convnet, val",
        top1=61.7,
    ),
}


@torch.no_grad()
def renormalize_filters_(model: nn.Module, radius: float = 0.1) -> int:
    """Rescale every conv filter whose RMS exceeds ``radius`` to RMS ``radius`` (Zeiler & Fergus, Sec. 3).

    Returns the number of filters rescaled. Call after each optimiser step.
    """
    changed = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            rms = m.weight.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()  # (out, 1, 1, 1): one per filter
            scale = (radius / rms).clamp(max=1.0)
            changed += int((scale < 1).sum())
            m.weight.mul_(scale)
    return changed


register_family(
    "zfnet",
    AlexNet,
    VARIANTS,
    cam_layer="features",
    test_input_size=(3, 32, 32),
    test_kwargs={"small_input": True},
    small_input_kwargs={"small_input": True},
)

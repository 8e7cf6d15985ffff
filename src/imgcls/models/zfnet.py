"""ZFNet: Zeiler & Fergus 2013, "Visualizing and Understanding Convolutional Networks", arXiv:1311.2901
(ECCV 2014).

Builds the network of the paper's Fig. 3 (``zfnet``): AlexNet (:mod:`imgcls.models.alexnet`) with the first
layer changed from 11x11 / 4 to 7x7 / 2 and the second from stride 1 to 5x5 / 2, which the paper's
visualisations showed to remove aliasing and dead filters (Sec. 4.1), and with dense connections throughout
(one GPU). Headline numbers: 62,357,608 parameters at 224x224 and 1000 classes (counted from Fig. 3);
38.4% top-1 / 16.5% top-5 validation error for one network "as per Fig. 3" (Table 2, ten crops), so 61.6%
top-1 accuracy (``top1`` of the spec). An earlier arXiv version, where the figure was Fig. 2, printed
38.3 / 16.4; we quote the final version (arXiv v3, ECCV 2014).

Layers (Fig. 3): conv1 96 @ 7x7 / 2 -> 3x3 / 2 max-pool -> contrast norm -> conv2 256 @ 5x5 / 2 -> 3x3 / 2
max-pool -> contrast norm -> conv3 384 @ 3x3 -> conv4 384 @ 3x3 -> conv5 256 @ 3x3 -> 3x3 / 2 max-pool ->
fc6 4096 -> fc7 4096 -> fc8; ReLU after every layer but the last, dropout 0.5 on fc6 and fc7 (Sec. 3).
Feature map sides at 224x224: 110, 55, 26, 13, 13, 13, 6.

Departures from the paper, and why:
- Padding: Fig. 3's sides (110 after conv1, 55 and 13 after the first two pools) need conv1 padding 1 and
  ceil-mode pooling; the paper does not list paddings, so we use those two, which reproduce every side.
- "Contrast normalisation across feature maps" is given without constants; we use the AlexNet paper's local
  response normalisation (n=5, k=2, alpha=1e-4, beta=0.75), which the paper cites for this operation.
- Input scale: the paper's images are 0-255 pixels minus the per-pixel mean (Sec. 3.1), the scale its LRN
  constants, init and filter radius are set for; as for AlexNet (:mod:`imgcls.models.alexnet`), the model
  multiplies its standardised input by ``RAW_PIXEL_SCALE`` (``input_scale``) to get that scale back.
- Initialisation: "all weights initialized to 10^-2 and biases set to 0" (Sec. 3) is read as N(0, 0.01^2)
  weights (a constant would leave every filter identical), biases 0.
- The training-time filter renormalisation (Sec. 3: any conv filter whose RMS exceeds 0.1 is rescaled to RMS
  0.1) is a step of the optimiser loop, not of the model: the spec declares it as its ``post_step``
  (:func:`renormalize_filters_` at radius 0.1), which ``imgcls train`` calls after every optimiser step.
- As for AlexNet, an ``AdaptiveAvgPool2d((6, 6))`` (the identity at 224x224) ends the convolutions, and the
  small-image form (``small_input=True``) makes conv1 3x3 / 1 / padding 1, runs conv2 at stride 1 (padding
  2) and drops the pool after conv5, so 28x28 / 32x32 images reach the unchanged classifier at 6x6 (see
  :func:`imgcls.models.alexnet.small_input_config`).
"""

from __future__ import annotations

from torch import nn

from imgcls.models.alexnet import AlexNet, AlexNetConfig
from imgcls.models.layers.filter_rms import renormalize_filters_
from imgcls.models.layers.lrn import RAW_PIXEL_SCALE
from imgcls.models.registry import Variant, register_family

__all__ = ["FILTER_RMS_RADIUS", "VARIANTS", "renormalize_filters_", "renormalize_after_step"]

FILTER_RMS_RADIUS = 0.1  # Sec. 3: "a fixed radius of 10^-1"

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
            unit_bias=(),  # Sec. 3: "biases set to 0"
            input_scale=RAW_PIXEL_SCALE,  # Sec. 3.1: mean-subtracted 0-255 pixels
        ),
        62_357_608,
        "Zeiler & Fergus 2013, Fig. 3 (counted from the layer sizes); top-1: Table 2, 1 convnet, val",
        top1=61.6,  # = 100 - 38.4, Table 2's top-1 validation error
    ),
}


def renormalize_after_step(model: nn.Module) -> None:
    """ZFNet's post-step hook: cap every conv filter's RMS at :data:`FILTER_RMS_RADIUS` (Sec. 3)."""
    renormalize_filters_(model, FILTER_RMS_RADIUS)


register_family(
    "zfnet",
    AlexNet,
    VARIANTS,
    cam_layer="features",
    test_input_size=(3, 32, 32),
    test_kwargs={"small_input": True},
    small_input_kwargs={"small_input": True},
    post_step=renormalize_after_step,
)

"""The initialisation most convolutional families share: He (Kaiming) normal convolutions, BatchNorm as the
identity, and a family's own rule for its linear layers. Written once (STYLE.md rule 7); each model's
``init_weights`` calls it and names its source."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Literal

from torch import nn

__all__ = ["kaiming_init_", "linear_normal_", "linear_uniform_out_", "linear_zero_bias_"]


def linear_normal_(m: nn.Linear, std: float = 0.01) -> None:
    """N(0, std^2) weights, zero bias (torchvision's MobileNet, ShuffleNet and VGG classifiers)."""
    nn.init.normal_(m.weight, 0.0, std)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def linear_zero_bias_(m: nn.Linear) -> None:
    """PyTorch's default weights (uniform, bound 1/sqrt(fan_in)), zero bias."""
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def linear_uniform_out_(m: nn.Linear) -> None:
    """Uniform weights in +-1/sqrt(out_features), zero bias: EfficientNet's ``dense_kernel_initializer``."""
    bound = 1.0 / math.sqrt(m.out_features)
    nn.init.uniform_(m.weight, -bound, bound)
    if m.bias is not None:
        nn.init.zeros_(m.bias)


def kaiming_init_(
    model: nn.Module,
    *,
    mode: Literal["fan_in", "fan_out"] = "fan_out",
    zero_conv_bias: bool = True,
    linear: Callable[[nn.Linear], None] | None = None,
) -> None:
    """Initialise ``model`` in place, module by module in ``model.modules()`` order.

    - ``nn.Conv2d``: normal with std sqrt(2 / fan) (He et al. 2015, "Delving Deep into Rectifiers",
      arXiv:1502.01852), fan = ``mode`` (out_channels or in_channels x kernel area); its bias, if any, zero
      unless ``zero_conv_bias=False`` (then PyTorch's default is kept).
    - ``nn.BatchNorm2d``: weight 1, bias 0 (the identity at the start).
    - ``nn.Linear``: ``linear(m)`` (e.g. :func:`linear_normal_`); None keeps PyTorch's default.
    """
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode=mode, nonlinearity="relu")
            if zero_conv_bias and m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear) and linear is not None:
            linear(m)

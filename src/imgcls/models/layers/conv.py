"""Convolution building blocks shared by the convolutional families."""

from __future__ import annotations

from collections.abc import Callable

from torch import nn

__all__ = ["ConvNormAct", "make_divisible"]


def make_divisible(
    value: float, divisor: int = 8, min_value: int | None = None, round_limit: float = 0.9
) -> int:
    """Round a channel count to a multiple of ``divisor``, never going below ``round_limit`` of ``value``.

    The rule of the MobileNetV2 / EfficientNet reference implementations (Sandler et al. 2018, Tan & Le 2019).
    """
    min_value = min_value or divisor
    new_value = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if new_value < round_limit * value:
        new_value += divisor
    return new_value


class ConvNormAct(nn.Sequential):
    """Conv2d -> norm -> activation, with 'same' padding for odd kernels.

    Children are named ``0`` (conv), ``1`` (norm), ``2`` (act) like torchvision's ``Conv2dNormActivation``,
    so checkpoints in that layout load. ``norm_layer=None`` drops the norm and gives the conv a bias;
    ``act_layer=None`` drops the activation.
    """

    def __init__(
        self,
        in_chs: int,
        out_chs: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        groups: int = 1,
        dilation: int = 1,
        norm_layer: Callable[..., nn.Module] | None = nn.BatchNorm2d,
        act_layer: Callable[..., nn.Module] | None = nn.ReLU,
        bias: bool | None = None,
        inplace: bool | None = True,
    ) -> None:
        if padding is None:
            padding = (kernel_size - 1) // 2 * dilation
        if bias is None:
            bias = norm_layer is None
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_chs, out_chs, kernel_size, stride, padding, dilation=dilation, groups=groups, bias=bias
            )
        ]
        if norm_layer is not None:
            layers.append(norm_layer(out_chs))
        if act_layer is not None:
            layers.append(act_layer(inplace=inplace) if inplace is not None else act_layer())
        super().__init__(*layers)
        self.out_channels = out_chs

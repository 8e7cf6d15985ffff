"""Stage layouts shared by several families: the CIFAR-ResNet stage builder and the MobileNet small-image
strides. Written once (STYLE.md rule 7)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import nn

from imgcls.models.layers.drop import drop_path_rates

__all__ = ["BlockFn", "cifar_stages", "small_input_strides"]

# block(index, in_chs, out_chs, stride, drop_path) -> one residual block; index counts blocks over all stages.
BlockFn = Callable[[int, int, int, int, float], nn.Module]


def cifar_stages(
    block: BlockFn,
    in_chs: int,
    depths: Sequence[int],
    widths: Sequence[int],
    drop_path_rate: float = 0.0,
) -> nn.Sequential:
    """Stages of residual blocks as the CIFAR ResNets lay them out (He et al. 2015, arXiv:1512.03385,
    Sec. 4.2; the pre-activation and wide ResNets keep the layout): stage ``i`` has ``depths[i]`` blocks of
    width ``widths[i]``, and the first block of every stage but the first halves the resolution (stride 2).
    Stochastic-depth rates rise linearly over all blocks to ``drop_path_rate`` (:func:`drop_path_rates`).

    Returns ``Sequential(Sequential(blocks of stage 0), ...)``, so block ``j`` of stage ``i`` is ``stages.i.j``.
    """
    rates = drop_path_rates(drop_path_rate, sum(depths))
    stages: list[nn.Module] = []
    index = 0
    for i, (depth, width) in enumerate(zip(depths, widths, strict=True)):
        blocks: list[nn.Module] = []
        for j in range(depth):
            stride = 2 if i > 0 and j == 0 else 1
            blocks.append(block(index, in_chs, width, stride, rates[index]))
            in_chs, index = width, index + 1
        stages.append(nn.Sequential(*blocks))
    return nn.Sequential(*stages)


def small_input_strides(strides: Sequence[int], small_input: bool) -> tuple[int, list[int]]:
    """Stem stride and per-stage first strides of a MobileNet-style network (MobileNet v1/v2, EfficientNet).

    ``strides`` are the stages' first strides after a stride-2 stem (total stride 32). The small-image form
    (``small_input=True``, an adaptation of ours for 28x28 / 32x32 images) runs the stem and the first
    stride-2 stage at stride 1: total stride 8, so a 32 px image reaches the last stage at 4x4 as a 224 px one
    reaches it at 7x7. No weight changes shape, so ImageNet checkpoints still load into that form.
    """
    strides = list(strides)
    if not small_input:
        return 2, strides
    if 2 in strides:
        strides[strides.index(2)] = 1
    return 1, strides

"""FLOP counts and the machine's matrix-multiply throughput, to read speeds as a fraction of the hardware.

FLOPs are counted by ``torch.utils.flop_counter.FlopCounterMode`` (matmuls, convolutions and attention; one
multiply-add = 2 FLOPs). Papers usually quote multiply-adds ("GFLOPs" in the ResNet paper are MACs): divide by 2.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from imgcls.utils.hardware import matmul_throughput  # re-exported: analysis's public API since it began

__all__ = ["count_flops", "matmul_throughput"]


def count_flops(
    model: nn.Module, input_size: tuple[int, int, int], *, batch_size: int = 1, backward: bool = False
) -> int:
    """FLOPs of one forward (and, with ``backward``, the backward) pass over ``batch_size`` images of ``input_size``.

    Runs on the meta device when the model is there (free), else on a real batch.
    """
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    x = torch.zeros(batch_size, *input_size, device=device, requires_grad=False)
    was_training = model.training
    model.train(backward)
    counter = FlopCounterMode(display=False)
    try:
        with counter:
            out = model(x)
            if backward:
                logits = out[0] if isinstance(out, tuple) else out
                logits.float().sum().backward()
    finally:
        model.train(was_training)
        if backward:
            model.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())

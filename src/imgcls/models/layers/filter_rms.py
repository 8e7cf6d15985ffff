"""Filter renormalisation: Zeiler & Fergus 2013, "Visualizing and Understanding Convolutional Networks",
arXiv:1311.2901, Sec. 3: "we renormalize each filter in the convolutional layers whose RMS value exceeds a
fixed radius of 10^-1 to this fixed radius".

A step of the optimisation, not a layer: ZFNet declares it as its spec's ``post_step`` and the trainer's
``filter_rms_limit`` applies it to any model, both after each optimiser step.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["renormalize_filters_"]


@torch.no_grad()
def renormalize_filters_(model: nn.Module, radius: float = 0.1) -> int:
    """Rescale every conv filter whose RMS exceeds ``radius`` to RMS ``radius``; the number rescaled."""
    changed = 0
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            rms = m.weight.pow(2).mean(dim=(1, 2, 3), keepdim=True).sqrt()  # (out, 1, 1, 1): one per filter
            scale = (radius / rms).clamp(max=1.0)
            changed += int((scale < 1).sum())
            m.weight.mul_(scale)
    return changed

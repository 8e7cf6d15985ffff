"""Occlusion sensitivity (Zeiler and Fergus, "Visualizing and Understanding Convolutional Networks", 2013,
arXiv:1311.2901, Section 4.2): a grey square is slid over the image and the probability of the class is
recorded at every position; where covering the image makes the probability drop is what the model uses.

Departure: the paper plots the probability at each position of the square; we return it in pixel space,
each pixel holding the mean probability over the positions whose square covers it, so the map lies on the
image and needs no knowledge of the stride to read.
"""

from __future__ import annotations

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.explain.cam import _logits
from imgcls.explain.hooks import resolve_targets

__all__ = ["occlusion", "occlusion_positions"]


def occlusion_positions(size: int, window: int, stride: int) -> list[int]:
    """The first row (or column) of each square along one side: every ``stride`` from 0, and the last one
    flush with the edge so that every pixel is covered."""
    last = size - window
    starts = list(range(0, last + 1, stride))
    if starts[-1] != last:
        starts.append(last)
    return starts


@torch.no_grad()
def occlusion(
    model: nn.Module,
    images: torch.Tensor,
    target: int | list[int] | torch.Tensor | None = None,
    *,
    window: int | None = None,
    stride: int | None = None,
    fill: float | torch.Tensor = 0.0,
    batch_size: int = 256,
) -> torch.Tensor:
    """Occlusion maps of normalised ``images`` (B, C, H, W): (B, H, W), the mean probability of class
    ``target`` (default: the predicted one) with a ``window`` x ``window`` square of value ``fill`` over each
    pixel.

    ``fill`` is in the model's (normalised) input space: 0 is the dataset's mean; a tensor (C,) gives one
    value per channel (``imgcls explain`` passes mid-grey, (0.5 - mean) / std). ``window`` defaults to a
    quarter of the shorter side, ``stride`` to half the window (at least 1).
    """
    B, C, H, W = images.shape
    window = window if window is not None else max(1, min(H, W) // 4)
    stride = stride if stride is not None else max(1, window // 2)
    if not 1 <= window <= min(H, W):
        raise ConfigError(f"occlusion window {window} does not fit a {H}x{W} image: give 1..{min(H, W)}")
    if stride < 1:
        raise ConfigError(f"occlusion stride must be >= 1, got {stride}")
    fill_t = torch.as_tensor(fill, dtype=images.dtype, device=images.device).reshape(-1, 1, 1)  # (C|1, 1, 1)
    if fill_t.shape[0] not in (1, C):
        raise ConfigError(f"fill has {fill_t.shape[0]} values for {C} channels: give one, or one per channel")
    targets = resolve_targets(_logits(model(images)), target)
    squares = [
        (t, l) for t in occlusion_positions(H, window, stride) for l in occlusion_positions(W, window, stride)
    ]
    total = torch.zeros(B, H, W, dtype=torch.float64, device=images.device)
    count = torch.zeros(H, W, dtype=torch.float64, device=images.device)
    for t, l in squares:
        count[t : t + window, l : l + window] += 1
    for b in range(B):
        for i in range(0, len(squares), batch_size):
            chunk = squares[i : i + batch_size]
            x = images[b].expand(len(chunk), C, H, W).clone()  # (n, C, H, W): one copy per square
            for j, (t, l) in enumerate(chunk):
                x[j, :, t : t + window, l : l + window] = fill_t
            probs = _logits(model(x)).float().softmax(1)[:, targets[b]]  # (n,)
            for (t, l), p in zip(chunk, probs.tolist()):
                total[b, t : t + window, l : l + window] += p
    return (total / count).to(images.dtype)  # every pixel is covered at least once (occlusion_positions)

"""Channel shuffle (Zhang et al. 2017, "ShuffleNet", arXiv:1707.01083, Sec. 3.1 and Fig. 1).

After a group convolution with ``g`` groups each group's outputs depend only on that group's inputs. The
shuffle lets the next group convolution see channels from every group: reshape the channel axis to
``(g, n)``, transpose to ``(n, g)`` and flatten back. ShuffleNet v1 and ShuffleNet v2 both use it.

The permutation sends output channel ``j * g + i`` to input channel ``i * n + j``; its inverse is the same
shuffle with ``n = C / g`` groups (the reshape read the other way round), which :func:`channel_unshuffle`
spells out.
"""

from __future__ import annotations

import torch
from torch import nn

from imgcls.errors import ConfigError

__all__ = ["ChannelShuffle", "channel_shuffle", "channel_unshuffle"]


def channel_shuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """Interleave the channels of ``groups`` equal groups: (B, C, H, W) -> (B, C, H, W)."""
    B, C, H, W = x.shape
    if C % groups:
        raise ConfigError(f"channel shuffle: {C} channels do not split into {groups} groups")
    x = x.view(B, groups, C // groups, H, W)  # (B, g, n, H, W)
    x = x.transpose(1, 2)  # (B, n, g, H, W)
    return x.reshape(B, C, H, W)


def channel_unshuffle(x: torch.Tensor, groups: int) -> torch.Tensor:
    """The inverse of :func:`channel_shuffle` with the same ``groups``."""
    if x.shape[1] % groups:
        raise ConfigError(f"channel unshuffle: {x.shape[1]} channels do not split into {groups} groups")
    return channel_shuffle(x, x.shape[1] // groups)


class ChannelShuffle(nn.Module):
    """:func:`channel_shuffle` as a module (no parameters)."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return channel_shuffle(x, self.groups)

    def extra_repr(self) -> str:
        return f"groups={self.groups}"

"""Patch embedding by linear projection (Dosovitskiy et al. 2020, arXiv:2010.11929, Eq. 1)."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from imgcls.errors import ConfigError

__all__ = ["PatchEmbed"]


class PatchEmbed(nn.Module):
    """Split an image into non-overlapping ``patch_size`` patches and project each to ``embed_dim``.

    A stride-``patch_size`` convolution is the same linear map applied to every flattened patch.
    ``flatten=True`` returns tokens (B, N, C); otherwise a (B, C, H/p, W/p) map (``channels_last_out``
    gives (B, H/p, W/p, C), as Swin uses).
    """

    def __init__(
        self,
        patch_size: int = 16,
        in_chans: int = 3,
        embed_dim: int = 768,
        norm_layer: Callable[..., nn.Module] | None = None,
        flatten: bool = True,
        channels_last_out: bool = False,
    ) -> None:
        super().__init__()
        self.patch_size = patch_size
        self.proj = nn.Conv2d(in_chans, embed_dim, patch_size, patch_size)
        self.norm = norm_layer(embed_dim) if norm_layer else nn.Identity()
        self.flatten = flatten
        self.channels_last_out = channels_last_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        H, W = x.shape[-2:]
        if H % self.patch_size or W % self.patch_size:
            raise ConfigError(
                f"input {H}x{W} is not divisible by the patch size {self.patch_size}: resize or pick another patch size"
            )
        x = self.proj(x)  # (B, C, H/p, W/p)
        if self.flatten:
            x = x.flatten(2).transpose(1, 2)  # (B, C, N) -> (B, N, C)
        elif self.channels_last_out:
            x = x.permute(0, 2, 3, 1)  # (B, C, h, w) -> (B, h, w, C)
            return self.norm(x)
        else:
            return x
        return self.norm(x)

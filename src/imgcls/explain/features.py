"""What a network computes, shown directly: the first layer's filters and the feature maps of any layer
(Zeiler and Fergus 2013, arXiv:1311.2901, Figures 2 and 6, show both for their network)."""

from __future__ import annotations

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.explain.hooks import record, resolve_layer, to_map

__all__ = ["feature_maps", "first_layer_filters"]


def first_layer_filters(model: nn.Module) -> torch.Tensor:
    """The weights of the first convolution in module order (a ViT's patch projection too): (K, C, kh, kw)."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            return m.weight.detach().clone()
    raise ConfigError(
        f"{type(model).__name__} has no convolution, so no filters to show (an MLP reads pixels)"
    )


@torch.no_grad()
def feature_maps(model: nn.Module, images: torch.Tensor, layer: str) -> torch.Tensor:
    """The output of ``layer`` for normalised ``images`` (B, C, H, W), as maps (B, K, h, w) (channels-last
    maps and patch tokens laid out on their grid, a class token dropped)."""
    module = resolve_layer(model, layer)
    with record(module) as rec:
        model(images)
    if rec.output is None:
        raise ConfigError(f"layer '{layer}' is not used by the model's forward pass: pick another layer")
    return to_map(rec.output, (images.shape[-2], images.shape[-1]), module).clone()

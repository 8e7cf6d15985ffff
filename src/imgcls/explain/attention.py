"""Where a transformer looks: its attention maps, attention rollout, and Swin's per-window maps.

Attention rollout: Samira Abnar and Willem Zuidema, "Quantifying Attention Flow in Transformers", 2020,
arXiv:2005.00928, Section 3: each layer's attention, averaged over heads, is mixed with the identity for the
residual connection, A' = 0.5 A + 0.5 I, and the layers are multiplied from the first up,
R = A'_L ... A'_1; the class token's row of R, over the patch tokens, says how much each patch flows into
the class token. It needs global attention with a class token (ViT).

Every map comes from the model's attention layers (modules with ``keep_attn`` / ``last_attn``, see
:func:`imgcls.models.layers.attention_maps`), which compute the probabilities explicitly while asked, so
models running fused attention give real maps, never empty ones.
"""

from __future__ import annotations

import torch
from torch import nn

from imgcls.errors import ConfigError
from imgcls.explain.hooks import patch_grid
from imgcls.models.layers import attention_maps as _model_attention_maps
from imgcls.models.swin import window_reverse

__all__ = ["attention_maps", "attention_rollout", "class_attention", "window_attention"]

ATTENTION_FAMILIES = "vit, swin and coatnet"


def _attention_layers(model: nn.Module) -> list[nn.Module]:
    layers = [m for m in model.modules() if hasattr(m, "keep_attn") and hasattr(m, "last_attn")]
    if not layers:
        raise ConfigError(
            f"{type(model).__name__} has no attention layers: attention maps apply to {ATTENTION_FAMILIES} "
            "models; for a CNN use Grad-CAM, occlusion, the deconvnet or guided backpropagation"
        )
    return layers


@torch.no_grad()
def attention_maps(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Every attention layer's probabilities for normalised ``images``: (B or B * windows, heads, N, N)."""
    _attention_layers(model)
    return _model_attention_maps(model, images)


@torch.no_grad()
def attention_rollout(model: nn.Module, images: torch.Tensor, *, head_fusion: str = "mean") -> torch.Tensor:
    """Attention rollout of normalised ``images`` (B, C, H, W): (B, h, w) on the patch grid, the class
    token's rolled-out attention to each patch (sums to at most 1 over the grid).

    ``head_fusion`` merges the heads: ``"mean"`` as in the paper, or ``"max"``.
    """
    if head_fusion not in ("mean", "max"):
        raise ConfigError(f"head_fusion must be 'mean' or 'max', got '{head_fusion}'")
    maps = attention_maps(model, images)
    B = images.shape[0]
    N = maps[0].shape[-1]
    grid = patch_grid(N - 1, (images.shape[-2], images.shape[-1]))
    if any(a.shape[0] != B or a.shape[-1] != N for a in maps) or grid is None:
        raise ConfigError(
            f"attention rollout needs global attention over a class token and the patches in every layer "
            f"(ViT); {type(model).__name__} attends within windows or changes resolution: use "
            "window_attention (Swin) or Grad-CAM"
        )
    eye = torch.eye(N, dtype=maps[0].dtype, device=maps[0].device)
    rollout = eye.expand(B, N, N)
    for a in maps:  # first layer first: R_l = A'_l R_{l-1}
        fused = a.mean(1) if head_fusion == "mean" else a.amax(1)  # (B, heads, N, N) -> (B, N, N)
        mixed = 0.5 * fused + 0.5 * eye  # the residual connection
        mixed = mixed / mixed.sum(-1, keepdim=True)  # rows sum to 1 (they do already with "mean")
        rollout = mixed @ rollout
    return rollout[:, 0, 1:].reshape(B, *grid)  # class token's row, patch columns -> (B, h, w)


@torch.no_grad()
def class_attention(model: nn.Module, images: torch.Tensor, block: int = -1) -> torch.Tensor:
    """The class token's attention to the patches in one block (default the last): (B, heads, h, w)."""
    maps = attention_maps(model, images)
    a = maps[block]
    N = a.shape[-1]
    grid = patch_grid(N - 1, (images.shape[-2], images.shape[-1]))
    if a.shape[0] != images.shape[0] or grid is None:
        raise ConfigError(
            "class-token attention needs global attention with a class token (ViT): use window_attention for Swin"
        )
    return a[:, :, 0, 1:].reshape(a.shape[0], a.shape[1], *grid)  # (B, heads, N-1) -> (B, heads, h, w)


@torch.no_grad()
def window_attention(model: nn.Module, images: torch.Tensor) -> list[torch.Tensor]:
    """Per-window attention of a Swin model: for each block, (B, h, w), the attention each position receives
    from the other positions of its window (mean over heads and queries), laid back on the block's grid
    (windows of a shifted block are shifted back)."""
    layers = [m for m in _attention_layers(model) if hasattr(m, "window_for")]
    if not layers:
        raise ConfigError(
            f"{type(model).__name__} has no windowed attention: per-window maps apply to swin; use "
            "attention_rollout for a ViT"
        )
    sizes: dict[int, tuple[int, int]] = {}
    hooks = [
        m.register_forward_pre_hook(lambda m, inputs: sizes.__setitem__(id(m), tuple(inputs[0].shape[1:3])))
        for m in layers
    ]
    try:
        maps = attention_maps(model, images)
    finally:
        for h in hooks:
            h.remove()
    windowed = {id(m) for m in layers}
    out = []
    for m, a in zip(_attention_layers(model), maps):  # maps come in module order
        if id(m) not in windowed:
            continue
        H, W = sizes[id(m)]
        ws, shift = m.window_for(H, W)  # the window and shift the block used on this map
        Hp, Wp = H + (-H) % ws, W + (-W) % ws
        received = a.mean(1).mean(1)  # (B*nW, heads, N, N) -> (B*nW, N): mean over heads, then queries
        grid = window_reverse(received[..., None], ws, Hp, Wp)[..., 0]  # (B, Hp, Wp)
        if shift:
            grid = torch.roll(grid, shifts=(shift, shift), dims=(1, 2))
        out.append(grid[:, :H, :W])
    return out

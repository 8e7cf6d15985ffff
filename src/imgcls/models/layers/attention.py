"""Multi-head self-attention (Vaswani et al. 2017, arXiv:1706.03762) with an optional additive bias/mask.

Uses ``torch.nn.functional.scaled_dot_product_attention`` (fused kernels) unless the attention map is asked
for, in which case it computes softmax(QK^T / sqrt(d) + bias) explicitly and returns it as well.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["Attention", "attention", "attention_maps"]


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    bias: torch.Tensor | None = None,
    dropout_p: float = 0.0,
    return_attn: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Scaled dot-product attention over (B, H, N, D) tensors; ``bias`` broadcasts to (B, H, N, N).

    Returns the output (B, H, N, D) and, if ``return_attn``, the attention probabilities (B, H, N, N).
    """
    if not return_attn:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=bias, dropout_p=dropout_p)
        return out, None
    scale = q.shape[-1] ** -0.5
    logits = (q * scale) @ k.transpose(-2, -1)  # (B, H, N, N)
    if bias is not None:
        logits = logits + bias
    attn = logits.softmax(dim=-1)
    out = F.dropout(attn, dropout_p) @ v
    return out, attn


class Attention(nn.Module):
    """Multi-head self-attention on tokens (B, N, C) with a fused qkv projection.

    After a forward pass with ``return_attn=True`` (or with ``self.keep_attn = True``), the attention
    probabilities are in ``self.last_attn`` (B, H, N, N); visualisation reads them from there.
    """

    def __init__(
        self,
        dim: int,
        num_heads: int = 8,
        qkv_bias: bool = True,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"dim {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = attn_drop
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.keep_attn = False
        self.last_attn: torch.Tensor | None = None

    def forward(
        self, x: torch.Tensor, bias: torch.Tensor | None = None, return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # (B, N, 3, H, D) -> 3 x (B, H, N, D)
        want = return_attn or self.keep_attn
        out, attn = attention(q, k, v, bias, self.attn_drop if self.training else 0.0, want)
        if self.keep_attn:
            self.last_attn = attn
        x = out.transpose(1, 2).reshape(B, N, C)  # (B, H, N, D) -> (B, N, C)
        x = self.proj_drop(self.proj(x))
        return (x, attn) if return_attn else x


def attention_maps(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """The attention probabilities of every attention layer of ``model`` for images ``x``, in module order.

    An attention layer is any module with a ``keep_attn`` flag and a ``last_attn`` slot (:class:`Attention`,
    CoAtNet's relative attention); each map is (B, heads, N, N) (for windowed attention B counts windows) and
    its rows sum to 1. The flags are restored afterwards, and no map is kept.
    """
    layers = [m for m in model.modules() if hasattr(m, "keep_attn") and hasattr(m, "last_attn")]
    if not layers:
        raise ValueError(f"{type(model).__name__} has no attention layers")
    for m in layers:
        m.keep_attn = True
    try:
        model.forward_features(x)  # type: ignore[operator]
        unused = [type(m).__name__ for m in layers if m.last_attn is None]
        if unused:  # a map missing from the list would shift every later one: refuse instead
            raise ValueError(
                f"{len(unused)} attention layers ({unused[0]}, ...) kept no map in forward_features"
            )
        return [m.last_attn for m in layers]  # type: ignore[misc]
    finally:
        for m in layers:
            m.keep_attn, m.last_attn = False, None

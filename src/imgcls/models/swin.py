"""Swin Transformer.

Paper: "Swin Transformer: Hierarchical Vision Transformer using Shifted Windows", Ze Liu, Yutong Lin, Yue Cao,
Han Hu, Yixuan Wei, Zheng Zhang, Stephen Lin, Baining Guo, 2021, arXiv:2103.14030.

Built: a hierarchical Transformer. 4 x 4 patches are embedded linearly (C channels, LayerNorm); four stages
of Swin blocks follow, each block self-attending inside non-overlapping M x M windows with a learned relative
position bias (Eq. 4), every second block with the windows shifted by M/2 (a cyclic shift plus an attention
mask, Section 3.2, Figure 4); between stages, patch merging concatenates 2 x 2 neighbours and projects
4C -> 2C, halving the resolution and doubling the width. A LayerNorm, global average pooling and a linear head
close it.

Headline numbers (paper Table 1(a), ImageNet-1K at 224 px): Swin-T 81.3% top-1 with 28M parameters and
4.5 GFLOPs, Swin-S 83.0% (50M, 8.7G), Swin-B 83.5% (88M, 15.4G); 58.7 box AP on COCO and 53.5 mIoU on ADE20K
with larger models (Tables 2-3).

Layout: ``state_dict()`` keys and shapes are torchvision's ``SwinTransformer`` (v1): ``features.0`` the patch
embedding (``0`` conv, ``2`` LayerNorm), ``features.{1,3,5,7}`` the stages of blocks (``norm1``, ``attn`` with
``relative_position_bias_table``, a persistent int64 ``relative_position_index`` buffer, ``qkv``, ``proj``;
``norm2``, ``mlp.0``, ``mlp.3``), ``features.{2,4,6}`` the patch mergings (``reduction``, ``norm``), then
``norm`` and ``head``; torchvision's checkpoints load with ``imgcls.load_pretrained``. The patch embedding is
the shared :class:`~imgcls.models.layers.PatchEmbed` saved under torchvision's names by
:func:`~imgcls.models.layers.checkpoint_names.use_checkpoint_names`; the window attention is the shared
:class:`~imgcls.models.layers.Attention` (``scaled_dot_product_attention`` with the relative position bias
plus the shift mask as ``attn_mask``), extended with the bias table; attention maps come back on request.

Departures from the paper, and why:

- A map no larger than the window on its shorter side (min(H, W) <= M) is attended in windows of that side,
  min(H, W), without shift, as the official code does (microsoft/Swin-Transformer, ``SwinTransformerBlock``:
  "if window size is larger than input resolution, we don't partition windows"); torchvision instead pads
  such a map up to M, so its padded tokens join the attention. At 224 px only Swin-T/S/B's last stage (7 x 7,
  M = 7) meets the rule, and there both keep M and drop the shift, so torchvision's checkpoints compute the
  same. The official code builds such a block with a (2m - 1)^2-row bias table for the shrunk window m; we
  keep the (2M - 1)^2 table (checkpoints load, and the model runs at any input size) and index its central
  rows, which hold the same relative offsets: the same function, with the outer rows unused (1,920 parameters
  in ``swin_t_patch2_window4_32``'s last stage at 32 px).
- Larger maps not divisible by the window are padded at the bottom / right before the window partition (the
  official code requires divisible maps; torchvision pads). Odd maps are padded by one before patch merging,
  as torchvision does.
- The shift mask adds -100, not -inf, to the logits of token pairs from different regions (the official code's
  value): their probability, e^-100 relative to the others, is zero in float32.
- Small-input form (not in the paper): 2 x 2 patches and 4 x 4 windows, so 32 px inputs give 16, 8, 4, 2
  patch grids over the four stages (28 px: 14 -> padded to 16, 7 -> 8, 4, 2); the 4 x 4 stage attends one
  unshifted window, the 2 x 2 stage one unshifted 2 x 2 window (the rule above). ``swin_t_patch2_window4_32``
  is Swin-T in that form; ``create_model("swin_t", image_size<=64)`` switches any variant to it. Loading
  224 px checkpoints into it fails on the bias-table shape (7^2 vs 13^2 rows): it is meant for training from
  scratch.
- Stochastic depth uses the shared linear rule (block l of L dropped with l/L times the rate), where the
  official code uses torch.linspace(0, rate, L) (first block never dropped); the rates per variant are the
  paper's (0.2 / 0.3 / 0.5 for T / S / B, Appendix A2.1). Only training differs, loading does not.
- Swin-L (Table 7, pre-trained on ImageNet-22K only, 197M parameters) is not registered.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import Attention, DropPath, Mlp, PatchEmbed, attention_maps, drop_path_rates
from imgcls.models.layers.checkpoint_names import use_checkpoint_names
from imgcls.models.registry import Variant, register_family

__all__ = [
    "PatchMerging",
    "ShiftedWindowAttention",
    "SwinBlock",
    "SwinConfig",
    "SwinTransformer",
    "merge_patches",
    "relative_position_index",
    "shifted_window_mask",
    "window_partition",
    "window_reverse",
]

# Logit added to token pairs from different regions of a shifted window (official code's value).
MASK_VALUE = -100.0


@dataclass(frozen=True)
class SwinConfig:
    """One Swin variant: the paper's Table 7 column (C, layer numbers, heads) plus patch and window size.

    Attributes:
        embed_dim: C, the width of the first stage (doubled by every patch merging).
        depths: blocks per stage (even: blocks alternate regular and shifted windows).
        num_heads: attention heads per stage (head width 32 throughout the paper).
        patch_size: side of the embedded patches (4 in the paper).
        window_size: M, the side of an attention window (7 in the paper).
        mlp_ratio: MLP hidden width over the block width (alpha = 4).
        dropout: dropout after the attention's output projection and inside the MLP.
        attention_dropout: dropout on the attention probabilities.
        drop_path_rate: stochastic depth of the last block (shared linear rule).
    """

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    patch_size: int = 4
    window_size: int = 7
    mlp_ratio: float = 4.0
    dropout: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.0


_TV = "torchvision {} (parameters); GFLOPs and top-1: paper Table 1(a)"
# Paper Table 7 (detailed architecture specifications) and Section 3.3: C, layer numbers and heads per stage;
# M = 7, head width 32, alpha = 4. Stochastic depth 0.2 / 0.3 / 0.5 for T / S / B (Appendix A2.1).
# fmt: off
VARIANTS: dict[str, Variant] = {
    # name: SwinConfig(C, layer numbers, heads, ...), parameters at 1000 classes, source, GFLOPs, top-1
    "swin_t": Variant(
        SwinConfig(96, (2, 2, 6, 2), (3, 6, 12, 24), drop_path_rate=0.2),
        28_288_354, _TV.format("swin_t"), gmacs=4.5, top1=81.3,
    ),
    "swin_s": Variant(
        SwinConfig(96, (2, 2, 18, 2), (3, 6, 12, 24), drop_path_rate=0.3),
        49_606_258, _TV.format("swin_s"), gmacs=8.7, top1=83.0,
    ),
    "swin_b": Variant(
        SwinConfig(128, (2, 2, 18, 2), (4, 8, 16, 32), drop_path_rate=0.5),
        87_768_224, _TV.format("swin_b"), gmacs=15.4, top1=83.5,
    ),
    # Small-input form of Swin-T for training from scratch on 28 / 32 px images (our adaptation, no paper
    # row). Its count (at 10 classes) is the closed form: per block 12 d^2 + 13 d + (2M - 1)^2 heads, per
    # merging 8 d^2 + 8 d, stem c p^2 C + 3 C, final norm 2 * 8C, head 8C K + K.
    "swin_t_patch2_window4_32": Variant(
        SwinConfig(96, (2, 2, 6, 2), (3, 6, 12, 24), patch_size=2, window_size=4, drop_path_rate=0.2),
        27_507_028, "closed form above (no published figure)", input_size=32, num_classes=10,
    ),
}
# fmt: on

# How a 224 px variant adapts to 28 / 32 px images: 2 px patches, 4 x 4 windows.
SMALL_INPUT_KWARGS: dict[str, Any] = {"patch_size": 2, "window_size": 4}


def relative_position_index(window_size: int, table_window: int | None = None) -> torch.Tensor:
    """Index into the (2T-1)^2-row bias table for every (query, key) pair of an M x M window: (M^4,) int64.

    Tokens are numbered row-major inside the window; the pair (i, j) maps to the relative offset
    (row_i - row_j, col_i - col_j), each in [-(M-1), M-1], stored row-major in the table (paper Section 3.2).
    The table is sized for windows of side T = ``table_window`` (default M); a smaller window (M < T, a map
    smaller than the block's window) reads the table's central rows.
    """
    m = window_size
    t = m if table_window is None else table_window
    if not 1 <= m <= t:
        raise ConfigError(f"a {m} x {m} window does not fit a bias table sized for {t} x {t} windows")
    # (2, M*M): the (row, col) of every window position, row-major
    coords = torch.stack(torch.meshgrid(torch.arange(m), torch.arange(m), indexing="ij")).flatten(1)
    rel = coords[:, :, None] - coords[:, None, :] + (t - 1)  # (2, M*M, M*M), offsets shifted to [0, 2T-2]
    return (rel[0] * (2 * t - 1) + rel[1]).flatten()  # (M^4,)


def window_partition(x: torch.Tensor, window_size: int) -> torch.Tensor:
    """(B, H, W, C), H and W multiples of M -> windows (B * H/M * W/M, M*M, C), windows row-major."""
    B, H, W, C = x.shape
    m = window_size
    x = x.view(B, H // m, m, W // m, m, C).permute(0, 1, 3, 2, 4, 5)  # (B, H/M, W/M, M, M, C)
    return x.reshape(B * (H // m) * (W // m), m * m, C)


def window_reverse(windows: torch.Tensor, window_size: int, H: int, W: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * nW, M*M, C) -> (B, H, W, C)."""
    m = window_size
    C = windows.shape[-1]
    x = windows.view(-1, H // m, W // m, m, m, C).permute(0, 1, 3, 2, 4, 5)  # (B, H/M, M, W/M, M, C)
    return x.reshape(-1, H, W, C)


def shifted_window_mask(
    size: tuple[int, int],
    window_size: int,
    shift: tuple[int, int],
    device: torch.device | str | None = None,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The attention mask of shifted windows on a (padded) H x W map after the cyclic shift: (nW, M*M, M*M).

    After rolling the map by ``-shift``, the last window row / column holds tokens that came from opposite
    sides of the image. Each axis splits into regions [0, H-M), [H-M, H-s), [H-s, H) (one region when s = 0);
    token pairs from different regions get :data:`MASK_VALUE`, pairs from the same region 0 (paper Figure 4).
    """

    def regions(n: int, s: int) -> torch.Tensor:  # (n,) region label along one axis
        label = torch.zeros(n, dtype=torch.long, device=device)
        if s > 0:
            label[n - window_size : n - s] = 1
            label[n - s :] = 2
        return label

    labels = regions(size[0], shift[0])[:, None] * 3 + regions(size[1], shift[1])[None, :]  # (H, W)
    labels = window_partition(labels[None, :, :, None], window_size).squeeze(-1)  # (nW, M*M)
    differ = labels[:, :, None] != labels[:, None, :]  # (nW, M*M, M*M)
    return torch.zeros(differ.shape, dtype=dtype, device=device).masked_fill(differ, MASK_VALUE)


class ShiftedWindowAttention(Attention):
    """Multi-head self-attention inside (shifted) M x M windows with a relative position bias.

    The shared :class:`~imgcls.models.layers.Attention` (same ``qkv`` / ``proj`` as torchvision's
    ``ShiftedWindowAttention``) runs on the windows; this class adds the bias table, the index buffer, the
    padding, the cyclic shift and its mask. Input and output are channels-last maps (B, H, W, C).
    """

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        attn_drop: float = 0.0,
        proj_drop: float = 0.0,
    ) -> None:
        super().__init__(dim, num_heads, qkv_bias=True, attn_drop=attn_drop, proj_drop=proj_drop)
        self.window_size = window_size
        self.shift_size = shift_size
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size - 1) ** 2, num_heads))
        # Persistent, as in torchvision's checkpoints.
        self.register_buffer("relative_position_index", relative_position_index(window_size))

    def relative_position_bias(self, window_size: int | None = None) -> torch.Tensor:
        """The bias B of Eq. 4 for one window of side ``window_size`` (default M): (heads, N, N), N = area."""
        m = self.window_size if window_size is None else window_size
        if m == self.window_size:
            index = self.relative_position_index
        else:  # a window shrunk to a small map: the table's central rows
            index = relative_position_index(m, self.window_size).to(self.relative_position_index.device)
        bias = self.relative_position_bias_table[index]  # (N*N, heads)
        return bias.view(m * m, m * m, -1).permute(2, 0, 1)  # (N, N, heads) -> (heads, N, N)

    def window_for(self, height: int, width: int) -> tuple[int, int]:
        """(window side, shift) this block uses on a height x width map: (M, its shift), or (min(H, W), 0)
        where the map's shorter side is at most M, as the official code shrinks the window and drops the shift.
        """
        if min(height, width) <= self.window_size:
            return min(height, width), 0
        return self.window_size, self.shift_size

    def forward(  # type: ignore[override]
        self, x: torch.Tensor, return_attn: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """(B, H, W, C) -> (B, H, W, C); with ``return_attn`` also the maps (B * nW, heads, N, N).

        N = M*M, or m*m for a map whose shorter side m is at most M: such a map is attended in m x m windows
        without shift, as the official code does (module docstring).
        """
        B, H, W, _ = x.shape
        m, shift_size = self.window_for(H, W)
        pad_b, pad_r = (-H) % m, (-W) % m
        x = F.pad(x, (0, 0, 0, pad_r, 0, pad_b))  # pad the W then the H axis of (B, H, W, C) at the end
        Hp, Wp = H + pad_b, W + pad_r
        shift = (shift_size, shift_size)
        shifted = shift_size > 0
        if shifted:
            x = torch.roll(x, shifts=(-shift[0], -shift[1]), dims=(1, 2))
        windows = window_partition(x, m)  # (B * nW, N, C)
        bias = self.relative_position_bias(m).unsqueeze(0)  # (1, heads, N, N)
        if shifted:
            mask = shifted_window_mask((Hp, Wp), m, shift, device=x.device, dtype=bias.dtype)  # (nW, N, N)
            bias = bias + mask.unsqueeze(1)  # (nW, heads, N, N)
            # (nW, heads, N, N) -> (B * nW, heads, N, N), image by image as window_partition orders windows
            bias = bias.unsqueeze(0).expand(B, *bias.shape).reshape(-1, *bias.shape[1:])
        out = super().forward(windows, bias=bias, return_attn=return_attn)
        out, attn = out if isinstance(out, tuple) else (out, None)
        x = window_reverse(out, m, Hp, Wp)  # (B, Hp, Wp, C)
        if shifted:
            x = torch.roll(x, shifts=shift, dims=(1, 2))
        x = x[:, :H, :W].contiguous()
        return (x, attn) if return_attn else x  # type: ignore[return-value]


class SwinBlock(nn.Module):
    """Pre-norm block: (shifted) window attention and an MLP, each residual (paper Eq. 3)."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        window_size: int,
        shift_size: int,
        mlp_ratio: float = 4.0,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = ShiftedWindowAttention(
            dim, num_heads, window_size, shift_size, attn_drop=attention_dropout, proj_drop=dropout
        )
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), act_layer=nn.GELU, drop=dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C) -> same
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def merge_patches(x: torch.Tensor) -> torch.Tensor:
    """Concatenate each 2 x 2 neighbourhood: (B, H, W, C) -> (B, ceil(H/2), ceil(W/2), 4C).

    Order (torchvision's): (even row, even col), (odd row, even col), (even row, odd col), (odd row, odd col).
    Odd sides are padded by one zero row / column first.
    """
    H, W = x.shape[-3], x.shape[-2]
    x = F.pad(x, (0, 0, 0, W % 2, 0, H % 2))
    parts = [x[..., 0::2, 0::2, :], x[..., 1::2, 0::2, :], x[..., 0::2, 1::2, :], x[..., 1::2, 1::2, :]]
    return torch.cat(parts, dim=-1)


class PatchMerging(nn.Module):
    """Downsampling between stages (Section 3.1): 2 x 2 merge, LayerNorm(4C), linear 4C -> 2C without bias."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, H, W, C) -> (B, H/2, W/2, 2C)
        return self.reduction(self.norm(merge_patches(x)))


class SwinTransformer(nn.Module):
    """Patch embedding, four stages of Swin blocks with patch merging between them, LayerNorm, pooled head."""

    def __init__(self, cfg: SwinConfig, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        if len(cfg.depths) != len(cfg.num_heads):
            raise ConfigError(f"depths {cfg.depths} and num_heads {cfg.num_heads} differ in length")
        self.cfg = cfg
        # Patch embedding with LayerNorm, channels-last out, saved as torchvision's features.0 (0 conv, 2 LN).
        stem = PatchEmbed(
            cfg.patch_size,
            in_chans,
            cfg.embed_dim,
            norm_layer=nn.LayerNorm,
            flatten=False,
            channels_last_out=True,
        )
        use_checkpoint_names(
            stem,
            {
                "proj.weight": "0.weight",
                "proj.bias": "0.bias",
                "norm.weight": "2.weight",
                "norm.bias": "2.bias",
            },
        )
        layers: list[nn.Module] = [stem]
        rates = iter(drop_path_rates(cfg.drop_path_rate, sum(cfg.depths)))
        for i, (depth, heads) in enumerate(zip(cfg.depths, cfg.num_heads, strict=True)):
            dim = cfg.embed_dim * 2**i
            # Blocks alternate regular (even) and shifted (odd) windows, shifted by M // 2 (Section 3.2).
            blocks = [
                SwinBlock(
                    dim,
                    heads,
                    cfg.window_size,
                    0 if j % 2 == 0 else cfg.window_size // 2,
                    cfg.mlp_ratio,
                    cfg.dropout,
                    cfg.attention_dropout,
                    next(rates),
                )
                for j in range(depth)
            ]
            layers.append(nn.Sequential(*blocks))
            if i < len(cfg.depths) - 1:
                layers.append(PatchMerging(dim))
        self.features = nn.Sequential(*layers)
        self.num_features = cfg.embed_dim * 2 ** (len(cfg.depths) - 1)
        self.norm = nn.LayerNorm(self.num_features)
        self.head: nn.Module = self._new_head(num_classes)
        self.init_weights()

    def _new_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(self.num_features, num_classes)
        nn.init.trunc_normal_(head.weight, std=0.02)  # official code's Linear init
        nn.init.zeros_(head.bias)
        return head

    def init_weights(self) -> None:
        """Initialise as the official code (microsoft/Swin-Transformer); the patch conv keeps its default."""
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)  # official code: every Linear trunc_normal(0.02)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
            elif isinstance(m, ShiftedWindowAttention):
                nn.init.trunc_normal_(m.relative_position_bias_table, std=0.02)  # official code

    @property
    def blocks(self) -> list[SwinBlock]:
        """All Swin blocks, in order."""
        return [m for m in self.features.modules() if isinstance(m, SwinBlock)]

    def reset_classifier(self, num_classes: int) -> None:
        self.head = self._new_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> normalised last-stage map (B, H/32, W/32, 8C), channels last."""
        return self.norm(self.features(x))

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x.mean(dim=(1, 2))  # global average pool, (B, h, w, C) -> (B, C)
        if pre_logits:
            return x
        return self.head(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Attention probabilities of every block: a list of (B * nW, heads, N, N) tensors, rows sum to 1.

        N = M*M (m*m where a map's shorter side m is at most M). Windows are numbered row-major per image on
        the padded, (for odd blocks) cyclically shifted map.
        """
        return attention_maps(self, x)


# Keyword overrides (patch_size=, window_size=, drop_path_rate=, ...) replace the table config's fields.
register_family(
    "swin",
    SwinTransformer,
    VARIANTS,
    cam_layer="features",
    # 32 px keeps the registry test fast and exercises the shrunk, unshifted windows of small maps.
    test_input_size=(3, 32, 32),
    small_input_kwargs=SMALL_INPUT_KWARGS,
)

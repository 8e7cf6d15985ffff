"""Vision Transformer (ViT).

Paper: "An Image is Worth 16x16 Words: Transformers for Image Recognition at Scale", Alexey Dosovitskiy,
Lucas Beyer, Alexander Kolesnikov, Dirk Weissenborn, Xiaohua Zhai, Thomas Unterthiner, Mostafa Dehghani,
Matthias Minderer, Georg Heigold, Sylvain Gelly, Jakob Uszkoreit, Neil Houlsby, 2020, arXiv:2010.11929.

Built: the image is cut into P x P patches, each linearly projected to D dimensions (Eq. 1), a learnable
class token is prepended and learnable 1-D position embeddings are added, then L pre-norm Transformer encoder
blocks (LN -> multi-head self-attention -> residual, LN -> MLP with GELU -> residual; Eq. 2-3), a final
LayerNorm and a linear head on the class token (Eq. 4).

Headline numbers: pre-trained on JFT-300M, ViT-H/14 reaches 88.55% and ViT-L/16 87.76% ImageNet top-1
(Table 2); trained on ImageNet-1k alone ViT trails ResNets of its size (Section 4.3, Figure 3). torchvision's
ImageNet-1k weights (DeiT's recipe) reach 81.07% with ViT-B/16.

Layout: ``state_dict()`` keys and shapes are torchvision's ``VisionTransformer`` (``class_token``,
``conv_proj``, ``encoder.pos_embedding``, ``encoder.layers.encoder_layer_N.{ln_1, self_attention, ln_2,
mlp}``, ``encoder.ln``, ``heads.head``), so its checkpoints load with ``imgcls.load_pretrained``. The patch
projection is the shared :class:`~imgcls.models.layers.PatchEmbed` and the attention the shared
:class:`~imgcls.models.layers.Attention` (fused ``qkv`` whose rows are ordered q, k, v and head by head, as in
``nn.MultiheadAttention``'s ``in_proj_weight``);
:func:`~imgcls.models.layers.checkpoint_names.use_checkpoint_names` saves and loads them under torchvision's
names (``conv_proj``, ``in_proj_weight``, ``in_proj_bias``, ``out_proj``). ``named_parameters()`` keeps the
shared blocks' names.

Resolution: ``img_size`` fixes the grid of the learned position embeddings. As in the paper (Section 3.2),
another resolution interpolates them on the 2-D patch grid (bicubic; the class token's embedding untouched):
:func:`resize_pos_embed` on a tensor, :meth:`VisionTransformer.set_image_size` to resize a model's own
embedding before fine-tuning, and a load hook that resizes a checkpoint's embedding when the model was built
with another ``img_size``. An input whose grid differs from ``img_size``'s is accepted too: the embedding is
interpolated on the fly for that forward pass. Fine-tuning replaces the head with a zero-initialised one
(:meth:`VisionTransformer.reset_classifier`), as the paper does (Section 3.2).

Departures from the paper, and why:

- ViT-Ti and ViT-S come from DeiT (Touvron et al. 2020, arXiv:2012.12877, Table 1), which keeps ViT's layout
  and only narrows it; the ViT paper's Table 1 has Base, Large and Huge. ViT-H/14 (632M parameters) is not
  registered: building and back-propagating it is beyond the CPU test budget of this project.
- Head: the paper pre-trains with an MLP head (one tanh hidden layer) and fine-tunes with a single linear
  layer; we always use the single linear layer, as torchvision's default and DeiT do.
- Position-embedding interpolation is bicubic with ``align_corners=False`` (patch centres keep their place in
  the image); the paper only says "2D interpolation" (its code zooms bilinearly), torchvision uses bicubic
  with ``align_corners=True``. Only matters when the resolution changes.
- Small-input form (not in the paper, which only fine-tunes at 224-512 px): patch size 4 at 32 px, a grid of
  8 x 8 = 64 patches (7 x 7 at 28 px, interpolating the embedding, or build with ``img_size=28``).
  ``vit_tiny_patch4_32`` / ``vit_small_patch4_32`` are Ti / S in that form for training from scratch on
  CIFAR / Fashion-MNIST; ``create_model(<any vit>, image_size<=64)`` switches a 224 px variant to it.
- Stochastic depth (``drop_path_rate``, from DeiT) is available, with the shared linear rule; the default 0.0
  is the paper's model. Dropout defaults to 0.0 as in torchvision (the paper's Table 3 lists what it trained
  with).
- Weight initialisation follows the paper's reference JAX code (google-research/vision_transformer), which
  differs in details from torchvision's; it does not affect loading. The patch embedding is LeCun normal as
  jax draws it: a normal truncated at two of its standard deviations, rescaled by 1 / 0.8796 so that the
  drawn weights have std sqrt(1 / fan_in) (without the correction they would have 0.88 of it).
"""

from __future__ import annotations

import logging
import math
from collections import OrderedDict
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import ConfigError
from imgcls.models.layers import Attention, DropPath, Mlp, PatchEmbed, attention_maps, drop_path_rates
from imgcls.models.layers.checkpoint_names import use_checkpoint_names
from imgcls.models.registry import Variant, register_family

__all__ = ["EncoderBlock", "ViTConfig", "VisionTransformer", "resize_pos_embed"]

log = logging.getLogger(__name__)

# Standard deviation of a standard normal truncated to [-2, 2] (jax.nn.initializers.variance_scaling's constant).
TRUNCATED_NORMAL_STD = 0.87962566103423978

# LayerNorm epsilon of the paper's reference code (flax's default 1e-6) and torchvision's ViT.
LN_EPS = 1e-6


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


@dataclass(frozen=True)
class ViTConfig:
    """One ViT variant: the paper's Table 1 columns plus the patch size and the training resolution.

    Attributes:
        patch_size: P, the side of a square patch.
        embed_dim: D, the token width ("hidden size").
        depth: L, the number of encoder blocks ("layers").
        num_heads: attention heads per block.
        mlp_dim: the MLP's hidden width ("MLP size", 4 D throughout the table).
        img_size: the resolution the position embeddings are laid out for (side, or (H, W)).
        dropout: dropout after the embedding sum and after every dense layer except the qkv projection.
        attention_dropout: dropout on the attention probabilities.
        drop_path_rate: stochastic depth of the last block (shared linear rule); 0 in the paper.
    """

    patch_size: int
    embed_dim: int
    depth: int
    num_heads: int
    mlp_dim: int
    img_size: int | tuple[int, int] = 224
    dropout: float = 0.0
    attention_dropout: float = 0.0
    drop_path_rate: float = 0.0


class _Size(NamedTuple):
    embed_dim: int
    depth: int
    num_heads: int
    mlp_dim: int


# Model sizes. ViT paper Table 1 (ViT-Base, ViT-Large; ViT-Huge not registered, see the module docstring) and
# DeiT (arXiv:2012.12877) Table 1 (DeiT-Ti, DeiT-S: ViT's layout, narrower).
SIZES: dict[str, _Size] = {
    "tiny": _Size(embed_dim=192, depth=12, num_heads=3, mlp_dim=768),  # DeiT Table 1
    "small": _Size(embed_dim=384, depth=12, num_heads=6, mlp_dim=1536),  # DeiT Table 1
    "base": _Size(embed_dim=768, depth=12, num_heads=12, mlp_dim=3072),  # ViT Table 1
    "large": _Size(embed_dim=1024, depth=24, num_heads=16, mlp_dim=4096),  # ViT Table 1
}


def _vit(
    size: str,
    patch_size: int,
    img_size: int,
    num_params: int,
    source: str,
    gmacs: float | None = None,
    top1: float | None = None,
    num_classes: int | None = None,
) -> Variant:
    """A row: a model size of SIZES with a patch size, laid out for ``img_size``; its parameters are counted
    at ``img_size`` and ``num_classes`` (default 1000), 3 input channels."""
    cfg = ViTConfig(patch_size=patch_size, img_size=img_size, **SIZES[size]._asdict())
    return Variant(cfg, num_params, source, gmacs, top1, input_size=img_size, num_classes=num_classes)


# Parameter count of this layout (c channels, P patch, N = HW / P^2 patches, D width, L depth, M MLP width,
# K classes), used where no published figure exists:
#   c P^2 D + D (patch projection) + D (class token) + (N + 1) D (positions)
#   + L (4 D^2 + 2 D M + 9 D + M) (per block: 2 LayerNorms, qkv, output projection, MLP)
#   + 2 D (final LayerNorm) + D K + K (head)
_CLOSED = "closed form above (no published figure)"
_TV = "torchvision {} (parameters, GFLOPs and acc@1 of its IMAGENET1K_V1 weights)"
_DEIT = "timm deit_{}_patch16_224 (parameters); top-1: DeiT paper"
VARIANTS: dict[str, Variant] = {
    # name: _vit(size, patch, img_size, parameters, source, GFLOPs, top-1[, classes counted at])
    "vit_tiny_patch16_224": _vit("tiny", 16, 224, 5_717_416, _DEIT.format("tiny"), None, 72.2),
    "vit_tiny_patch32_224": _vit("tiny", 32, 224, 6_131_560, _CLOSED),
    "vit_small_patch16_224": _vit("small", 16, 224, 22_050_664, _DEIT.format("small"), None, 79.8),
    "vit_small_patch32_224": _vit("small", 32, 224, 22_878_952, _CLOSED + "; timm: 22.88M"),
    "vit_base_patch16_224": _vit("base", 16, 224, 86_567_656, _TV.format("vit_b_16"), 17.56, 81.072),
    "vit_base_patch32_224": _vit("base", 32, 224, 88_224_232, _TV.format("vit_b_32"), 4.41, 75.912),
    "vit_large_patch16_224": _vit("large", 16, 224, 304_326_632, _TV.format("vit_l_16"), 61.55, 79.662),
    "vit_large_patch32_224": _vit("large", 32, 224, 306_535_400, _TV.format("vit_l_32"), 15.38, 76.972),
    # Small-input variants for training from scratch on 28 / 32 px images (our adaptation, no paper row).
    "vit_tiny_patch4_32": _vit("tiny", 4, 32, 5_362_762, _CLOSED, num_classes=10),
    "vit_small_patch4_32": _vit("small", 4, 32, 21_342_346, _CLOSED, num_classes=10),
}

# How a 224 px variant adapts to 28 / 32 px images: 4 px patches, embeddings laid out for 32 px.
SMALL_INPUT_KWARGS: dict[str, Any] = {"patch_size": 4, "img_size": 32}


def resize_pos_embed(
    pos_embed: torch.Tensor,
    new_grid: tuple[int, int],
    old_grid: tuple[int, int] | None = None,
    num_prefix_tokens: int = 1,
) -> torch.Tensor:
    """Interpolate position embeddings (1, prefix + h*w, D) to a new patch grid (1, prefix + H*W, D).

    The grid part is resized bicubically as a 2-D image (``align_corners=False``: patch centres stay at the
    same relative place in the image); the prefix (class token) embeddings are copied unchanged. Tokens are in
    row-major order over the grid, as :class:`~imgcls.models.layers.PatchEmbed` flattens them. ``old_grid``
    defaults to a square grid.
    """
    prefix, grid = pos_embed[:, :num_prefix_tokens], pos_embed[:, num_prefix_tokens:]
    n, dim = grid.shape[1], grid.shape[2]
    if old_grid is None:
        side = math.isqrt(n)
        if side * side != n:
            raise ConfigError(f"{n} position embeddings do not form a square grid: pass old_grid=(h, w)")
        old_grid = (side, side)
    if old_grid[0] * old_grid[1] != n:
        raise ConfigError(f"old_grid {old_grid} does not hold the {n} position embeddings given")
    new_grid = _pair(new_grid)
    grid = grid.reshape(1, old_grid[0], old_grid[1], dim).permute(0, 3, 1, 2)  # (1, h*w, D) -> (1, D, h, w)
    # Interpolate in float32 so half-precision checkpoints resize as accurately as full-precision ones.
    grid = F.interpolate(grid.float(), size=new_grid, mode="bicubic", align_corners=False).to(pos_embed.dtype)
    grid = grid.permute(0, 2, 3, 1).reshape(1, new_grid[0] * new_grid[1], dim)  # (1, D, H, W) -> (1, H*W, D)
    return torch.cat([prefix, grid], dim=1)


class EncoderBlock(nn.Module):
    """Pre-norm Transformer encoder block (Eq. 2-3) in torchvision's ``EncoderBlock`` layout."""

    def __init__(
        self,
        dim: int,
        num_heads: int,
        mlp_dim: int,
        dropout: float = 0.0,
        attention_dropout: float = 0.0,
        drop_path: float = 0.0,
    ) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=LN_EPS)
        # proj_drop is torchvision's dropout after the attention's output projection.
        self.self_attention = Attention(
            dim, num_heads, qkv_bias=True, attn_drop=attention_dropout, proj_drop=dropout
        )
        use_checkpoint_names(
            self.self_attention,
            {
                "qkv.weight": "in_proj_weight",
                "qkv.bias": "in_proj_bias",
                "proj.weight": "out_proj.weight",
                "proj.bias": "out_proj.bias",
            },
        )
        self.ln_2 = nn.LayerNorm(dim, eps=LN_EPS)
        self.mlp = Mlp(dim, mlp_dim, act_layer=nn.GELU, drop=dropout)
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, N, D) -> (B, N, D)
        x = x + self.drop_path(self.self_attention(self.ln_1(x)))
        return x + self.drop_path(self.mlp(self.ln_2(x)))


def _resize_pos_embed_on_load(
    module: Encoder, state_dict: dict[str, torch.Tensor], prefix: str, *_: Any
) -> None:
    """Load hook: a checkpoint trained at another resolution gets its position embeddings interpolated."""
    key = prefix + "pos_embedding"
    pos = state_dict.get(key)
    if pos is not None and pos.ndim == 3 and pos.shape[1] != module.pos_embedding.shape[1]:
        log.info("interpolating %s from %d to %d tokens", key, pos.shape[1], module.pos_embedding.shape[1])
        state_dict[key] = resize_pos_embed(pos, module.grid_size)


class Encoder(nn.Module):
    """Position embeddings, the encoder blocks and the final LayerNorm (torchvision's ``Encoder``)."""

    def __init__(self, grid_size: tuple[int, int], cfg: ViTConfig) -> None:
        super().__init__()
        self.grid_size = grid_size
        self.pos_embedding = nn.Parameter(torch.empty(1, 1 + grid_size[0] * grid_size[1], cfg.embed_dim))
        self.dropout = nn.Dropout(cfg.dropout)
        rates = drop_path_rates(cfg.drop_path_rate, cfg.depth)
        self.layers = nn.Sequential(
            OrderedDict(
                (
                    f"encoder_layer_{i}",
                    EncoderBlock(
                        cfg.embed_dim, cfg.num_heads, cfg.mlp_dim, cfg.dropout, cfg.attention_dropout, rate
                    ),
                )
                for i, rate in enumerate(rates)
            )
        )
        self.ln = nn.LayerNorm(cfg.embed_dim, eps=LN_EPS)
        self.register_load_state_dict_pre_hook(_resize_pos_embed_on_load)

    def forward(self, x: torch.Tensor, grid_size: tuple[int, int]) -> torch.Tensor:  # (B, 1+N, D) -> same
        pos = self.pos_embedding
        if grid_size != self.grid_size:
            pos = resize_pos_embed(pos, grid_size, self.grid_size)
        return self.ln(self.layers(self.dropout(x + pos)))


class VisionTransformer(nn.Module):
    """ViT: patch embedding, class token, position embeddings, encoder, linear head on the class token."""

    def __init__(self, cfg: ViTConfig, *, num_classes: int = 1000, in_chans: int = 3) -> None:
        super().__init__()
        self.cfg = cfg
        img_h, img_w = _pair(cfg.img_size)
        if img_h % cfg.patch_size or img_w % cfg.patch_size:
            raise ConfigError(f"img_size {cfg.img_size} is not divisible by patch_size {cfg.patch_size}")
        self.patch_size = cfg.patch_size
        self.num_features = cfg.embed_dim
        self.class_token = nn.Parameter(torch.zeros(1, 1, cfg.embed_dim))
        self.patch_embed = PatchEmbed(cfg.patch_size, in_chans, cfg.embed_dim)
        self.encoder = Encoder((img_h // cfg.patch_size, img_w // cfg.patch_size), cfg)
        self.heads = nn.Sequential(OrderedDict(head=self._new_head(num_classes)))
        use_checkpoint_names(
            self, {"patch_embed.proj.weight": "conv_proj.weight", "patch_embed.proj.bias": "conv_proj.bias"}
        )
        self.init_weights()

    def _new_head(self, num_classes: int) -> nn.Module:
        if num_classes <= 0:
            return nn.Identity()
        head = nn.Linear(self.num_features, num_classes)
        # Zero-initialised: the paper's fine-tuning head (Section 3.2) and the reference code's head init.
        nn.init.zeros_(head.weight)
        nn.init.zeros_(head.bias)
        return head

    def init_weights(self) -> None:
        """Initialise as the paper's reference JAX code (google-research/vision_transformer) does."""
        proj = self.patch_embed.proj
        # LeCun normal, flax's default kernel init, which the reference patch-embedding Conv keeps: a standard
        # normal cut at +-2, scaled so that the *truncated* draw has std sqrt(1 / fan_in) (jax's
        # variance_scaling divides by 0.8796..., the std of that truncated normal).
        std = math.sqrt(1.0 / (proj.in_channels * proj.kernel_size[0] * proj.kernel_size[1]))
        std /= TRUNCATED_NORMAL_STD
        nn.init.trunc_normal_(proj.weight, std=std, a=-2 * std, b=2 * std)
        nn.init.zeros_(proj.bias)
        nn.init.zeros_(self.class_token)  # reference code: class token starts at zero
        nn.init.normal_(self.encoder.pos_embedding, std=0.02)  # reference code: normal(0.02), "from BERT"
        for block in self.encoder.layers:
            attn = block.self_attention
            # Reference code: query, key, value and output are separate D x D dense layers, each
            # xavier_uniform with zero bias; our fused qkv weight stacks three, so each third is set alone.
            for w in attn.qkv.weight.chunk(3, dim=0):
                nn.init.xavier_uniform_(w)
            nn.init.zeros_(attn.qkv.bias)
            nn.init.xavier_uniform_(attn.proj.weight)
            nn.init.zeros_(attn.proj.bias)
            for m in block.mlp:
                if isinstance(m, nn.Linear):
                    nn.init.xavier_uniform_(m.weight)  # reference MlpBlock: xavier_uniform kernels,
                    nn.init.normal_(m.bias, std=1e-6)  # and normal(1e-6) biases
        head = self.heads.head
        if isinstance(head, nn.Linear):
            nn.init.zeros_(head.weight)  # reference code: zero-initialised head
            nn.init.zeros_(head.bias)

    @property
    def grid_size(self) -> tuple[int, int]:
        """The patch grid the position embeddings are laid out for."""
        return self.encoder.grid_size

    def set_image_size(self, img_size: int | tuple[int, int]) -> None:
        """Lay the position embeddings out for ``img_size`` by interpolation (paper Section 3.2).

        Use it to fine-tune at another resolution than the one the weights were trained at; it replaces the
        ``encoder.pos_embedding`` parameter, so build the optimizer afterwards.
        """
        h, w = _pair(img_size)
        if h % self.patch_size or w % self.patch_size:
            raise ConfigError(f"img_size {img_size} is not divisible by patch_size {self.patch_size}")
        grid = (h // self.patch_size, w // self.patch_size)
        with torch.no_grad():
            pos = resize_pos_embed(self.encoder.pos_embedding, grid, self.encoder.grid_size)
        self.encoder.pos_embedding = nn.Parameter(pos)
        self.encoder.grid_size = grid
        self.cfg = replace(self.cfg, img_size=(h, w))

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head by a zero-initialised one for ``num_classes`` (0: none), as the paper fine-tunes."""
        self.heads.head = self._new_head(num_classes)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) -> encoded tokens (B, 1 + H/P * W/P, D), the class token first."""
        grid = (x.shape[-2] // self.patch_size, x.shape[-1] // self.patch_size)
        x = self.patch_embed(x)  # (B, N, D), patches in row-major order over the grid
        x = torch.cat([self.class_token.expand(x.shape[0], -1, -1), x], dim=1)  # (B, 1+N, D)
        return self.encoder(x, grid)

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        x = x[:, 0]  # the class token's final state, (B, D)
        if pre_logits:
            return x
        return self.heads(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def attention_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Attention probabilities of every block for images ``x``: a list of L tensors (B, heads, 1+N, 1+N).

        Row ``i`` of a map is how token ``i`` (0: the class token) distributes its attention; rows sum to 1.
        """
        return attention_maps(self, x)


# Keyword overrides (patch_size=, img_size=, depth=, drop_path_rate=, ...) replace fields of the table's config.
register_family(
    "vit",
    VisionTransformer,
    VARIANTS,
    cam_layer="encoder.layers.-1.ln_1",  # the last block sees the patches; its output does not
    # The registry test runs at 32 px: a 224 px variant is built for it (2 x 2 or 1 x 1 patches).
    test_input_size=(3, 32, 32),
    test_kwargs={"img_size": 32},
    small_input_kwargs=SMALL_INPUT_KWARGS,
)

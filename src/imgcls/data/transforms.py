"""Data augmentation on whole batches: tensor operations on the batch's device, no Python loop per sample.

Every function takes a float batch ``(B, C, H, W)`` and a :class:`torch.Generator`; all per-sample randomness
is drawn from that generator as tensors, so equal generator states give equal results on any run (and a
loader that reseeds per batch can resume anywhere). The generator may live on another device than the
batch (draws are made on the generator's device, then moved).

The geometric and colour operations expect images scaled to ``[0, 1]`` (the loader augments before it
normalises); mixup and cutmix are linear, so they commute with normalisation.

Sources: random crop with padding and flips, He et al. 2016 (arXiv:1512.03385) section 4.2 (we pad by
reflection, as airbench does, so no black borders appear); random-resized crop, Szegedy et al. 2015
(arXiv:1409.4842), with torchvision's default ratio range; random erasing, Zhong et al. 2020
(arXiv:1708.04896); mixup, Zhang et al. 2018 (arXiv:1710.09412); cutmix, Yun et al. 2019 (arXiv:1905.04899).
Departures: a random-resized crop box that does not fit is shrunk to fit instead of re-drawn (torchvision
retries 10 times, which cannot be batched); an erasing box is likewise clipped to the image; colour jitter
applies brightness, contrast, saturation in that fixed order (torchvision shuffles it per call); the mixing
partner of mixup/cutmix is the batch reversed (``x.flip(0)``, as timm does), cheaper than a permutation and
as random, because the loader shuffles.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from imgcls.errors import ConfigError

__all__ = [
    "AUGMENT_PRESETS",
    "AugmentConfig",
    "augment_batch",
    "color_jitter",
    "cutmix",
    "get_augment",
    "mixup",
    "normalize",
    "random_crop",
    "random_erasing",
    "random_flip",
    "random_resized_crop",
]


def _rand(shape: Sequence[int], generator: torch.Generator, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) draws from ``generator`` (on its own device), delivered on ``device``."""
    return torch.rand(tuple(shape), generator=generator, device=generator.device).to(device)


def _randint(high: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Per-element integers uniform in ``[0, high]`` (inclusive; ``high`` an int64 tensor)."""
    u = _rand(high.shape, generator, high.device)
    return (u * (high + 1).to(u.dtype)).floor().long().clamp_(max=high)


def _beta(alpha: float, generator: torch.Generator) -> float:
    """One Beta(alpha, alpha) draw, reproducible from ``generator``.

    torch's Beta sampler takes no generator, so a 63-bit seed drawn from it seeds a NumPy generator.
    """
    seed = int(torch.randint(0, 2**63 - 1, (1,), generator=generator, device=generator.device).item())
    return float(np.random.default_rng(seed).beta(alpha, alpha))


def normalize(x: torch.Tensor, mean: Sequence[float], std: Sequence[float]) -> torch.Tensor:
    """``(x - mean) / std`` per channel as float32; a uint8 ``x`` is first scaled to ``[0, 1]`` (/ 255).

    Float input must already be in ``[0, 1]``. Returns a new tensor; one fused multiply-add per element.
    """
    mean_t = torch.as_tensor(mean, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    scale = 1.0 / torch.as_tensor(std, dtype=torch.float32, device=x.device).view(1, -1, 1, 1)
    if x.dtype == torch.uint8:
        # (x / 255 - m) / s == x * (1 / (255 s)) - m / s: one multiply and one subtract on the batch.
        return torch.addcmul(-mean_t * scale, x.float(), scale / 255.0)
    return torch.addcmul(-mean_t * scale, x.float(), scale)


def random_flip(x: torch.Tensor, generator: torch.Generator, p: float = 0.5) -> torch.Tensor:
    """Mirror each image left-right with probability ``p``."""
    flip = _rand((x.shape[0], 1, 1, 1), generator, x.device) < p
    return torch.where(flip, x.flip(3), x)


def random_crop(
    x: torch.Tensor, padding: int, generator: torch.Generator, padding_mode: str = "reflect"
) -> torch.Tensor:
    """Pad by ``padding`` per side (``"reflect"`` or ``"constant"`` zeros), crop back at a random offset.

    One gather: each sample's crop is read through a flat index grid built from its (dy, dx) offset (measured
    faster than gathering rows then columns).
    """
    if padding <= 0:
        return x
    b, c, h, w = x.shape
    if padding_mode == "reflect" and padding >= min(h, w):
        raise ConfigError(
            f"reflect padding {padding} needs images larger than it, got {h}x{w}: lower crop_padding"
        )
    padded = F.pad(x, (padding,) * 4, mode=padding_mode)  # (B, C, H+2p, W+2p)
    hp, wp = h + 2 * padding, w + 2 * padding
    offsets = _randint(torch.full((2, b), 2 * padding, device=x.device), generator)  # (2, B): dy, dx
    rows = offsets[0].view(b, 1, 1) + torch.arange(h, device=x.device).view(1, h, 1)
    cols = offsets[1].view(b, 1, 1) + torch.arange(w, device=x.device).view(1, 1, w)
    index = (rows * wp + cols).view(b, 1, h * w).expand(b, c, h * w)  # (B, H, W) -> (B, C, H*W) flat offsets
    return padded.reshape(b, c, hp * wp).gather(2, index).view(b, c, h, w)


def random_resized_crop(
    x: torch.Tensor,
    out_size: int | tuple[int, int],
    generator: torch.Generator,
    scale: tuple[float, float] = (0.35, 1.0),
    ratio: tuple[float, float] = (3 / 4, 4 / 3),
) -> torch.Tensor:
    """Crop a box of ``scale`` of the area and aspect ``ratio`` (w/h, log-uniform), resize to ``out_size``.

    Each sample's box becomes an affine map of the output grid (``affine_grid``); one bilinear ``grid_sample``
    resamples the whole batch. Boxes larger than the image are shrunk to fit.
    """
    b, _, h, w = x.shape
    out_h, out_w = (out_size, out_size) if isinstance(out_size, int) else out_size
    u = _rand((4, b), generator, x.device)
    area = (scale[0] + (scale[1] - scale[0]) * u[0]) * (h * w)  # in pixels
    log_r = math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1]
    aspect = torch.exp(log_r)
    box_w = (torch.sqrt(area * aspect) / w).clamp(max=1.0)  # as fractions of the image width / height
    box_h = (torch.sqrt(area / aspect) / h).clamp(max=1.0)
    # Box centre in affine_grid's [-1, 1] coordinates, anywhere that keeps the box inside the image.
    cx = (2 * u[2] - 1) * (1 - box_w)
    cy = (2 * u[3] - 1) * (1 - box_h)
    theta = torch.zeros(b, 2, 3, device=x.device, dtype=x.dtype)
    theta[:, 0, 0], theta[:, 0, 2] = box_w, cx
    theta[:, 1, 1], theta[:, 1, 2] = box_h, cy
    grid = F.affine_grid(theta, [b, x.shape[1], out_h, out_w], align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601 luma of RGB ``(B, 3, H, W)`` -> ``(B, 1, H, W)``."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]) if x.shape[1] == 3 else x


def color_jitter(
    x: torch.Tensor, brightness: float, contrast: float, saturation: float, generator: torch.Generator
) -> torch.Tensor:
    """Per-sample brightness, contrast and saturation factors uniform in ``[max(0, 1 - v), 1 + v]``.

    As torchvision: brightness scales the image, contrast blends with the image's mean gray, saturation with
    each pixel's gray (a no-op for one channel); the result is clipped to ``[0, 1]`` after each step.
    """
    b = x.shape[0]
    u = _rand((3, b, 1, 1, 1), generator, x.device)

    def factor(v: float, k: int) -> torch.Tensor:
        lo = max(0.0, 1.0 - v)
        return lo + (1.0 + v - lo) * u[k]

    if brightness > 0:
        x = (x * factor(brightness, 0)).clamp(0, 1)
    if contrast > 0:
        mean = _gray(x).mean(dim=(1, 2, 3), keepdim=True)
        x = torch.lerp(mean, x, factor(contrast, 1)).clamp(0, 1)
    if saturation > 0 and x.shape[1] == 3:
        x = torch.lerp(_gray(x), x, factor(saturation, 2)).clamp(0, 1)
    return x


def random_erasing(
    x: torch.Tensor,
    p: float,
    generator: torch.Generator,
    scale: tuple[float, float] = (0.02, 0.33),
    ratio: tuple[float, float] = (0.3, 3.3),
    value: float | str = 0.0,
) -> torch.Tensor:
    """With probability ``p`` per sample, fill a random box of ``scale`` of the area and aspect ``ratio``.

    ``value`` is the fill: a number, or ``"random"`` for uniform noise in ``[0, 1)`` per pixel (the paper's
    best variant). On normalised batches 0 is the mean colour; on ``[0, 1]`` batches it is black. The mask is
    built by broadcasting row/column comparisons against each sample's box.
    """
    b, c, h, w = x.shape
    u = _rand((5, b), generator, x.device)
    area = (scale[0] + (scale[1] - scale[0]) * u[0]) * (h * w)
    aspect = torch.exp(math.log(ratio[0]) + (math.log(ratio[1]) - math.log(ratio[0])) * u[1])
    eh = torch.sqrt(area * aspect).round().clamp(1, h).long()  # box height, width in pixels
    ew = torch.sqrt(area / aspect).round().clamp(1, w).long()
    top = (u[2] * (h - eh + 1).to(u.dtype)).floor().long()
    left = (u[3] * (w - ew + 1).to(u.dtype)).floor().long()
    on = u[4] < p
    rows = torch.arange(h, device=x.device).view(1, h, 1)
    cols = torch.arange(w, device=x.device).view(1, 1, w)
    # Compare rows and columns separately, (B, H, 1) and (B, 1, W), and combine once: (B, 1, H, W).
    in_rows = (rows >= top.view(b, 1, 1)) & (rows < (top + eh).view(b, 1, 1)) & on.view(b, 1, 1)
    in_cols = (cols >= left.view(b, 1, 1)) & (cols < (left + ew).view(b, 1, 1))
    mask = (in_rows & in_cols).unsqueeze(1)
    if value == "random":
        fill = _rand(x.shape, generator, x.device).to(x.dtype)
    elif isinstance(value, str):
        raise ConfigError(f"erasing value must be a number or 'random', got '{value}'")
    else:
        fill = torch.tensor(float(value), dtype=x.dtype, device=x.device)
    return torch.where(mask, fill, x)


def _check_soft(x: torch.Tensor, y_soft: torch.Tensor) -> None:
    if y_soft.dim() != 2 or y_soft.shape[0] != x.shape[0] or not y_soft.is_floating_point():
        raise ConfigError(
            f"mixup/cutmix need float soft labels (B, K), got {y_soft.dtype} {tuple(y_soft.shape)}"
        )


def mixup(
    x: torch.Tensor, y_soft: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Blend each sample with its partner (the reversed batch) by one ``lam ~ Beta(alpha, alpha)``."""
    _check_soft(x, y_soft)
    lam = _beta(alpha, generator)
    return torch.lerp(x.flip(0), x, lam), torch.lerp(y_soft.flip(0), y_soft, lam)


def cutmix(
    x: torch.Tensor, y_soft: torch.Tensor, alpha: float, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Paste one box of the partner images (the reversed batch) into every image; mix labels by true area.

    ``lam ~ Beta(alpha, alpha)``; the box has sides ``sqrt(1 - lam)`` of the image's and a uniform centre, is
    clipped to the image, and the labels are mixed by the area actually kept.
    """
    _check_soft(x, y_soft)
    _, _, h, w = x.shape
    lam = _beta(alpha, generator)
    cut = math.sqrt(1.0 - lam)
    cut_h, cut_w = int(h * cut), int(w * cut)
    centre = _rand((2,), generator, torch.device("cpu"))
    cy, cx = int(centre[0] * h), int(centre[1] * w)
    y0, y1 = max(cy - cut_h // 2, 0), min(cy + cut_h // 2, h)
    x0, x1 = max(cx - cut_w // 2, 0), min(cx + cut_w // 2, w)
    rows = torch.arange(h, device=x.device).view(h, 1)
    cols = torch.arange(w, device=x.device).view(1, w)
    box = (rows >= y0) & (rows < y1) & (cols >= x0) & (cols < x1)  # (H, W), broadcast over (B, C)
    lam_true = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)
    return torch.where(box, x.flip(0), x), torch.lerp(y_soft.flip(0), y_soft, lam_true)


@dataclass(frozen=True)
class AugmentConfig:
    """Which augmentations :func:`augment_batch` applies, in this order: random-resized crop *or* padded crop,
    flip, colour jitter, erasing, then mixup or cutmix (one of them per batch, half the time each when both
    are on). Numbers: ``color_jitter`` is the brightness = contrast = saturation strength, ``erasing`` the
    per-sample probability, ``mixup`` / ``cutmix`` the Beta alpha (0 = off). Label smoothing is the trainer's.
    """

    crop_padding: int = 0
    flip: bool = False
    rrc: bool = False
    rrc_scale: tuple[float, float] = (0.35, 1.0)
    color_jitter: float = 0.0
    erasing: float = 0.0
    mixup: float = 0.0
    cutmix: float = 0.0

    def __post_init__(self) -> None:
        if self.crop_padding < 0 or self.color_jitter < 0 or self.mixup < 0 or self.cutmix < 0:
            raise ConfigError(f"augmentation strengths must be >= 0: {self}")
        if not 0 <= self.erasing <= 1:
            raise ConfigError(f"erasing is a probability in [0, 1], got {self.erasing}")
        if not 0 < self.rrc_scale[0] <= self.rrc_scale[1] <= 1:
            raise ConfigError(f"rrc_scale must satisfy 0 < min <= max <= 1, got {self.rrc_scale}")

    @property
    def mixes(self) -> bool:
        """Whether labels come out soft ``(B, K)`` (mixup or cutmix on)."""
        return self.mixup > 0 or self.cutmix > 0


AUGMENT_PRESETS: dict[str, AugmentConfig] = {
    "none": AugmentConfig(),
    # Mirror only: what the fast Fashion-MNIST presets use; padded crops cost accuracy in runs of a few
    # epochs there (93.75 % vs 92.3 % with flip TTA after 7 epochs of quicknet_s, one seed each).
    "flip": AugmentConfig(flip=True),
    # airbench's CIFAR-10 recipe (Jordan 2024, arXiv:2404.00498): 2-pixel reflect-padded crops and flips.
    "light": AugmentConfig(crop_padding=2, flip=True),
    # + random erasing with the paper's p = 0.5 (Zhong et al. 2020, CIFAR and Fashion-MNIST experiments).
    "standard": AugmentConfig(crop_padding=2, flip=True, erasing=0.5),
    # DeiT's regularisation (Touvron et al. 2021, arXiv:2012.12877, Table 9: erasing 0.25, mixup 0.8,
    # cutmix 1.0), with colour jitter 0.3 in place of its RandAugment.
    "strong": AugmentConfig(rrc=True, flip=True, color_jitter=0.3, erasing=0.25, mixup=0.8, cutmix=1.0),
}
# Presets flip left-right: right for objects and clothes, wrong for digits (use "none" or crop-only there).


def get_augment(name: str) -> AugmentConfig:
    """The preset called ``name`` (see :data:`AUGMENT_PRESETS`)."""
    from imgcls.errors import unknown_name

    if name not in AUGMENT_PRESETS:
        raise unknown_name("augmentation preset", name, AUGMENT_PRESETS)
    return AUGMENT_PRESETS[name]


def augment_batch(
    x: torch.Tensor, y: torch.Tensor, num_classes: int, cfg: AugmentConfig, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a float batch in ``[0, 1]`` ``(B, C, H, W)`` with int64 labels ``(B,)`` as ``cfg`` says.

    Returns ``(x, y)``: ``y`` stays int64 ``(B,)`` unless mixup or cutmix is on, then it is float
    ``(B, num_classes)`` with rows summing to 1. Erasing fills with uniform noise in ``[0, 1)``.
    """
    if cfg.rrc:
        x = random_resized_crop(x, (x.shape[2], x.shape[3]), generator, scale=cfg.rrc_scale)
    elif cfg.crop_padding:
        x = random_crop(x, cfg.crop_padding, generator)
    if cfg.flip:
        x = random_flip(x, generator)
    if cfg.color_jitter:
        x = color_jitter(x, cfg.color_jitter, cfg.color_jitter, cfg.color_jitter, generator)
    if cfg.erasing:
        x = random_erasing(x, cfg.erasing, generator, value="random")
    if cfg.mixes:
        y_soft = F.one_hot(y, num_classes).to(x.dtype)
        use_cutmix = cfg.cutmix > 0 and (
            cfg.mixup == 0 or float(_rand((1,), generator, torch.device("cpu"))) < 0.5
        )
        if use_cutmix:
            x, y_soft = cutmix(x, y_soft, cfg.cutmix, generator)
        else:
            x, y_soft = mixup(x, y_soft, cfg.mixup, generator)
        return x, y_soft
    return x, y

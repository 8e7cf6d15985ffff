"""What every dataset shares: its description (:class:`DatasetInfo`), the in-memory container, the few
tensor helpers all sources use (channel conversion, antialiased resize, per-channel statistics, a seeded
stratified split), and how a dataset's class names map onto a model's outputs.

Images are kept as ``uint8`` ``(N, C, H, W)`` tensors until a batch is drawn: a quarter of the memory of
``float32``, and converting only the batch is what lets :class:`imgcls.data.loader.BatchLoader` stay fast.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from imgcls.errors import CheckpointError, ConfigError, DataError

__all__ = [
    "LUMA_601",
    "DatasetInfo",
    "InMemoryDataset",
    "adapt_info",
    "channel_stats",
    "convert_channels",
    "match_classes",
    "resize_images",
    "stratified_split",
]

# ITU-R BT.601 luma weights, the ones Pillow's ``convert("L")`` uses.
LUMA_601 = (0.299, 0.587, 0.114)

# Rows handled at once by the chunked helpers below: bounds the float temporaries to tens of MB.
_CHUNK = 4096


@dataclass(frozen=True)
class DatasetInfo:
    """Description of a dataset: its classes, image geometry and normalisation statistics.

    ``mean`` and ``std`` are per channel, for images scaled to ``[0, 1]``: a loader computes
    ``(x / 255 - mean) / std``.
    """

    name: str
    classes: tuple[str, ...]
    channels: int
    image_size: tuple[int, int]  # (H, W)
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self) -> None:
        if self.channels not in (1, 3):
            raise ConfigError(f"dataset '{self.name}': channels must be 1 or 3, got {self.channels}")
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError(
                f"dataset '{self.name}': mean and std need {self.channels} values each, "
                f"got {len(self.mean)} and {len(self.std)}"
            )
        if any(s <= 0 for s in self.std):
            raise ConfigError(f"dataset '{self.name}': std must be positive, got {self.std}")
        if len(self.classes) == 0:
            raise DataError(f"dataset '{self.name}' has no classes")

    @property
    def num_classes(self) -> int:
        return len(self.classes)


@dataclass(eq=False)
class InMemoryDataset:
    """A dataset as two contiguous tensors: ``images`` uint8 ``(N, C, H, W)`` and ``labels`` int64 ``(N,)``.

    The tensors may be shared with the per-process cache of :func:`imgcls.data.load_dataset`: treat them as
    read-only. ``skipped`` lists unreadable files left out with ``skip_bad=True`` (folders only).
    """

    images: torch.Tensor
    labels: torch.Tensor
    info: DatasetInfo
    skipped: tuple[Path, ...] = field(default=())

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DataError(
                f"dataset '{self.info.name}': images must be uint8 (N, C, H, W), got "
                f"{self.images.dtype} {tuple(self.images.shape)}"
            )
        n, c, h, w = self.images.shape
        if c != self.info.channels or (h, w) != tuple(self.info.image_size):
            raise DataError(
                f"dataset '{self.info.name}': images {(c, h, w)} do not match the info "
                f"({self.info.channels}, {self.info.image_size})"
            )
        self.labels = self.labels.to(torch.int64)
        if self.labels.shape != (n,):
            raise DataError(
                f"dataset '{self.info.name}': {n} images but labels of shape {tuple(self.labels.shape)}"
            )
        if n and (int(self.labels.min()) < 0 or int(self.labels.max()) >= self.info.num_classes):
            raise DataError(f"dataset '{self.info.name}': labels outside 0..{self.info.num_classes - 1}")
        self.images = self.images.contiguous()
        self.labels = self.labels.contiguous()

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.images[index], int(self.labels[index])

    def __repr__(self) -> str:
        return (
            f"InMemoryDataset({self.info.name!r}, n={len(self)}, classes={self.info.num_classes}, "
            f"shape={tuple(self.images.shape[1:])})"
        )


def convert_channels(images: torch.Tensor, channels: int) -> torch.Tensor:
    """Convert uint8 ``(N, C, H, W)`` images to ``channels`` (1 or 3).

    RGB -> L uses Pillow's integer form of the ITU-R 601 luma, ``(19595 R + 38470 G + 7471 B + 2^15) >> 16``,
    so a tensor conversion matches ``Image.convert("L")`` exactly; L -> RGB repeats the channel.
    """
    c = images.shape[1]
    if c == channels:
        return images
    if c == 1 and channels == 3:
        return images.expand(-1, 3, -1, -1).contiguous()
    if c == 3 and channels == 1:
        out = torch.empty((images.shape[0], 1, *images.shape[2:]), dtype=torch.uint8)
        weights = torch.tensor([19595, 38470, 7471], dtype=torch.int32).view(1, 3, 1, 1)
        # Chunks of images bound the int32 temporary.
        for i in range(0, images.shape[0], _CHUNK):
            chunk = images[i : i + _CHUNK].to(torch.int32)
            out[i : i + _CHUNK] = ((chunk * weights).sum(1, keepdim=True) + 32768).bitwise_right_shift(16)
        return out
    raise ConfigError(f"cannot convert {c}-channel images to {channels} channels: use channels=1 or 3")


def resize_images(images: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize uint8 ``(N, C, H, W)`` images to ``size`` (H, W): antialiased bilinear, rounded to uint8."""
    if tuple(images.shape[2:]) == tuple(size):
        return images
    out = torch.empty((images.shape[0], images.shape[1], *size), dtype=torch.uint8)
    for i in range(0, images.shape[0], _CHUNK):
        chunk = images[i : i + _CHUNK].float()
        chunk = F.interpolate(chunk, size=size, mode="bilinear", align_corners=False, antialias=True)
        out[i : i + _CHUNK] = chunk.round_().clamp_(0, 255).to(torch.uint8)
    return out


def channel_stats(images: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and (population) std of uint8 ``(N, C, H, W)`` images scaled to ``[0, 1]``."""
    n, c = images.shape[:2]
    if n == 0:
        raise DataError("cannot compute statistics of an empty image set")
    total = torch.zeros(c, dtype=torch.float64)
    total_sq = torch.zeros(c, dtype=torch.float64)
    for i in range(0, n, _CHUNK):
        chunk = images[i : i + _CHUNK].to(torch.float64).transpose(0, 1).reshape(c, -1)  # (C, n*H*W)
        total += chunk.sum(1)
        total_sq += chunk.square().sum(1)
    count = n * images.shape[2] * images.shape[3]
    mean = total / count
    var = (total_sq / count - mean.square()).clamp_min(0)
    # A constant channel (std 0) would divide by zero when normalising: fall back to 1 (no scaling).
    std = torch.where(var > 0, var.sqrt(), torch.full_like(var, 255.0))
    return tuple(round(float(m) / 255, 6) for m in mean), tuple(round(float(s) / 255, 6) for s in std)


def adapt_info(
    info: DatasetInfo, channels: int | None = None, image_size: tuple[int, int] | None = None
) -> DatasetInfo:
    """The info of a dataset after converting its channels and/or resizing, keeping published statistics.

    L -> RGB repeats mean and std (exact). RGB -> L takes the luma-weighted mean (exact, by linearity) and
    the luma-weighted std, an upper bound on the true std that is close for natural images, whose channels
    are strongly correlated. Resizing leaves the statistics as they are (antialiased downscaling keeps the
    mean and lowers the std slightly).
    """
    new_c = channels or info.channels
    mean, std = info.mean, info.std
    if new_c != info.channels:
        if new_c == 3:
            mean, std = mean * 3, std * 3
        else:
            mean = (round(sum(w * m for w, m in zip(LUMA_601, mean, strict=True)), 4),)
            std = (round(sum(w * s for w, s in zip(LUMA_601, std, strict=True)), 4),)
    return DatasetInfo(info.name, info.classes, new_c, tuple(image_size or info.image_size), mean, std)


def match_classes(
    model_classes: Sequence[str], data_classes: Sequence[str], dataset: str
) -> list[int] | None:
    """How a dataset's labels map onto a model's outputs, by class name.

    None when the names are the same, in the same order; the model's index of each dataset label when the
    same names come in another order; a :class:`CheckpointError` naming both lists when the names differ
    (a class count that matches is not enough: a model trained on a folder scored on Fashion-MNIST would
    read its labels in another order).
    """
    model_classes, data_classes = list(model_classes), list(data_classes)
    if model_classes == data_classes:
        return None
    if sorted(model_classes) == sorted(data_classes) and len(set(model_classes)) == len(model_classes):
        index = {name: i for i, name in enumerate(model_classes)}
        return [index[name] for name in data_classes]

    def show(names: list[str]) -> str:
        return ", ".join(names[:12]) + (f", ... ({len(names)} in all)" if len(names) > 12 else "")

    raise CheckpointError(
        f"the model's classes ({show(model_classes)}) are not those of dataset '{dataset}' ({show(data_classes)}): "
        "evaluate on a dataset with the same class names (a folder's class names are its sub-folder names)"
    )


def stratified_split(labels: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split indices into (train, held-out) so each class keeps about ``fraction`` of its items held out.

    The held-out total is ``ceil(N * fraction)`` (scikit-learn's rounding: 1797 digits at 0.2 give 1437/360),
    shared out between classes by largest remainder; every class keeps at least one training item. Both
    index arrays are sorted, so the result is a pure function of (labels, fraction, seed).
    """
    if not 0.0 <= fraction < 1.0:
        raise ConfigError(f"val_fraction must be in [0, 1), got {fraction}")
    labels = np.asarray(labels)
    n = len(labels)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    want = counts * fraction
    take = np.floor(want).astype(np.int64)
    extra = min(int(math.ceil(n * fraction - 1e-9)), n) - int(take.sum())
    if extra > 0:  # largest remainders first; ties broken by the seeded generator, not by class order
        order = np.lexsort((rng.random(len(classes)), -(want - take)))
        take[order[:extra]] += 1
    take = np.minimum(take, counts - 1)
    held: list[np.ndarray] = []
    for cls, k in zip(classes, take, strict=True):
        idx = np.flatnonzero(labels == cls)
        held.append(rng.permutation(idx)[:k])
    held_idx = np.sort(np.concatenate(held)) if held else np.zeros(0, np.int64)
    mask = np.ones(n, dtype=bool)
    mask[held_idx] = False
    return np.flatnonzero(mask), held_idx

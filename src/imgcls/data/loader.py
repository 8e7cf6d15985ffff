"""Batch loaders: float32 normalised ``(B, C, H, W)`` batches on the training device, augmented on the batch.

:class:`BatchLoader` serves an :class:`InMemoryDataset`: the uint8 images move to the device once, a
permutation tensor picks each batch, and only the batch is converted, augmented and normalised. No Python
runs per sample, which is what makes a CPU epoch of Fashion-MNIST cost little more than the model's time.
:class:`StreamingLoader` serves a :class:`FolderDataset` through worker processes that decode images, then
treats each collated batch the same way.

Randomness is a pure function of ``(seed, epoch, batch index)``: the order from ``(seed, epoch)``, each
batch's augmentation from its own generator seeded by ``(seed, epoch, batch)``. A run restarted at an epoch
sees the same batches as an uninterrupted one. ``set_epoch(e)`` pins the next pass to epoch ``e``; without it
each pass moves on to the next epoch, so two passes never repeat by accident.
"""

from __future__ import annotations

import math
import os
from collections.abc import Iterator

import numpy as np
import torch

from imgcls.data.folder import FolderDataset
from imgcls.data.info import DatasetInfo, InMemoryDataset
from imgcls.data.transforms import AugmentConfig, augment_batch, normalize
from imgcls.errors import ConfigError, DataError

__all__ = ["BatchLoader", "StreamingLoader", "make_loader"]

Batch = tuple[torch.Tensor, torch.Tensor]


def _seed(*parts: int) -> int:
    """A well-mixed 63-bit seed from integers (SeedSequence hashes them: nearby inputs do not correlate)."""
    return int(np.random.SeedSequence([p & 0xFFFFFFFF for p in parts]).generate_state(2, np.uint64)[0] >> 1)


def _check(batch_size: int) -> None:
    if not isinstance(batch_size, int) or batch_size < 1:
        raise ConfigError(f"batch_size must be a positive int, got {batch_size!r}")


class _BatchTransform:
    """uint8 batch on the device -> (augmented) normalised float32 batch; shared by both loaders."""

    def __init__(
        self,
        info: DatasetInfo,
        device: torch.device,
        augment: AugmentConfig | None,
        train: bool,
        seed: int,
        channels_last: bool,
    ):
        self.info = info
        self.device = device
        self.augment = augment if train and augment is not None and augment != AugmentConfig() else None
        self.seed = seed
        self.channels_last = channels_last
        self.generator = torch.Generator(device=device)

    def __call__(self, x: torch.Tensor, y: torch.Tensor, epoch: int, index: int) -> Batch:
        if self.augment is not None:
            self.generator.manual_seed(_seed(self.seed, epoch, index, 1))
            # Augment in [0, 1], normalise after (mixup and cutmix are linear, so they commute with it).
            xf = x.float().mul_(1.0 / 255)
            xf, y = augment_batch(xf, y, self.info.num_classes, self.augment, self.generator)
            out = normalize(xf, self.info.mean, self.info.std)
        else:
            out = normalize(x, self.info.mean, self.info.std)
        if self.channels_last:
            out = out.contiguous(memory_format=torch.channels_last)
        return out, y


class _Loader:
    """What both loaders share: their settings, the epoch counter and the per-batch transform."""

    def __init__(
        self,
        dataset: InMemoryDataset | FolderDataset,
        batch_size: int,
        train: bool,
        device: torch.device | str,
        augment: AugmentConfig | None,
        seed: int,
        drop_last: bool | None,
        channels_last: bool,
    ) -> None:
        _check(batch_size)
        self.dataset = dataset
        self.info = dataset.info
        self.batch_size = batch_size
        self.train = train
        self.device = torch.device(device)
        self.seed = seed
        self.drop_last = train if drop_last is None else drop_last
        self.epoch = 0
        self._transform = _BatchTransform(self.info, self.device, augment, train, seed, channels_last)

    def set_epoch(self, epoch: int) -> None:
        """Make the next pass epoch ``epoch``: its order and augmentation depend only on (seed, epoch)."""
        self.epoch = int(epoch)

    def set_normalization(self, info: DatasetInfo) -> None:
        """Normalise with ``info``'s mean and std from the next batch on (a checkpoint's own, to fine-tune it)."""
        self.info = info
        self._transform.info = info


class BatchLoader(_Loader):
    """Batches of an in-memory dataset, drawn and augmented as tensors on ``device``.

    ``train=True`` shuffles, augments with ``augment`` and by default drops the last partial batch (steady
    batch statistics); ``train=False`` keeps the order and every sample, and never augments. Yields
    ``(x, y)``: ``x`` float32 normalised ``(B, C, H, W)``, ``y`` int64 ``(B,)``, or float ``(B, K)`` soft
    labels when mixup/cutmix are on.
    """

    def __init__(
        self,
        dataset: InMemoryDataset,
        batch_size: int,
        *,
        train: bool,
        device: torch.device | str = "cpu",
        augment: AugmentConfig | None = None,
        seed: int = 0,
        drop_last: bool | None = None,
        channels_last: bool = False,
    ):
        super().__init__(dataset, batch_size, train, device, augment, seed, drop_last, channels_last)
        # Moved once: every batch afterwards is an index_select on the device, no host-to-device copy.
        self.images = dataset.images.to(self.device)
        self.labels = dataset.labels.to(self.device)

    def __len__(self) -> int:
        n = len(self.dataset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = None
        if self.train:
            g = torch.Generator().manual_seed(_seed(self.seed, epoch, 0))
            order = torch.randperm(len(self.dataset), generator=g).to(self.device)
        bs = self.batch_size
        for i in range(len(self)):
            if order is None:  # a slice is a view: no copy at all for evaluation batches
                x, y = self.images[i * bs : (i + 1) * bs], self.labels[i * bs : (i + 1) * bs]
            else:
                idx = order[i * bs : (i + 1) * bs]
                x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            yield self._transform(x, y, epoch, i)


class _EpochSampler(torch.utils.data.Sampler[int]):
    """Indices in order, or shuffled by a permutation that depends only on the seed it was last given."""

    def __init__(self, n: int, shuffle: bool):
        self.n = n
        self.shuffle = shuffle
        self.seed = 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.n))
        return iter(torch.randperm(self.n, generator=torch.Generator().manual_seed(self.seed)).tolist())


def _one_line(error: DataError) -> str:
    """The original message of an error re-raised from a DataLoader worker (which wraps it in a traceback)."""
    lines = [line for line in str(error).splitlines() if line.strip()]
    last = lines[-1] if lines else ""
    prefix = f"{type(error).__module__}.{type(error).__name__}: "
    return last[len(prefix) :] if last.startswith(prefix) else last


class StreamingLoader(_Loader):
    """Batches of a :class:`FolderDataset`, decoded by ``num_workers`` processes (default ``min(4, CPUs)``).

    Same contract as :class:`BatchLoader`: ``set_epoch``, ``len()``, and ``(x, y)`` batches on ``device``,
    augmented after collation.
    """

    def __init__(
        self,
        dataset: FolderDataset,
        batch_size: int,
        *,
        train: bool,
        device: torch.device | str = "cpu",
        augment: AugmentConfig | None = None,
        seed: int = 0,
        drop_last: bool | None = None,
        num_workers: int | None = None,
        channels_last: bool = False,
    ):
        super().__init__(dataset, batch_size, train, device, augment, seed, drop_last, channels_last)
        workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        self._sampler = _EpochSampler(len(dataset), shuffle=train)
        self._loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size,
            sampler=self._sampler,
            num_workers=workers,
            drop_last=self.drop_last,
            pin_memory=self.device.type == "cuda",  # page-locked buffers make the copy below asynchronous
            persistent_workers=workers > 0,  # no re-forking of workers every epoch
        )

    def __len__(self) -> int:
        return len(self._loader)

    def __iter__(self) -> Iterator[Batch]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        self._sampler.seed = _seed(self.seed, epoch, 0)
        try:
            for i, (x, y) in enumerate(self._loader):
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                yield self._transform(x, y, epoch, i)
        except DataError as e:  # from a worker: keep the one-line message, drop the worker's traceback
            raise DataError(_one_line(e)) from None


def make_loader(
    dataset: InMemoryDataset | FolderDataset,
    batch_size: int,
    *,
    train: bool,
    device: torch.device | str = "cpu",
    augment: AugmentConfig | None = None,
    seed: int = 0,
    num_workers: int | None = None,
    channels_last: bool = False,
) -> BatchLoader | StreamingLoader:
    """The loader for ``dataset``: :class:`BatchLoader` in memory, :class:`StreamingLoader` for folders."""
    if isinstance(dataset, InMemoryDataset):
        return BatchLoader(
            dataset,
            batch_size,
            train=train,
            device=device,
            augment=augment,
            seed=seed,
            channels_last=channels_last,
        )
    if isinstance(dataset, FolderDataset):
        return StreamingLoader(
            dataset,
            batch_size,
            train=train,
            device=device,
            augment=augment,
            seed=seed,
            num_workers=num_workers,
            channels_last=channels_last,
        )
    raise ConfigError(
        f"cannot make a loader for {type(dataset).__name__}: expected what load_dataset returns"
    )

"""Batch loaders: float32 normalised ``(B, C, H, W)`` batches on the training device, augmented on the batch.

:class:`BatchLoader` serves an :class:`InMemoryDataset`: the uint8 images move to the device once, a
permutation tensor picks each batch, and only the batch is converted, augmented and normalised. No Python
runs per sample, which is what makes a CPU epoch of Fashion-MNIST cost little more than the model's time.
:class:`StreamingLoader` serves a :class:`FolderDataset` through worker processes that decode images, then
treats each collated batch the same way.

A training loader can draw from a subset of the images (``set_subset``: the epochs that leave easy images
out, :mod:`imgcls.train.pruning`) and yield each batch's dataset indices with it (``with_index``).

Randomness is a pure function of ``(seed, epoch, batch index)``: the order from ``(seed, epoch)``, each
batch's augmentation from its own generator seeded by ``(seed, epoch, batch)``. A run restarted at an epoch
sees the same batches as an uninterrupted one. ``set_epoch(e)`` pins the next pass to epoch ``e``; without it
each pass moves on to the next epoch, so two passes never repeat by accident.

Distributed runs (``rank`` of ``world_size`` processes): ``batch_size`` is the global batch. In training, the
in-memory loader draws the same global batches as one process would and each rank keeps its contiguous
``batch_size / world_size`` share, augmented as part of the global batch, so the batch sequence (and, with no
per-rank state such as BatchNorm, the training) does not depend on the number of processes; a folder is
sharded by ``DistributedSampler`` (set to the epoch every pass). In evaluation each rank reads a contiguous
slice of the data, with no padding: summed over the ranks, every image counts exactly once.
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

    def __call__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        epoch: int,
        index: int,
        keep: slice | None = None,
        stream: int = 0,
    ) -> Batch:
        """The batch ``x, y`` transformed; only its rows ``keep`` (a rank's share of a global batch) returned.
        ``stream`` parts the augmentation's random numbers of batches that are not shares of one batch."""
        if self.augment is not None:
            self.generator.manual_seed(_seed(self.seed, epoch, index, 1, *([stream] if stream else [])))
            # Augment in [0, 1], normalise after (mixup and cutmix are linear, so they commute with it).
            xf = x.float().mul_(1.0 / 255)
            xf, y = augment_batch(xf, y, self.info.num_classes, self.augment, self.generator)
            if keep is not None:  # augmented as the whole global batch: the random draws of one process
                xf, y = xf[keep], y[keep]
            out = normalize(xf, self.info.mean, self.info.std)
        else:
            if keep is not None:  # normalising is per pixel: the share first, no work on the others' rows
                x, y = x[keep], y[keep]
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
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        _check(batch_size)
        if not 0 <= rank < world_size:
            raise ConfigError(
                f"rank {rank} is not one of the {world_size} processes: expected 0 <= rank < world_size"
            )
        if train and batch_size % world_size:
            raise ConfigError(
                f"the batch size {batch_size} does not split over {world_size} processes: pass a --batch-size "
                f"divisible by {world_size} (it is the global batch; each process takes batch / {world_size})"
            )
        self.rank, self.world_size = rank, world_size
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
    labels when mixup/cutmix are on; with ``with_index`` set, training batches also carry the dataset indices
    of their images, ``(x, y, index)``.
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
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(
            dataset, batch_size, train, device, augment, seed, drop_last, channels_last, rank, world_size
        )
        # Evaluation: this rank's contiguous slice [lo, hi) of the dataset (all of it in one process).
        n = len(dataset)
        self._lo, self._hi = (0, n) if train else (rank * n // world_size, (rank + 1) * n // world_size)
        # Moved once: every batch afterwards is an index_select on the device, no host-to-device copy.
        self.images = dataset.images.to(self.device)
        self.labels = dataset.labels.to(self.device)
        # Training on part of the data (imgcls.train.pruning): the indices an epoch draws from; None: all.
        self.subset: torch.Tensor | None = None
        # yield (x, y, index): the dataset indices of this process's images of the batch
        self.with_index = False

    def set_subset(self, indices: torch.Tensor | None) -> None:
        """Draw the next passes' batches from the images ``indices`` only (None: from all of them)."""
        if not self.train:
            raise ConfigError("only a training loader draws from a subset")
        self.subset = None if indices is None else indices.to(torch.long)

    def __len__(self) -> int:
        """Batches per pass: in training the global batches (the same on every rank), in evaluation this
        rank's."""
        n = self._hi - self._lo if self.subset is None else len(self.subset)
        return n // self.batch_size if self.drop_last else math.ceil(n / self.batch_size)

    def __iter__(self) -> Iterator[Batch]:
        epoch, self.epoch = self.epoch, self.epoch + 1
        order = None
        if self.train:
            g = torch.Generator().manual_seed(_seed(self.seed, epoch, 0))
            if self.subset is None:
                order = torch.randperm(len(self.dataset), generator=g).to(self.device)
            else:
                order = self.subset[torch.randperm(len(self.subset), generator=g)].to(self.device)
        bs, lo = self.batch_size, self._lo
        for i in range(len(self)):
            if order is None:  # a slice is a view: no copy at all for evaluation batches
                j0, j1 = lo + i * bs, min(lo + (i + 1) * bs, self._hi)
                yield self._transform(self.images[j0:j1], self.labels[j0:j1], epoch, i)
                continue
            idx = order[i * bs : (i + 1) * bs]  # global batch i, as one process draws it
            keep = None
            if self.world_size > 1:
                share = len(idx) // self.world_size  # the partial last batch (no drop_last) splits as it can
                keep = slice(
                    self.rank * share, (self.rank + 1) * share if self.rank < self.world_size - 1 else None
                )
                if self._transform.augment is None:
                    idx, keep = idx[keep], None  # nothing random: read only this rank's images
            x, y = self.images.index_select(0, idx), self.labels.index_select(0, idx)
            if self.with_index:
                yield (*self._transform(x, y, epoch, i, keep), idx if keep is None else idx[keep])
            else:
                yield self._transform(x, y, epoch, i, keep)


class _EpochSampler(torch.utils.data.Sampler[int]):
    """Indices ``lo`` to ``hi`` in order, or all ``n`` shuffled by a permutation that depends only on the seed
    it was last given."""

    def __init__(self, n: int, shuffle: bool, lo: int = 0, hi: int | None = None):
        self.n = n
        self.shuffle = shuffle
        self.lo, self.hi = lo, n if hi is None else hi
        self.seed = 0

    def __len__(self) -> int:
        return self.n if self.shuffle else self.hi - self.lo

    def __iter__(self) -> Iterator[int]:
        if not self.shuffle:
            return iter(range(self.lo, self.hi))
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
        rank: int = 0,
        world_size: int = 1,
    ):
        super().__init__(
            dataset, batch_size, train, device, augment, seed, drop_last, channels_last, rank, world_size
        )
        workers = min(4, os.cpu_count() or 1) if num_workers is None else num_workers
        n = len(dataset)
        self._sampler: torch.utils.data.Sampler[int]
        if train and world_size > 1:
            # Each rank its share of the epoch's permutation (seeded by seed + epoch: set_epoch every pass).
            self._sampler = torch.utils.data.DistributedSampler(
                dataset,
                num_replicas=world_size,
                rank=rank,
                shuffle=True,
                seed=seed & 0x7FFFFFFF,
                drop_last=True,
            )
        else:  # one process, or evaluation: this rank's contiguous slice, never padded
            self._sampler = _EpochSampler(n, train, rank * n // world_size, (rank + 1) * n // world_size)
        self._loader = torch.utils.data.DataLoader(
            dataset,
            batch_size=batch_size // world_size if train else batch_size,
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
        if isinstance(self._sampler, torch.utils.data.DistributedSampler):
            self._sampler.set_epoch(epoch)
        else:
            self._sampler.seed = _seed(self.seed, epoch, 0)  # type: ignore[attr-defined]
        try:
            for i, (x, y) in enumerate(self._loader):
                x = x.to(self.device, non_blocking=True)
                y = y.to(self.device, non_blocking=True)
                yield self._transform(x, y, epoch, i, stream=self.rank)
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
    rank: int = 0,
    world_size: int = 1,
) -> BatchLoader | StreamingLoader:
    """The loader for ``dataset``: :class:`BatchLoader` in memory, :class:`StreamingLoader` for folders.

    ``rank`` and ``world_size`` shard it for a distributed run (see the module docstring); ``batch_size`` is
    the global batch in training, each rank's in evaluation."""
    if isinstance(dataset, InMemoryDataset):
        return BatchLoader(
            dataset,
            batch_size,
            train=train,
            device=device,
            augment=augment,
            seed=seed,
            channels_last=channels_last,
            rank=rank,
            world_size=world_size,
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
            rank=rank,
            world_size=world_size,
        )
    raise ConfigError(
        f"cannot make a loader for {type(dataset).__name__}: expected what load_dataset returns"
    )

"""Datasets, batched augmentation and loaders.

``load_dataset(name, split)`` gives an :class:`InMemoryDataset` (uint8 images and int64 labels as tensors)
or, for large image folders, a streaming :class:`FolderDataset`; ``make_loader`` wraps either into batches
of normalised float32 tensors, augmented on the batch as an :class:`AugmentConfig` says. See
:mod:`imgcls.data.datasets` for the built-in datasets and where their files are looked for.
"""

from imgcls.data.datasets import (
    BUILTINS,
    clear_cache,
    download_dataset,
    list_datasets,
    load_dataset,
    subset,
)
from imgcls.data.folder import FolderDataset
from imgcls.data.idx import read_idx
from imgcls.data.info import DatasetInfo, InMemoryDataset
from imgcls.data.loader import BatchLoader, StreamingLoader, make_loader
from imgcls.data.transforms import AUGMENT_PRESETS, AugmentConfig, augment_batch, get_augment, normalize

__all__ = [
    "AUGMENT_PRESETS",
    "BUILTINS",
    "AugmentConfig",
    "BatchLoader",
    "DatasetInfo",
    "FolderDataset",
    "InMemoryDataset",
    "StreamingLoader",
    "augment_batch",
    "clear_cache",
    "download_dataset",
    "get_augment",
    "list_datasets",
    "load_dataset",
    "make_loader",
    "normalize",
    "read_idx",
    "subset",
]

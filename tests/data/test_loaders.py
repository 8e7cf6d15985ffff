"""Loaders: batch counts, drop_last, normalisation, determinism per (seed, epoch), streaming == in memory."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgcls.data import (
    AUGMENT_PRESETS,
    BatchLoader,
    DatasetInfo,
    InMemoryDataset,
    StreamingLoader,
    load_dataset,
    make_loader,
)
from imgcls.errors import ConfigError, DataError

from .data_files import save_image


def tiny(n: int = 10, c: int = 1, k: int = 3) -> InMemoryDataset:
    info = DatasetInfo("tiny", tuple("abc")[:k], c, (6, 6), (0.5,) * c, (0.25,) * c)
    images = torch.arange(n * c * 36, dtype=torch.int64).remainder(256).to(torch.uint8).view(n, c, 6, 6)
    return InMemoryDataset(images, torch.arange(n) % k, info)


def collect(loader) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return list(loader)


def test_batch_counts_and_drop_last() -> None:
    ds = tiny(10)
    assert len(BatchLoader(ds, 4, train=True)) == 2  # drop_last defaults to train
    assert len(BatchLoader(ds, 4, train=False)) == 3
    assert len(BatchLoader(ds, 4, train=True, drop_last=False)) == 3
    sizes = [len(y) for _, y in BatchLoader(ds, 4, train=False)]
    assert sizes == [4, 4, 2] and [len(y) for _, y in BatchLoader(ds, 4, train=True)] == [4, 4]
    with pytest.raises(ConfigError):
        BatchLoader(ds, 0, train=True)


def test_a_subset_is_drawn_once_each_with_the_dataset_indices_of_the_batch() -> None:
    ds = tiny(12)
    loader = BatchLoader(ds, 3, train=True, seed=5)
    loader.with_index = True
    chosen = torch.tensor([1, 2, 4, 7, 8, 10])
    loader.set_subset(chosen)
    assert len(loader) == 2
    batches = list(loader)
    index = torch.cat([i for _, _, i in batches])
    assert sorted(index.tolist()) == chosen.tolist()  # each chosen image once, no other
    for x, y, i in batches:  # the index names the images the batch holds
        assert torch.equal(y, ds.labels[i])
        torch.testing.assert_close(x, (ds.images[i].float() / 255 - 0.5) / 0.25)
    loader.set_subset(None)
    assert len(loader) == 4 and sorted(torch.cat([i for _, _, i in loader]).tolist()) == list(range(12))
    with pytest.raises(ConfigError, match="training loader"):
        BatchLoader(ds, 3, train=False).set_subset(chosen)


def test_eval_batches_are_in_order_and_normalised() -> None:
    ds = tiny(10, c=3)
    x = torch.cat([xb for xb, _ in BatchLoader(ds, 4, train=False, augment=AUGMENT_PRESETS["strong"])])
    want = (ds.images.float() / 255 - 0.5) / 0.25  # augment is ignored when not training
    torch.testing.assert_close(x, want)
    assert x.dtype == torch.float32
    y = torch.cat([yb for _, yb in BatchLoader(ds, 4, train=False)])
    assert torch.equal(y, ds.labels)


def test_shuffle_and_augmentation_are_a_function_of_seed_and_epoch() -> None:
    ds = tiny(12)
    aug = AUGMENT_PRESETS["standard"]
    a = BatchLoader(ds, 4, train=True, augment=aug, seed=7)
    b = BatchLoader(ds, 4, train=True, augment=aug, seed=7)
    epoch0, epoch1 = collect(a), collect(a)  # without set_epoch a pass moves on to the next epoch
    b.set_epoch(1)  # a restarted run resumes at epoch 1
    for (xa, ya), (xb, yb) in zip(epoch1, collect(b), strict=True):
        assert torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not all(torch.equal(p[1], q[1]) for p, q in zip(epoch0, epoch1, strict=True))
    a.set_epoch(0)
    assert all(torch.equal(p[0], q[0]) for p, q in zip(epoch0, collect(a), strict=True))
    other_seed = collect(BatchLoader(ds, 4, train=True, augment=aug, seed=8))
    assert not all(torch.equal(p[1], q[1]) for p, q in zip(epoch0, other_seed, strict=True))
    labels = torch.cat([y for _, y in BatchLoader(ds, 4, train=True, seed=7)])
    assert sorted(labels.tolist()) == sorted(ds.labels.tolist())  # a permutation, each sample once


def test_mixing_gives_soft_labels_and_channels_last() -> None:
    ds = tiny(8, c=3)
    loader = make_loader(ds, 4, train=True, augment=AUGMENT_PRESETS["strong"], channels_last=True)
    assert isinstance(loader, BatchLoader)
    for x, y in loader:
        assert x.shape == (4, 3, 6, 6) and x.is_contiguous(memory_format=torch.channels_last)
        assert y.shape == (4, 3) and y.dtype == torch.float32
        torch.testing.assert_close(y.sum(1), torch.ones(4))


def test_make_loader_rejects_other_datasets() -> None:
    with pytest.raises(ConfigError, match="cannot make a loader"):
        make_loader([1, 2, 3], 2, train=True)  # type: ignore[arg-type]


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    for cls in ("a", "b"):
        for i in range(5):
            save_image(
                tmp_path / "f" / cls / f"{i}.png", "RGB", size=(6, 6), seed=i + (10 if cls == "b" else 0)
            )
    return tmp_path / "f"


def test_streaming_loader_matches_the_in_memory_loader(folder: Path) -> None:
    name = f"folder:{folder}"
    mem = load_dataset(name, test_fraction=0)
    stream = load_dataset(name, test_fraction=0, in_memory=False)
    aug = AUGMENT_PRESETS["light"]
    bl = make_loader(mem, 3, train=True, augment=aug, seed=5)
    sl = make_loader(stream, 3, train=True, augment=aug, seed=5, num_workers=0)
    assert isinstance(sl, StreamingLoader) and len(sl) == len(bl) == 3
    for epoch in (0, 2):
        bl.set_epoch(epoch)
        sl.set_epoch(epoch)
        for (xb, yb), (xs, ys) in zip(bl, sl, strict=True):
            assert torch.equal(xb, xs) and torch.equal(yb, ys)


def test_streaming_loader_with_a_worker_reports_bad_files_in_one_line(folder: Path) -> None:
    stream = load_dataset(f"folder:{folder}", test_fraction=0, in_memory=False)
    bad = folder / "a" / "3.png"
    bad.write_bytes(b"not a png at all")
    loader = StreamingLoader(stream, 5, train=False, num_workers=1)
    with pytest.raises(DataError) as err:
        collect(loader)
    assert str(err.value).startswith(f"cannot read image '{bad}'") and "\n" not in str(err.value)
    stream.skip_bad = True  # the next readable image stands in for the bad one
    x = torch.cat([xb for xb, _ in StreamingLoader(stream, 5, train=False, num_workers=0)])
    assert x.shape == (10, 3, 6, 6)

"""Loaders of a distributed run: each rank's share of the global batch, evaluation slices without padding."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgcls.data import AUGMENT_PRESETS, BatchLoader, DatasetInfo, InMemoryDataset, load_dataset, make_loader
from imgcls.errors import ConfigError

from .data_files import save_image


def tiny(n: int, c: int = 1) -> InMemoryDataset:
    info = DatasetInfo("tiny", tuple("abc"), c, (6, 6), (0.5,) * c, (0.25,) * c)
    images = torch.randint(
        0, 256, (n, c, 6, 6), generator=torch.Generator().manual_seed(n), dtype=torch.uint8
    )
    return InMemoryDataset(images, torch.arange(n) % 3, info)


@pytest.mark.parametrize("augment", ["none", "standard"])
@pytest.mark.parametrize("world", [2, 3])
def test_the_shares_of_the_ranks_make_the_global_batch(augment: str, world: int) -> None:
    ds = tiny(40, c=3)
    aug = AUGMENT_PRESETS[augment]
    one = BatchLoader(ds, 12, train=True, augment=aug, seed=3)
    ranks = [
        BatchLoader(ds, 12, train=True, augment=aug, seed=3, rank=r, world_size=world) for r in range(world)
    ]
    assert all(len(r) == len(one) == 3 for r in ranks)  # global batches: the same count on every rank
    for epoch in (0, 1):
        one.set_epoch(epoch)
        for r in ranks:
            r.set_epoch(epoch)
        for (x, y), *shares in zip(one, *ranks, strict=True):
            assert all(len(s[1]) == 12 // world for s in shares)
            torch.testing.assert_close(torch.cat([s[0] for s in shares]), x)  # augmented as one batch
            assert torch.equal(torch.cat([s[1] for s in shares]), y)


def test_a_global_batch_that_does_not_split_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"batch size 10 does not split over 3 processes.*divisible by 3"):
        BatchLoader(tiny(40), 10, train=True, rank=0, world_size=3)
    with pytest.raises(ConfigError, match="rank 2 is not one of the 2 processes"):
        BatchLoader(tiny(40), 10, train=True, rank=2, world_size=2)


def test_evaluation_counts_every_image_once() -> None:
    ds = tiny(1001)
    shares = [BatchLoader(ds, 100, train=False, rank=r, world_size=2) for r in range(2)]
    ys = [torch.cat([y for _, y in s]) for s in shares]
    assert [len(y) for y in ys] == [500, 501]  # no padded duplicate
    xs = torch.cat([x for s in shares for x, _ in s])
    torch.testing.assert_close(xs, torch.cat([x for x, _ in BatchLoader(ds, 100, train=False)]))


def test_a_folder_is_sharded_by_distributed_sampler(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        for i in range(7):
            save_image(
                tmp_path / "f" / cls / f"{i}.png", "RGB", size=(6, 6), seed=i + (10 if cls == "b" else 0)
            )
    ds = load_dataset(f"folder:{tmp_path / 'f'}", test_fraction=0, in_memory=False)
    n = len(ds)  # 14
    kw = dict(train=True, seed=1, num_workers=0)
    ranks = [make_loader(ds, 4, rank=r, world_size=2, **kw) for r in range(2)]
    for epoch in (0, 1):
        seen = []
        for loader in ranks:
            loader.set_epoch(epoch)
            seen.append([int(i) for i in loader._sampler])  # type: ignore[union-attr]
            assert [len(y) for _, y in loader] == [2, 2, 2]  # 7 images a rank, batches of 4 / 2
        assert not set(seen[0]) & set(seen[1]) and len(seen[0] + seen[1]) == n
    evals = [make_loader(ds, 4, train=False, rank=r, world_size=2, num_workers=0) for r in range(2)]
    assert sum(len(y) for e in evals for _, y in e) == n

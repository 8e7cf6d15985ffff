"""InfoBatch's pruning of easy images (imgcls.train.pruning) and the trainer's use of it (--prune-easy)."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
from PIL import Image

from imgcls.train import TrainConfig, train
from imgcls.train.pruning import EasyPruner
from tests.conftest import pattern_images
from tests.train.test_trainer import _cfg as trainer_cfg


def _pruner(n: int = 100, prob: float = 0.5, epochs: int = 5, seed: int = 0) -> EasyPruner:
    p = EasyPruner(n, prob, epochs, seed)
    p.record(torch.arange(n), torch.arange(n, dtype=torch.float32))  # image i scored i: mean 49.5
    p.end_epoch()
    return p


def test_the_first_and_the_last_epoch_train_on_every_image() -> None:
    p = _pruner(epochs=5)
    assert p.plan(0) is None and p.plan(4) is None
    assert torch.equal(p.weights, torch.ones(100))
    assert p.plan(1) is not None
    assert _pruner(prob=0.0).plan(2) is None


def test_only_images_below_the_mean_are_left_out_and_their_kept_ones_weigh_the_rest_up() -> None:
    p = _pruner(prob=0.5)
    kept = p.plan(2)
    assert kept is not None and torch.equal(kept, kept.sort().values)
    dropped = sorted(set(range(100)) - set(kept.tolist()))
    assert dropped and max(dropped) < 50  # the easy half: scores 0..49 are below the mean 49.5
    assert 10 <= len(dropped) <= 40  # about half of the 50 easy images
    easy_kept = [i for i in kept.tolist() if i < 50]
    assert torch.equal(p.weights[easy_kept], torch.full((len(easy_kept),), 2.0))
    assert torch.equal(p.weights[50:], torch.ones(50))


def test_every_easy_image_weighs_one_in_expectation() -> None:
    """kept x weight averages to 1 over the epochs' draws: the expected gradient is the whole data's."""
    p = _pruner(prob=0.5, epochs=2_000)
    total = torch.zeros(100)
    for epoch in range(1, 1_999):
        kept = p.plan(epoch)
        assert kept is not None
        total[kept] += p.weights[kept]
    mean = total / 1_998
    assert torch.allclose(mean[:50], torch.ones(50), atol=0.12)  # 5 standard errors of 2,000 coin flips
    assert torch.equal(mean[50:], torch.ones(50))


def test_images_not_trained_on_yet_are_never_left_out() -> None:
    p = EasyPruner(10, 0.9, 5, seed=0)
    assert p.plan(1) is None  # no scores at all: every image
    p.record(torch.arange(5), torch.zeros(5))  # images 5..9 not seen (a dropped partial batch)
    p.end_epoch()
    kept = p.plan(1)
    assert kept is not None and set(range(5, 10)) <= set(kept.tolist())


def test_the_plan_is_a_function_of_seed_epoch_and_scores_and_survives_a_state_round_trip() -> None:
    a = _pruner(seed=3)
    b = EasyPruner(100, 0.5, 5, seed=3)
    b.load_state_dict(a.state_dict())
    assert torch.equal(a.plan(2), b.plan(2)) and torch.equal(a.weights, b.weights)
    assert not torch.equal(a.plan(2), a.plan(3))  # each epoch its own draw
    assert not torch.equal(a.plan(2), _pruner(seed=4).plan(2))
    with pytest.raises(ValueError, match="shape"):
        b.load_state_dict({"scores": torch.zeros(7)})


def test_scores_recorded_by_two_processes_merge_through_the_sum() -> None:
    ranks = [EasyPruner(6, 0.5, 4, seed=0) for _ in range(2)]
    ranks[0].record(torch.tensor([0, 1, 2]), torch.tensor([1.0, 2.0, 3.0]))
    ranks[1].record(torch.tensor([3, 4, 5]), torch.tensor([4.0, 5.0, 6.0]))
    parts = [torch.stack([r._fresh, r._count]) for r in ranks]
    for r in ranks:
        r.end_epoch(lambda t: parts[0] + parts[1])  # what all_reduce_sum returns on each rank
    for r in ranks:
        assert torch.equal(r.scores, torch.arange(1.0, 7.0))


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    return trainer_cfg(
        data, out, **({"epochs": 4, "batch_size": 16, "augment": "flip", "prune_easy": 0.5} | kw)
    )


def test_a_pruned_run_trains_fewer_images_in_its_middle_epochs_and_ends_its_schedule(
    tiny_fmnist: Path, tmp_path: Path
) -> None:
    r = train(_cfg(tiny_fmnist, tmp_path))  # 144 training images: 9 batches of 16
    images = [row["images"] for row in r.history]
    assert images[0] == images[-1] == 144
    assert all(n < 144 for n in images[1:-1])
    assert r.steps == sum(images) // 16  # every image of the plan trained, in whole batches
    assert r.history[-1]["lr"] == 0.0  # the schedule reached its end at the run's last step
    full = train(_cfg(tiny_fmnist, tmp_path, name="full", prune_easy=0.0))
    assert [row["images"] for row in full.history] == [144] * 4 and full.steps == 36


def test_a_fractional_last_epoch_is_cut_where_the_plan_says(tiny_fmnist: Path, tmp_path: Path) -> None:
    r = train(_cfg(tiny_fmnist, tmp_path, epochs=3.5))  # the last epoch: 5 of its 9 batches
    assert r.history[-1]["images"] == 5 * 16 and r.history[-1]["lr"] == 0.0
    assert r.steps == sum(row["images"] for row in r.history) // 16


def test_a_folder_that_streams_from_disk_trains_on_every_image_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import imgcls.data.folder as folder_mod

    root = tmp_path / "data"
    x, y = pattern_images(120, 3, 8, 1, 0)
    for i, (img, label) in enumerate(zip(x, y)):
        (root / "abc"[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(root / "abc"[label] / f"{i}.png")
    monkeypatch.setattr(folder_mod, "IN_MEMORY_BYTES", 0)  # any folder streams
    cfg = TrainConfig(
        dataset=f"folder:{root}",
        out_dir=str(tmp_path / "runs"),
        epochs=3,
        batch_size=16,
        lr=0.05,
        progress=False,
        amp="off",
        prune_easy=0.5,
        threads=1,
    )
    with caplog.at_level(logging.WARNING, logger="imgcls"):
        r = train(cfg)
    assert "--prune-easy needs the training images in memory" in caplog.text
    assert len({row["images"] for row in r.history}) == 1  # every epoch the same, whole batches of all

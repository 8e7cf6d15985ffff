"""train_subset / test_subset: a seeded, stratified share of a split (learning curves, quick experiments)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from imgcls.data import load_dataset, subset
from imgcls.errors import ConfigError
from imgcls.train import TrainConfig, train


def test_subset_is_stratified_seeded_and_nested_in_the_split() -> None:
    whole = load_dataset("digits", "train")
    part = subset(whole, 0.1, seed=0)
    assert len(part) == -(-len(whole) // 10)  # ceil(N x share)
    counts, whole_counts = (
        torch.bincount(part.labels, minlength=10),
        torch.bincount(whole.labels, minlength=10),
    )
    assert ((counts - whole_counts * 0.1).abs() <= 1).all()  # each class keeps its share
    assert torch.equal(subset(whole, 0.1, seed=0).images, part.images)  # a pure function of the seed
    assert not torch.equal(subset(whole, 0.1, seed=1).labels, part.labels)
    assert subset(whole, 1.0) is whole


def test_train_and_test_subsets_shrink_what_the_run_sees(tmp_path: Path) -> None:
    cfg = TrainConfig(
        model="linear_softmax", dataset="digits", epochs=1, batch_size=16, val_fraction=0.0, train_subset=0.25,
        test_subset=0.5, out_dir=str(tmp_path), name="r", progress=False, tta_flip=False,
    )  # fmt: skip
    result = train(cfg)
    assert result.history[0]["images"] == 16 * (-(-1437 // 4) // 16)  # 360 images: 22 full batches
    assert result.eval is not None and result.eval.n == 180


@pytest.mark.parametrize("share", [0.0, 1.5, -0.1])
def test_a_share_outside_0_1_is_refused(share: float, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="train_subset"):
        train(TrainConfig(dataset="digits", train_subset=share, out_dir=str(tmp_path)))


def test_a_baseline_sees_the_images_a_training_run_with_the_same_subset_sees() -> None:
    from imgcls.classic.baseline import run_baseline

    result = run_baseline("knn", dataset="digits", train_subset=0.25, test_subset=0.5, seed=3, progress=False)
    assert (result.n_train, result.n_test) == (360, 180)
    whole = load_dataset("digits", "train")
    assert result.n_train == len(subset(whole, 0.25, seed=3))
    small = run_baseline("knn", dataset="digits", image_size=16, train_subset=0.25, progress=False)
    assert small.num_features == 16 * 16

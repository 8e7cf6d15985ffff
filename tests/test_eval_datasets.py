"""Evaluating a run on other data: every image of a folder of its own, and classes matched by name."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from imgcls.data import InMemoryDataset, load_dataset
from imgcls.data.info import match_classes
from imgcls.errors import CheckpointError
from imgcls.evaluate import _relabel, default_split, evaluate_run
from imgcls.train import TrainConfig, train

from .conftest import pattern_images


def _folder(root: Path, n: int, seed: int, classes: tuple[str, ...] = ("circle", "square", "star")) -> Path:
    x, y = pattern_images(n, 3, 16, 1, seed)
    for i, (img, label) in enumerate(zip(x, y)):
        d = root / classes[label]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("evalrun")
    data = _folder(tmp / "train_folder", 90, 0)
    cfg = TrainConfig(
        dataset=f"folder:{data}", out_dir=str(tmp / "runs"), name="r", epochs=2, batch_size=16, lr=0.05,
        progress=False, amp="off", augment="none", tta_flip=False, fallback_dataset=None,
    )  # fmt: skip
    return train(cfg).run_dir


def test_a_separate_test_folder_is_scored_whole(folder_run: Path, tmp_path: Path) -> None:
    other = _folder(tmp_path / "test_folder", 100, 7)
    result, _ = evaluate_run(folder_run, dataset=f"folder:{other}", device="cpu")
    assert result.n == 100 and result.source["split"] == "all"  # not the 10% a training folder holds out
    own, _ = evaluate_run(folder_run, device="cpu")  # the run's own folder: its held-out test split
    assert own.source["split"] == "test" and own.n == 9


def test_default_split_follows_the_folder() -> None:
    assert default_split("folder:/data/a", "folder:/data/a") == "test"
    assert default_split("folder:/data/b", "folder:/data/a") == "all"
    assert default_split("fashion-mnist", "folder:/data/a") == "test"


def test_other_class_names_are_refused_with_both_lists(folder_run: Path, tmp_path: Path) -> None:
    other = _folder(tmp_path / "renamed", 30, 3, classes=("cat", "dog", "fox"))
    with pytest.raises(CheckpointError) as err:
        evaluate_run(folder_run, dataset=f"folder:{other}", device="cpu")
    message = str(err.value)
    assert "circle, square, star" in message and "cat, dog, fox" in message and "\n" not in message


def test_the_same_names_in_another_order_are_remapped() -> None:
    assert match_classes(["a", "b", "c"], ["a", "b", "c"], "d") is None
    remap = match_classes(["a", "b", "c"], ["c", "a", "b"], "d")
    assert remap == [2, 0, 1]  # the dataset's label 0 ("c") is the model's output 2
    ds = load_dataset("digits", "test")
    small = InMemoryDataset(ds.images[:4], torch.tensor([0, 1, 2, 0]), ds.info)
    assert _relabel(small, remap).labels.tolist() == [2, 0, 1, 2]
    with pytest.raises(CheckpointError, match="not those of dataset 'd'"):
        match_classes(["a", "b"], ["a", "x"], "d")

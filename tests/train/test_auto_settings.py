"""Defaults that adapt to the data: plain training on a small folder learns, where batches of 512 could not."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from imgcls.errors import ConfigError
from imgcls.train import TrainConfig, train

from ..conftest import pattern_images


@pytest.fixture(scope="module")
def small_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 noisy 8x8 images of 4 classes: 194 to train on once test (24) and validation (22) are held out."""
    root = tmp_path_factory.mktemp("small") / "data"
    x, y = pattern_images(240, 4, 8, 1, 0)
    x = np.clip(x.astype(int) + np.random.default_rng(0).integers(0, 190, x.shape), 0, 255).astype(np.uint8)
    for i, (img, label) in enumerate(zip(x, y)):
        (root / "abcd"[label]).mkdir(parents=True, exist_ok=True)
        Image.fromarray(img[0]).save(root / "abcd"[label] / f"{i}.png")
    return root


@pytest.mark.slow
def test_plain_training_on_a_small_folder_learns(
    small_folder: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    cfg = TrainConfig(dataset=f"folder:{small_folder}", out_dir=str(tmp_path), progress=False, amp="off")
    with caplog.at_level(logging.INFO, logger="imgcls"):
        r = train(cfg)  # nothing set but the data: batch, lr and epochs follow its size
    saved = yaml.safe_load((r.run_dir / "config.yaml").read_text())
    assert (saved["batch_size"], saved["epochs"]) == (16, 30) and saved["lr"] == pytest.approx(0.4 / 32**0.5)
    assert saved["augment"] == "flip" and saved["optimizer"] == "sgd"  # 8x8: no crops; batch 16: no Muon
    assert (
        "auto: batch 16, lr 0.0707107, optimizer sgd, epochs 30, augment flip (for 194 training"
        in caplog.text
    )
    assert r.test_acc >= 0.9 and r.val_acc >= 0.9  # chance is 0.25
    # What training on this folder used to mean: the fast preset's batches of 512, none of them full.
    with pytest.raises(ConfigError, match="0 batches of 512"):
        train(TrainConfig(dataset=f"folder:{small_folder}", out_dir=str(tmp_path), batch_size=512, lr=0.4))

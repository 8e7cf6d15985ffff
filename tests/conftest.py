"""Shared fixtures: tiny, learnable datasets written as real files (IDX, CIFAR pickles, image folders)."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.data.data_files import write_idx_file

# Tests run on 2 shared cores: one thread avoids oversubscription when pytest runs beside other work.
torch.set_num_threads(1)


def pattern_images(
    n: int, num_classes: int, size: int, channels: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Images whose class is a bright horizontal band at a class-specific height, plus noise: easy to learn."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % num_classes
    rng.shuffle(labels)
    images = rng.integers(0, 60, size=(n, channels, size, size)).astype(np.uint8)
    band = max(1, size // num_classes)
    for i, c in enumerate(labels):
        top = (c * size) // num_classes
        images[i, :, top : top + band, :] = 230
    return images, labels.astype(np.uint8)


@pytest.fixture(scope="session")
def tiny_fmnist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding a 160/80-image Fashion-MNIST in the real gzipped IDX format."""
    root = tmp_path_factory.mktemp("data")
    folder = root / "fashion-mnist"
    folder.mkdir()
    for split, n, seed in (("train", 160, 0), ("t10k", 80, 1)):
        x, y = pattern_images(n, 10, 28, 1, seed)
        write_idx_file(folder / f"{split}-images-idx3-ubyte.gz", x[:, 0], gz=True)
        write_idx_file(folder / f"{split}-labels-idx1-ubyte.gz", y, gz=True)
    return root


@pytest.fixture(scope="session")
def tiny_cifar10(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data dir holding CIFAR-10 python pickle batches (5 x 20 train images, 40 test)."""
    root = tmp_path_factory.mktemp("cifar")
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    names = [f"class{i}".encode() for i in range(10)]
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({b"label_names": names, b"num_vis": 3072}, f)
    files = [(f"data_batch_{i}", 20, i) for i in range(1, 6)] + [("test_batch", 40, 9)]
    for fname, n, seed in files:
        x, y = pattern_images(n, 10, 32, 3, seed)
        with open(folder / fname, "wb") as f:
            pickle.dump({b"data": x.reshape(n, -1), b"labels": y.tolist(), b"batch_label": fname.encode()}, f)
    return root


@pytest.fixture(scope="session")
def tiny_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An image folder with train/ and val/ splits, 3 classes, PNG and JPEG files in several modes."""
    from PIL import Image

    root = tmp_path_factory.mktemp("folder") / "shapes"
    x, y = pattern_images(60, 3, 24, 3, 5)
    for i, (img, label) in enumerate(zip(x, y)):
        split = "val" if i % 4 == 0 else "train"
        d = root / split / ["circle", "square", "star"][label]
        d.mkdir(parents=True, exist_ok=True)
        pil = Image.fromarray(img.transpose(1, 2, 0))
        if i % 3 == 0:
            pil.convert("L").save(d / f"{i}.png")
        elif i % 3 == 1:
            pil.save(d / f"{i}.jpg", quality=95)
        else:
            pil.convert("RGBA").save(d / f"{i}.png")
    return root

"""run_baseline on pixels: the trained baselines use their own settings, not the ConvNet preset's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import yaml

from imgcls.classic import run_baseline
from tests.data.data_files import write_idx_file


@pytest.fixture(scope="module")
def mirrored_classes(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two classes that are each other's mirror image: a bright bar in the left or the right third."""
    root = tmp_path_factory.mktemp("mirror")
    folder = root / "fashion-mnist"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for split, n in (("train", 200), ("t10k", 100)):
        y = (np.arange(n) % 2).astype(np.uint8)
        x = rng.integers(0, 40, size=(n, 28, 28)).astype(np.uint8)
        x[y == 0, :, 3:9] = 220
        x[y == 1, :, 19:25] = 220
        write_idx_file(folder / f"{split}-images-idx3-ubyte.gz", x, gz=True)
        write_idx_file(folder / f"{split}-labels-idx1-ubyte.gz", y, gz=True)
    return root


def test_linear_baseline_does_not_average_over_mirrored_images(
    mirrored_classes: Path, tmp_path: Path
) -> None:
    # Flip test-time augmentation would average each image's logits with its mirror's: these two classes
    # would then tie on every image (50%). The linear model must see the image as it is.
    r = run_baseline(
        "linear",
        data_dir=mirrored_classes,
        epochs=3,
        batch_size=32,
        out_dir=tmp_path,
        device="cpu",
        progress=False,
    )
    assert r.top1 >= 0.95
    cfg = yaml.safe_load((Path(r.run_dir) / "config.yaml").read_text())
    assert cfg["tta_flip"] is False and cfg["label_smoothing"] == 0.0 and cfg["augment"] == "none"

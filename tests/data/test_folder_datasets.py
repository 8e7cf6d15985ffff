"""Image folders: every mode and format, splits, resize, channels, bad files, streaming vs in memory."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.data import FolderDataset, InMemoryDataset, load_dataset
from imgcls.data.folder import BadImagesError, decode_image
from imgcls.errors import ConfigError, DataError

from .data_files import save_image


def test_every_mode_loads_as_rgb(color_folder: Path) -> None:
    ds = load_dataset(f"folder:{color_folder}")
    assert isinstance(ds, InMemoryDataset)
    assert ds.info.classes == ("bird", "cat", "dog") and ds.info.channels == 3
    assert ds.info.image_size == (10, 12)  # (H, W) of the 12x10 images
    assert len(ds) + len(load_dataset(f"folder:{color_folder}", "test")) == 24
    assert ds.images.shape[1:] == (3, 10, 12) and ds.images.dtype == torch.uint8
    # Statistics over the training split, per channel, for images in [0, 1].
    expected = (ds.images.double() / 255).mean(dim=(0, 2, 3))
    np.testing.assert_allclose(ds.info.mean, expected.numpy(), atol=1e-5)


@pytest.mark.parametrize(
    ("mode", "value", "expected"),
    [
        ("L", 77, [77]),
        ("I;16", 65535, [255]),  # 16-bit scaled to 8-bit
        ("I;16", 32896, [128]),
        ("RGBA", 200, [157, 157, 157]),  # alpha 200/255 over black: 200 * 200 / 255
    ],
)
def test_mode_conversion_values(tmp_path: Path, mode: str, value: int, expected: list[int]) -> None:
    path = save_image(tmp_path / "a.png", mode, value=value)
    out = decode_image(path, len(expected))
    assert out.shape == (len(expected), 10, 12) and out.dtype == np.uint8
    np.testing.assert_allclose(out[:, 0, 0], expected, atol=1)


def test_transparent_pixels_become_black_and_palette_and_cmyk_match_pillow(tmp_path: Path) -> None:
    rgba = np.zeros((4, 4, 4), np.uint8)
    rgba[..., :3] = 255  # white, but fully transparent
    Image.frombytes("RGBA", (4, 4), rgba.tobytes()).save(tmp_path / "t.png")
    assert decode_image(tmp_path / "t.png", 3).max() == 0
    for name, mode in (("p.gif", "P"), ("c.jpg", "CMYK")):
        path = save_image(tmp_path / name, mode)
        with Image.open(path) as img:
            want = np.asarray(img.convert("RGB")).transpose(2, 0, 1)
            want_l = np.asarray(img.convert("RGB").convert("L"))
        np.testing.assert_array_equal(decode_image(path, 3), want)
        np.testing.assert_array_equal(decode_image(path, 1)[0], want_l)  # ITU-R 601 luma


def test_gray_folder_is_one_channel_and_converts_to_three(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        for i in range(5):
            save_image(tmp_path / "g" / cls / f"{i}.png", "L" if i % 2 else "I;16", seed=i)
    gray = load_dataset(f"folder:{tmp_path / 'g'}", test_fraction=0.2)
    assert gray.info.channels == 1 and gray.images.shape[1] == 1
    rgb = load_dataset(f"folder:{tmp_path / 'g'}", test_fraction=0.2, channels=3)
    assert torch.equal(rgb.images[:, 0], rgb.images[:, 1]) and torch.equal(rgb.images[:, :1], gray.images)
    assert rgb.info.mean == gray.info.mean * 3


def _layout_folder(root: Path, splits: dict[str, int], classes: tuple[str, ...] = ("x", "y")) -> str:
    for split, n in splits.items():
        for cls in classes:
            for i in range(n):
                save_image(root / split / cls / f"{i}.png", "RGB", seed=i)
    return f"folder:{root}"


def test_train_val_layout_val_is_the_test_split(tmp_path: Path) -> None:
    """ImageNet's layout (train/ and val/ only): val/ is what is reported, so it is the test split."""
    name = _layout_folder(tmp_path, {"train": 4, "val": 2})
    train, test = load_dataset(name), load_dataset(name, "test")
    assert (len(train), len(test)) == (8, 4)
    assert test.info == train.info and test.labels.tolist() == [0, 0, 1, 1]
    with pytest.raises(ConfigError, match="no 'val' split: give a val_fraction > 0"):
        load_dataset(name, "val")
    train, val = load_dataset(name, val_fraction=0.25), load_dataset(name, "val", val_fraction=0.25)
    assert (len(train), len(val)) == (6, 2) and sorted(val.labels.tolist()) == [0, 1]
    assert len(load_dataset(name, "all")) == 12
    save_image(tmp_path / "val" / "z" / "0.png", "RGB")
    with pytest.raises(DataError, match="class that"):
        load_dataset(name, "test")
    only = _layout_folder(tmp_path / "only", {"train": 1})
    with pytest.raises(ConfigError, match="no 'test' split: add a test/ folder"):
        load_dataset(only, "test")


def test_train_val_test_layout_uses_all_three(tmp_path: Path) -> None:
    name = _layout_folder(tmp_path, {"train": 5, "val": 3, "test": 2})
    sizes = [len(load_dataset(name, s, val_fraction=0.4)) for s in ("train", "val", "test", "all")]
    assert sizes == [10, 6, 4, 20]  # the folder's own val/ wins over val_fraction


def test_flat_folder_splits_partition_it(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        for i in range(10):
            save_image(tmp_path / cls / f"{i}.png", "RGB", size=(4, 4), seed=i + 10 * (cls == "b"))
    name = f"folder:{tmp_path}"
    parts = {
        s: load_dataset(name, s, val_fraction=0.25, in_memory=False).files for s in ("train", "val", "test")
    }
    assert [len(parts[s]) for s in ("train", "val", "test")] == [
        13,
        5,
        2,
    ]  # test: ceil(10%) of 20, val: ceil(25%) of the 18 left
    assert len(set().union(*parts.values())) == 20  # no image in two splits
    # The test split does not depend on val_fraction: runs with and without validation are scored alike.
    assert load_dataset(name, "test", in_memory=False).files == parts["test"]
    assert len(load_dataset(name, "all")) == 20


@pytest.mark.parametrize("layout", ["flat", "train/val"])
def test_one_class_folder_is_refused(tmp_path: Path, layout: str) -> None:
    train = tmp_path / "train" if layout == "train/val" else tmp_path
    for i in range(4):
        save_image(train / "cat" / f"{i}.png", "RGB", seed=i)
        if layout == "train/val":
            save_image(tmp_path / "val" / "cat" / f"{i}.png", "RGB", seed=i)
    with pytest.raises(DataError, match=r"has one class \('cat'\): a classifier needs at least two") as err:
        load_dataset(f"folder:{tmp_path}", test_fraction=0.25)
    assert "\n" not in str(err.value)


def test_seeded_stratified_split(tmp_path: Path) -> None:
    for cls in ("a", "b", "c"):
        for i in range(10):
            save_image(tmp_path / cls / f"{i}.bmp", "RGB", size=(4, 4), seed=i)
    name = f"folder:{tmp_path}"
    train = load_dataset(name, test_fraction=0.2, seed=3)
    test = load_dataset(name, "test", test_fraction=0.2, seed=3)
    assert (len(train), len(test)) == (24, 6) and np.bincount(test.labels.numpy()).tolist() == [2, 2, 2]
    files_train = load_dataset(name, test_fraction=0.2, seed=3, in_memory=False).files
    files_test = load_dataset(name, "test", test_fraction=0.2, seed=3, in_memory=False).files
    assert len(set(files_train) | set(files_test)) == 30  # a partition of the 30 files
    again = load_dataset(name, "test", test_fraction=0.2, seed=3)
    other = load_dataset(name, "test", test_fraction=0.2, seed=4)
    assert torch.equal(again.images, test.images) and not torch.equal(other.images, test.images)
    assert len(load_dataset(name, test_fraction=0.0)) == 30
    with pytest.raises(ConfigError, match="test_fraction > 0"):
        load_dataset(name, "test", test_fraction=0.0)


def test_resize_and_jpeg_draft(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        for i in range(3):
            save_image(tmp_path / cls / f"{i}.jpg", "RGB", size=(64, 48), seed=i)
    ds = load_dataset(f"folder:{tmp_path}", image_size=16, test_fraction=0)
    assert ds.images.shape == (6, 3, 16, 16) and ds.info.image_size == (16, 16)


def test_corrupt_image_names_the_file_or_is_skipped(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    for cls in ("a", "b"):
        for i in range(4):
            save_image(tmp_path / cls / f"{i}.png", "RGB", seed=i)
    bad = tmp_path / "a" / "broken.png"
    bad.write_bytes(np.random.default_rng(0).integers(0, 256, 300, dtype=np.uint8).tobytes())
    name = f"folder:{tmp_path}"
    with pytest.raises(DataError, match="cannot read image") as err:
        load_dataset(name, test_fraction=0)
    assert str(bad) in str(err.value) and "\n" not in str(err.value)
    with caplog.at_level(logging.WARNING, logger="imgcls.data"):
        ds = load_dataset(name, test_fraction=0, skip_bad=True)
    assert len(ds) == 8 and ds.skipped == (bad,)
    assert "skipped 1 unreadable image" in caplog.text
    # Truncated: a valid header whose pixel data stops early.
    bad.unlink()
    good = tmp_path / "b" / "0.png"
    good.write_bytes(good.read_bytes()[:60])
    with pytest.raises(DataError, match=str(good).replace("\\", "\\\\")):
        load_dataset(name, test_fraction=0, skip_bad=False)


def test_empty_missing_and_flat_folders(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="does not exist"):
        load_dataset(f"folder:{tmp_path / 'nope'}")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no class sub-folders"):
        load_dataset(f"folder:{tmp_path / 'empty'}")
    save_image(tmp_path / "flat" / "one.png", "RGB")
    with pytest.raises(DataError, match=r"1 images lie loose in it"):
        load_dataset(f"folder:{tmp_path / 'flat'}")


def test_streaming_matches_in_memory(color_folder: Path) -> None:
    name = f"folder:{color_folder}"
    mem = load_dataset(name, "test", image_size=8)
    stream = load_dataset(name, "test", image_size=8, in_memory=False)
    assert isinstance(stream, FolderDataset) and stream.info == mem.info
    x, y = stream[1]
    assert x.dtype == torch.uint8 and x.shape == (3, 8, 8)
    assert torch.equal(x, mem.images[1]) and y == int(mem.labels[1])
    assert stream.labels == mem.labels.tolist()


def test_one_scan_names_every_bad_file_up_to_twenty(tmp_path: Path) -> None:
    for cls in ("a", "b"):
        for i in range(3):
            save_image(tmp_path / cls / f"{i}.png", "RGB", seed=i)
    bad = [tmp_path / "a" / f"bad{i:02d}.jpg" for i in range(23)]
    for path in bad:
        path.write_bytes(b"not an image at all")
    with pytest.raises(BadImagesError) as err:
        load_dataset(f"folder:{tmp_path}", test_fraction=0)
    message = str(err.value)
    assert err.value.files == bad and message.startswith("23 unreadable image(s): ")
    assert sum(str(p) in message for p in bad) == 20 and "and 3 more" in message and "--skip-bad" in message
    assert "\n" not in message
    ds = load_dataset(f"folder:{tmp_path}", test_fraction=0, skip_bad=True)
    assert len(ds) == 6 and ds.skipped == tuple(bad)

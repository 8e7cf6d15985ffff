"""Built-in datasets from real files in tmp_path: IDX, CIFAR pickles, digits; locations, download, errors."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.data import datasets, list_datasets, load_dataset
from imgcls.errors import ConfigError, DataError, ImgclsError, UnknownNameError

from .data_files import write_cifar, write_mnist_like

_REAL_FETCH = datasets.fetch_url  # taken at import, before the autouse fixture replaces it


def test_list_datasets() -> None:
    assert list_datasets() == ["cifar10", "cifar100", "digits", "fashion-mnist", "mnist"]


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_from_data_dir(tmp_path: Path, gz: bool) -> None:
    written = write_mnist_like(tmp_path, gz=gz)
    train = load_dataset("fashion-mnist", data_dir=tmp_path)
    test = load_dataset("fashion-mnist", "test", data_dir=tmp_path)
    assert train.images.shape == (30, 1, 28, 28) and train.images.dtype == torch.uint8
    assert train.images.is_contiguous() and train.labels.dtype == torch.int64
    np.testing.assert_array_equal(train.images[:, 0].numpy(), written["train"][0])
    np.testing.assert_array_equal(test.labels.numpy(), written["t10k"][1])
    info = train.info
    assert info.classes[0] == "T-shirt/top" and info.classes[9] == "Ankle boot" and info.num_classes == 10
    assert (info.channels, info.image_size, info.mean, info.std) == (1, (28, 28), (0.2860,), (0.3530,))


def test_standard_locations_and_torchvision_layout(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    write_mnist_like(tmp_path / "store" / "MNIST" / "raw", gz=False)
    monkeypatch.setenv("IMGCLS_DATA", str(tmp_path / "store"))
    assert len(load_dataset("mnist")) == 30
    # Below a standard root, files only count in the dataset's own folder: MNIST's are not Fashion-MNIST's.
    with pytest.raises(DataError, match="dataset 'fashion-mnist' not found"):
        load_dataset("fashion-mnist")
    write_mnist_like(Path("data") / "fashion-mnist", n_train=20)  # ./data/NAME (cwd is a temp folder)
    assert len(load_dataset("fashion-mnist")) == 20


def test_missing_dataset_says_where_it_looked_and_how_to_get_it(tmp_path: Path) -> None:
    with pytest.raises(DataError) as err:
        load_dataset("fashion-mnist", data_dir=tmp_path / "nowhere")
    msg = str(err.value)
    assert "\n" not in msg and str(tmp_path / "nowhere") in msg and ".cache/imgcls" in msg
    assert "--download" in msg and "apt-get install dataset-fashion-mnist" in msg and "--data-dir" in msg


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownNameError) as err:
        load_dataset("fashion_mnist")
    assert "fashion-mnist" in str(err.value) and isinstance(err.value, ImgclsError)
    with pytest.raises(UnknownNameError, match="cifar10"):
        load_dataset("imagenet-1k")


def test_truncated_idx_in_a_dataset_names_the_file(tmp_path: Path) -> None:
    write_mnist_like(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DataError, match="truncated") as err:
        load_dataset("mnist", data_dir=tmp_path)
    assert str(path) in str(err.value)


def test_cifar10_batches_meta_and_pixel_layout(tmp_path: Path) -> None:
    written = write_cifar(tmp_path / "cifar-10-batches-py")
    train = load_dataset("cifar10", data_dir=tmp_path)
    test = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert train.images.shape == (30, 3, 32, 32) and len(test) == 6
    assert train.info.classes == written["classes"]  # read from batches.meta
    data, labels = written["data_batch_2"]
    # Each row holds 1024 red, then 1024 green, then 1024 blue values, row-major.
    np.testing.assert_array_equal(train.images[6, 1].numpy(), data[0, 1024:2048].reshape(32, 32))
    assert train.labels[6:12].tolist() == labels
    assert train.info.mean == (0.4914, 0.4822, 0.4465)


def test_cifar100_fine_labels(tmp_path: Path) -> None:
    written = write_cifar(tmp_path / "cifar-100-python", hundred=True)
    train = load_dataset("cifar100", data_dir=tmp_path)
    assert train.info.num_classes == 100 and train.info.classes == written["classes"]
    assert train.labels.tolist() == written["train"][1]


def test_cifar_refuses_pickles_that_run_code(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-100-python"
    write_cifar(folder, hundred=True)
    (folder / "train").write_bytes(pickle.dumps({b"data": print}))  # names a global: refused, never called
    with pytest.raises(DataError, match="not allowed") as err:
        load_dataset("cifar100", data_dir=tmp_path)
    assert str(folder / "train") in str(err.value)
    (folder / "train").write_bytes(b"\x80\x02}q\x00(X")  # cut short
    with pytest.raises(DataError, match="cannot read CIFAR batch"):
        load_dataset("cifar100", data_dir=tmp_path)


def test_channels_and_resize_of_builtins(tmp_path: Path) -> None:
    write_cifar(tmp_path / "cifar-10-batches-py")
    rgb = load_dataset("cifar10", data_dir=tmp_path)
    gray = load_dataset("cifar10", data_dir=tmp_path, channels=1, image_size=16)
    assert gray.images.shape == (30, 1, 16, 16) and gray.info.image_size == (16, 16)
    same_size = load_dataset("cifar10", data_dir=tmp_path, channels=1)
    pil = Image.fromarray(rgb.images[0].permute(1, 2, 0).numpy(), "RGB").convert("L")
    np.testing.assert_array_equal(same_size.images[0, 0].numpy(), np.asarray(pil))  # Pillow's ITU-R 601 luma
    assert gray.info.mean[0] == pytest.approx(0.299 * 0.4914 + 0.587 * 0.4822 + 0.114 * 0.4465, abs=1e-4)
    write_mnist_like(tmp_path / "fm", n_train=4)
    three = load_dataset("fashion-mnist", data_dir=tmp_path / "fm", channels=3)
    assert three.images.shape == (4, 3, 28, 28) and three.info.mean == (0.2860,) * 3
    assert torch.equal(three.images[:, 0], three.images[:, 2])


def test_digits_split_scaling_and_statistics() -> None:
    train, test = load_dataset("digits"), load_dataset("digits", "test")
    assert (len(train), len(test)) == (1437, 360)
    assert train.images.shape[1:] == (1, 8, 8) and int(train.images.max()) == 255
    assert train.info.classes == tuple("0123456789")
    counts = np.bincount(test.labels.numpy(), minlength=10)
    assert counts.min() >= 35 and counts.max() <= 37  # stratified: ~20% of every class
    mean = train.images.double().mean().item() / 255
    assert train.info.mean[0] == pytest.approx(mean, abs=1e-5) and test.info == train.info
    # The test split is the same for every seed: runs of different seeds are scored on the same images.
    assert torch.equal(load_dataset("digits", "test", seed=1).images, test.images)
    big = load_dataset("digits", image_size=16, channels=3)
    assert big.images.shape == (1437, 3, 16, 16) and len(big.info.mean) == 3


def _serve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, files: dict[str, bytes], md5s: dict
) -> list:
    """Serve ``files`` (with checksums ``md5s``) as dataset ``name``'s download; returns the fetched URLs."""
    spec = datasets.BUILTINS[name]
    downloads = tuple((f, md5s[f], ("https://example.invalid/mirror/",)) for f in files)
    monkeypatch.setitem(datasets.BUILTINS, name, dataclasses.replace(spec, downloads=downloads))
    fetched: list[str] = []

    def fake_fetch(url: str, dest: Path) -> None:
        fetched.append(url)
        dest.write_bytes(files[url.rsplit("/", 1)[1]])

    monkeypatch.setattr(datasets, "fetch_url", fake_fetch)
    return fetched


def test_download_verifies_checksums_and_lands_atomically(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist_like(tmp_path / "src")
    files = {p.name: p.read_bytes() for p in (tmp_path / "src").iterdir()}
    md5s = {k: hashlib.md5(v).hexdigest() for k, v in files.items()}
    fetched = _serve(tmp_path, monkeypatch, "mnist", files, md5s)
    root = tmp_path / "root"
    with pytest.raises(DataError, match="not found"):  # nothing downloads unless asked
        load_dataset("mnist", data_dir=root)
    assert fetched == []
    train = load_dataset("mnist", data_dir=root, download=True)
    assert len(train) == 30 and len(fetched) == 4
    assert sorted(p.name for p in (root / "mnist").iterdir()) == sorted(files)  # no temporary files left
    load_dataset("mnist", "test", data_dir=root, download=True)
    assert len(fetched) == 4  # present: not fetched again


def test_download_checksum_mismatch_removes_the_temp_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_mnist_like(tmp_path / "src")
    files = {p.name: p.read_bytes() for p in (tmp_path / "src").iterdir()}
    md5s = {k: "0" * 32 for k in files}
    _serve(tmp_path, monkeypatch, "mnist", files, md5s)
    with pytest.raises(DataError, match="checksum mismatch") as err:
        load_dataset("mnist", data_dir=tmp_path / "root", download=True)
    assert "\n" not in str(err.value)
    assert list((tmp_path / "root" / "mnist").iterdir()) == []


def test_download_cifar_archive_from_a_file_url(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "fetch_url", _REAL_FETCH)  # urllib, on a file:// URL
    written = write_cifar(tmp_path / "build" / "cifar-10-batches-py")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    served = tmp_path / "served"
    served.mkdir()
    (served / "cifar-10-python.tar.gz").write_bytes(buf.getvalue())
    spec = datasets.BUILTINS["cifar10"]
    md5 = hashlib.md5(buf.getvalue()).hexdigest()
    downloads = (("cifar-10-python.tar.gz", md5, (served.as_uri() + "/",)),)
    monkeypatch.setitem(datasets.BUILTINS, "cifar10", dataclasses.replace(spec, downloads=downloads))
    test = load_dataset("cifar10", "test", data_dir=tmp_path / "root", download=True)
    assert test.labels.tolist() == written["test_batch"][1]
    assert (tmp_path / "root" / "cifar10" / "cifar-10-batches-py" / "data_batch_5").is_file()


@pytest.mark.skipif(
    not Path("/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz").is_file(),
    reason="the Debian package dataset-fashion-mnist is not installed",
)
def test_real_fashion_mnist_from_the_debian_package(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(datasets, "SYSTEM_DIR", Path("/usr/share/datasets"))
    train, test = load_dataset("fashion-mnist"), load_dataset("fashion-mnist", "test")
    assert (len(train), len(test)) == (60000, 10000)
    assert np.bincount(train.labels.numpy()).tolist() == [6000] * 10
    assert int(train.labels[0]) == 9  # the first training image is an ankle boot
    pixels = train.images[:10000].double() / 255  # the published statistics, on a sixth of the set
    assert pixels.mean().item() == pytest.approx(train.info.mean[0], abs=0.01)
    assert pixels.std().item() == pytest.approx(train.info.std[0], abs=0.01)


def test_validation_split_is_held_out_of_the_training_set(tmp_path: Path) -> None:
    """train / val / test share no image; val is a seeded, stratified share of the training set."""
    full = load_dataset("digits")
    train = load_dataset("digits", val_fraction=0.2, seed=5)
    val = load_dataset("digits", "val", val_fraction=0.2, seed=5)
    test = load_dataset("digits", "test", val_fraction=0.2, seed=5)
    assert (len(train), len(val), len(test)) == (1149, 288, 360)
    rows = {bytes(x.numpy()) for x in full.images}
    assert {bytes(x.numpy()) for x in train.images} | {bytes(x.numpy()) for x in val.images} <= rows
    assert len(train) + len(val) == len(full)
    assert np.bincount(val.labels.numpy(), minlength=10).min() >= 27  # stratified: ~20% of every class
    # A seed gives its own validation split; the same seed the same one.
    assert torch.equal(load_dataset("digits", "val", val_fraction=0.2, seed=5).images, val.images)
    assert not torch.equal(load_dataset("digits", "val", val_fraction=0.2, seed=6).images, val.images)
    with pytest.raises(ConfigError, match="no validation split .* val_fraction > 0"):
        load_dataset("digits", "val")
    with pytest.raises(ConfigError, match="'all' is for folders"):
        load_dataset("digits", "all")


def test_validation_split_of_a_builtin_dataset(tmp_path: Path) -> None:
    written = write_mnist_like(tmp_path, gz=True)
    images, labels = written["train"]
    train = load_dataset("fashion-mnist", data_dir=tmp_path, val_fraction=0.2)
    val = load_dataset("fashion-mnist", "val", data_dir=tmp_path, val_fraction=0.2)
    test = load_dataset("fashion-mnist", "test", data_dir=tmp_path, val_fraction=0.2)
    assert (len(train), len(val), len(test)) == (24, 6, len(written["t10k"][1]))
    # train and val partition the training file, each image with its own label
    got = sorted((bytes(x.numpy()), int(y)) for ds in (train, val) for x, y in zip(ds.images, ds.labels))
    assert got == sorted((bytes(x[None].tobytes()), int(y)) for x, y in zip(images, labels))
    assert val.info == train.info  # the published statistics, whatever is held out

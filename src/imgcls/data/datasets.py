"""The built-in datasets by name, where their files are looked for, their download, and :func:`load_dataset`.

- ``fashion-mnist``: Xiao, Rasul, Vollgraf, "Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine
  Learning Algorithms", 2017, arXiv:1708.07747. 60,000/10,000 28x28 grayscale images, IDX files.
- ``mnist``: LeCun, Bottou, Bengio, Haffner, "Gradient-based learning applied to document recognition", 1998.
  60,000/10,000 28x28 grayscale images, IDX files (fetched from the PyTorch mirror
  ossci-datasets.s3.amazonaws.com/mnist/, the original site refusing scripted downloads).
- ``cifar10`` / ``cifar100``: Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", 2009.
  50,000/10,000 32x32 RGB images, the "python version" pickle batches; CIFAR-100 uses the 100 fine labels.
- ``digits``: scikit-learn's bundled copy of the UCI optical handwritten digits (Alpaydin, Kaynak, 1998),
  1,797 8x8 images with values 0..16, scaled here to 0..255 (``round(v * 255 / 16)``). Always available, no
  download. There is no official split: a stratified split (seed 0, the same for every run) holds out
  ``ceil(20%)`` = 360 images for test and keeps 1,437 for training.
- ``folder:PATH``: any directory of class sub-folders, see :mod:`imgcls.data.folder`.

Every dataset has three splits that share no image: "test" (its own), "val" (a seeded stratified
``val_fraction`` of the training images, when asked for) and "train" (the rest).

Files are looked for in ``data_dir`` (and ``data_dir/NAME``), then ``$IMGCLS_DATA/NAME``,
``~/.cache/imgcls/NAME``, ``./data/NAME`` and ``/usr/share/datasets/NAME`` (where the Debian package
``dataset-fashion-mnist`` installs Fashion-MNIST); torchvision's layout (``FashionMNIST/raw``, ``MNIST/raw``,
``cifar-10-batches-py``) is recognised under the same roots. Below ``data_dir`` itself the files may lie
directly; below the standard roots only in the dataset's own sub-folder, because MNIST and Fashion-MNIST
share file names.

Nothing is downloaded unless asked (``download=True``). A download goes to ``data_dir/NAME`` (default
``~/.cache/imgcls/NAME``) through a temporary file that is renamed into place only after its MD5 matches the
published checksum. Local files are not re-hashed on every load (the Debian package, for one, ships
re-compressed copies with other checksums); the readers check their structure instead.

Normalisation statistics are the published per-channel values over each training set (for CIFAR the
pixel-level std, not the often-quoted mean of per-image stds 0.2023/0.1994/0.2010); digits and folders
compute theirs over the training split.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import pickle
import tarfile
import tempfile
import urllib.request
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcls.data.folder import SPLITS, FolderDataset, load_folder
from imgcls.data.idx import IDX_IMAGES, IDX_LABELS, read_idx
from imgcls.data.info import (
    DatasetInfo,
    InMemoryDataset,
    adapt_info,
    channel_stats,
    convert_channels,
    resize_images,
    stratified_split,
)
from imgcls.errors import ConfigError, DataError, unknown_name

__all__ = [
    "BUILTINS",
    "BuiltinDataset",
    "clear_cache",
    "download_dataset",
    "fetch_url",
    "list_datasets",
    "load_dataset",
    "search_dirs",
    "subset",
]

log = logging.getLogger(__name__)

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
CIFAR100_CLASSES = (
    "apple", "aquarium_fish", "baby", "bear", "beaver", "bed", "bee", "beetle", "bicycle", "bottle", "bowl",
    "boy", "bridge", "bus", "butterfly", "camel", "can", "castle", "caterpillar", "cattle", "chair",
    "chimpanzee", "clock", "cloud", "cockroach", "couch", "crab", "crocodile", "cup", "dinosaur", "dolphin",
    "elephant", "flatfish", "forest", "fox", "girl", "hamster", "house", "kangaroo", "keyboard", "lamp",
    "lawn_mower", "leopard", "lion", "lizard", "lobster", "man", "maple_tree", "motorcycle", "mountain",
    "mouse", "mushroom", "oak_tree", "orange", "orchid", "otter", "palm_tree", "pear", "pickup_truck",
    "pine_tree", "plain", "plate", "poppy", "porcupine", "possum", "rabbit", "raccoon", "ray", "road",
    "rocket", "rose", "sea", "seal", "shark", "shrew", "skunk", "skyscraper", "snail", "snake", "spider",
    "squirrel", "streetcar", "sunflower", "sweet_pepper", "table", "tank", "telephone", "television",
    "tiger", "tractor", "train", "trout", "tulip", "turtle", "wardrobe", "whale", "willow_tree", "wolf",
    "woman", "worm",
)  # fmt: skip


@dataclass(frozen=True)
class BuiltinDataset:
    """A built-in dataset: where its files lie, where they come from, and what they hold.

    ``files`` maps each split to the file names it needs, relative to the dataset folder; ``downloads`` lists
    (file name, MD5, mirror URLs); ``archive`` names a downloaded tarball to unpack into the dataset folder.
    """

    name: str
    info: DatasetInfo
    files: dict[str, tuple[str, ...]]
    subdirs: tuple[str, ...]  # the dataset's folder names under a search root (first: where downloads go)
    downloads: tuple[tuple[str, str, tuple[str, ...]], ...] = ()
    archive: str | None = None
    apt_package: str | None = None


_FMNIST_URL = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
_MNIST_URLS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
_IDX_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
_CIFAR10_FILES = {
    "train": tuple(f"cifar-10-batches-py/data_batch_{i}" for i in range(1, 6)),
    "test": ("cifar-10-batches-py/test_batch",),
}
_CIFAR100_FILES = {"train": ("cifar-100-python/train",), "test": ("cifar-100-python/test",)}

BUILTINS: dict[str, BuiltinDataset] = {
    "fashion-mnist": BuiltinDataset(
        "fashion-mnist",
        # Statistics over the 60,000 training images (recomputed from the files: 0.28604, 0.35302).
        DatasetInfo("fashion-mnist", FASHION_MNIST_CLASSES, 1, (28, 28), (0.2860,), (0.3530,)),
        _IDX_FILES,
        ("fashion-mnist", "FashionMNIST/raw", "fashion_mnist"),
        (
            ("train-images-idx3-ubyte.gz", "8d4fb7e6c68d591d4c3dfef9ec88bf0d", (_FMNIST_URL,)),
            ("train-labels-idx1-ubyte.gz", "25c81989df183df01b3e8a0aad5dffbe", (_FMNIST_URL,)),
            ("t10k-images-idx3-ubyte.gz", "bef4ecab320f06d8554ea6380940ec79", (_FMNIST_URL,)),
            ("t10k-labels-idx1-ubyte.gz", "bb300cfdad3c16e7a12a480ee83cd310", (_FMNIST_URL,)),
        ),
        apt_package="dataset-fashion-mnist",
    ),
    "mnist": BuiltinDataset(
        "mnist",
        DatasetInfo("mnist", tuple(str(d) for d in range(10)), 1, (28, 28), (0.1307,), (0.3081,)),
        _IDX_FILES,
        ("mnist", "MNIST/raw"),
        (
            ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873", _MNIST_URLS),
            ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432", _MNIST_URLS),
            ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3", _MNIST_URLS),
            ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c", _MNIST_URLS),
        ),
    ),
    "cifar10": BuiltinDataset(
        "cifar10",
        DatasetInfo(
            "cifar10", CIFAR10_CLASSES, 3, (32, 32), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)
        ),
        _CIFAR10_FILES,
        ("cifar10", "cifar-10", "."),
        (
            (
                "cifar-10-python.tar.gz",
                "c58f30108f718f92721af3b95e74349a",
                ("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",),
            ),
        ),
        archive="cifar-10-python.tar.gz",
    ),
    "cifar100": BuiltinDataset(
        "cifar100",
        DatasetInfo(
            "cifar100", CIFAR100_CLASSES, 3, (32, 32), (0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)
        ),
        _CIFAR100_FILES,
        ("cifar100", "cifar-100", "."),
        (
            (
                "cifar-100-python.tar.gz",
                "eb9058c3a382ffc7106e4002c42a8d85",
                ("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz",),
            ),
        ),
        archive="cifar-100-python.tar.gz",
    ),
}
# Where Debian's dataset packages install (dataset-fashion-mnist: /usr/share/datasets/fashion-mnist).
SYSTEM_DIR = Path("/usr/share/datasets")
# "digits" and "folder:PATH" are handled by their own loaders below.
DIGITS_TEST_FRACTION = 0.2


def list_datasets() -> list[str]:
    """Names of the built-in datasets; ``folder:PATH`` is accepted too."""
    return sorted([*BUILTINS, "digits"])


# ---------------------------------------------------------------------------------------------- locations


def search_dirs(name: str, data_dir: str | Path | None = None) -> list[Path]:
    """The folders where dataset ``name``'s files are looked for, in order."""
    spec = BUILTINS[name]
    dirs: list[Path] = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        dirs += [root / sub for sub in spec.subdirs if sub != "."] + [root]
    roots = [Path(os.environ["IMGCLS_DATA"]).expanduser()] if os.environ.get("IMGCLS_DATA") else []
    roots += [Path.home() / ".cache" / "imgcls", Path("data")]
    for root in roots:
        dirs += [root / sub for sub in spec.subdirs if sub != "."]
        if "." in spec.subdirs:  # CIFAR's own folder name (cifar-10-batches-py) is unambiguous
            dirs.append(root)
    dirs.append(SYSTEM_DIR / name)
    return list(dict.fromkeys(dirs))


def _find_file(folder: Path, name: str) -> Path | None:
    """``name`` in ``folder``, or a gzipped copy, or the dotted IDX name (``t10k-images.idx3-ubyte``)."""
    stem = Path(name).name
    variants = [stem + ".gz", stem, stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"]
    for v in dict.fromkeys(variants):
        path = folder / Path(name).parent / v
        if path.is_file():
            return path
    return None


def _locate(spec: BuiltinDataset, split: str, data_dir: str | Path | None) -> list[Path] | None:
    for folder in search_dirs(spec.name, data_dir):
        found = [_find_file(folder, f) for f in spec.files[split]]
        if all(p is not None for p in found):
            log.debug("%s %s: using %s", spec.name, split, folder)
            return found  # type: ignore[return-value]
        if spec.archive and (folder / spec.archive).is_file():
            _extract(folder / spec.archive, folder)
            found = [_find_file(folder, f) for f in spec.files[split]]
            if all(p is not None for p in found):
                return found  # type: ignore[return-value]
    return None


def _missing_message(spec: BuiltinDataset, data_dir: str | Path | None) -> str:
    looked = ", ".join(str(d) for d in search_dirs(spec.name, data_dir))
    ways = ["pass download=True (imgcls: --download)"]
    if spec.apt_package:
        ways.append(f"`apt-get install {spec.apt_package}`")
    ways.append(f"point data_dir (--data-dir) at a folder holding {', '.join(spec.files['train'][:2])}, ...")
    return f"dataset '{spec.name}' not found (looked in {looked}): " + ", or ".join(ways)


# ----------------------------------------------------------------------------------------------- download


def fetch_url(url: str, dest: Path) -> None:
    """Copy ``url`` (http, https or file) to ``dest``. Tests replace this function to stay off the network."""
    from tqdm import tqdm

    with urllib.request.urlopen(url, timeout=60) as response, open(dest, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0) or None
        with tqdm(
            total=total,
            unit="B",
            unit_scale=True,
            desc=Path(url).name,
            leave=False,
            disable=total is None or total < 1 << 20,
        ) as bar:
            while chunk := response.read(1 << 20):
                out.write(chunk)
                bar.update(len(chunk))


def _md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _download_one(urls: tuple[str, ...], md5: str, dest: Path) -> None:
    """Download to a temporary file beside ``dest``, check its MD5, then rename it into place (atomic)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    errors = []
    for url in urls:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
        os.close(fd)
        tmp = Path(tmp_name)
        try:
            log.info("downloading %s -> %s", url, dest)
            fetch_url(url, tmp)
            got = _md5(tmp)
            if got != md5:
                raise DataError(
                    f"checksum mismatch for {url}: MD5 {got}, expected {md5}; the download is corrupt "
                    f"or the file changed: try again, or fetch it by hand into {dest.parent}"
                )
            os.replace(tmp, dest)
            return
        except (OSError, ValueError, http.client.HTTPException) as e:  # URLError and timeouts are OSErrors
            errors.append(f"{url}: {getattr(e, 'reason', None) or e}")
        finally:
            tmp.unlink(missing_ok=True)
    raise DataError(
        f"cannot download {dest.name} ({'; '.join(errors)}): check the network, or fetch it by hand "
        f"into {dest.parent}"
    )


def _extract(archive: Path, into: Path) -> None:
    log.info("extracting %s", archive)
    try:
        with tarfile.open(archive) as tar:
            if hasattr(tarfile, "data_filter"):  # refuses absolute paths, links out of the folder, devices
                tar.extractall(into, filter="data")
            else:  # Python < 3.10.12: check the member paths by hand
                root = into.resolve()
                for member in tar.getmembers():
                    if (
                        not (into / member.name).resolve().is_relative_to(root)
                        or member.issym()
                        or member.islnk()
                    ):
                        raise DataError(f"archive '{archive}' holds an unsafe path '{member.name}'")
                tar.extractall(into)
    except (tarfile.TarError, OSError, EOFError) as e:
        raise DataError(f"cannot extract '{archive}' ({e}): delete it and download again") from None


def download_dataset(name: str, data_dir: str | Path | None = None) -> Path:
    """Download dataset ``name`` to ``data_dir/NAME`` (default ``~/.cache/imgcls/NAME``); returns that folder.

    Files already present with the right checksum are kept.
    """
    if name not in BUILTINS:
        raise unknown_name("downloadable dataset", name, BUILTINS)
    spec = BUILTINS[name]
    root = Path(data_dir).expanduser() if data_dir is not None else Path.home() / ".cache" / "imgcls"
    folder = root / spec.subdirs[0]
    for filename, md5, urls in spec.downloads:
        dest = folder / filename
        if dest.is_file() and _md5(dest) == md5:
            log.debug("%s is already there", dest)
        else:
            _download_one(tuple(u if u.endswith(filename) else u + filename for u in urls), md5, dest)
        if spec.archive == filename:
            _extract(dest, folder)
    return folder


# ---------------------------------------------------------------------------------------------- readers


class _CifarUnpickler(pickle.Unpickler):
    """Unpickles CIFAR batches only: dicts, lists, bytes and numpy arrays.

    A pickle can run any code it names on load; refusing every other global keeps a tampered or mistaken
    file from doing so.
    """

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"),
        ("numpy._core.multiarray", "_reconstruct"),
        ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"),
        ("numpy.core.numeric", "_frombuffer"),
        ("numpy._core.numeric", "_frombuffer"),
        ("numpy", "ndarray"),
        ("numpy", "dtype"),
        ("_codecs", "encode"),
    }

    def find_class(self, module: str, name: str) -> object:
        if (module, name) not in self._ALLOWED:
            raise pickle.UnpicklingError(f"global '{module}.{name}' is not allowed in a CIFAR batch")
        if module.startswith("numpy.core."):  # NumPy 2 renamed numpy.core to numpy._core
            module = module.replace("numpy.core.", "numpy._core.", 1) if hasattr(np, "_core") else module
        return super().find_class(module, name)


def _read_pickle(path: Path) -> dict:
    try:
        with open(path, "rb") as f:
            obj = _CifarUnpickler(f, encoding="bytes").load()
    except (
        OSError,
        EOFError,
        pickle.UnpicklingError,
        ValueError,
        TypeError,
        AttributeError,
        IndexError,
    ) as e:
        raise DataError(
            f"cannot read CIFAR batch '{path}' ({type(e).__name__}: {e}): the file is corrupt or "
            "not a CIFAR python batch; download it again"
        ) from None
    if not isinstance(obj, dict):
        raise DataError(f"'{path}' is not a CIFAR python batch (holds a {type(obj).__name__}, not a dict)")
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in obj.items()}


def _read_cifar(files: list[Path], label_key: str) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = [], []
    for path in files:
        batch = _read_pickle(path)
        if "data" not in batch or label_key not in batch:
            raise DataError(
                f"CIFAR batch '{path}' lacks '{'data' if 'data' not in batch else label_key}': "
                "is it a CIFAR-10 file read as CIFAR-100 (or the reverse)?"
            )
        data = np.asarray(batch["data"])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
            raise DataError(
                f"CIFAR batch '{path}' has data of {data.dtype} {data.shape}, expected uint8 (N, 3072)"
            )
        y = np.asarray(batch[label_key], dtype=np.int64)
        if y.shape != (len(data),):
            raise DataError(f"CIFAR batch '{path}' has {len(data)} images but {y.size} labels")
        images.append(data.reshape(-1, 3, 32, 32))  # rows are 1024 R, then 1024 G, then 1024 B values
        labels.append(y)
    return torch.from_numpy(np.concatenate(images)), torch.from_numpy(np.concatenate(labels))


def _cifar_classes(folder: Path, meta_name: str, key: str, default: tuple[str, ...]) -> tuple[str, ...]:
    meta = folder / meta_name
    if not meta.is_file():
        return default
    names = _read_pickle(meta).get(key)
    if not isinstance(names, list) or not names:
        raise DataError(f"CIFAR meta file '{meta}' has no '{key}' list")
    return tuple(n.decode() if isinstance(n, bytes) else str(n) for n in names)


def _load_builtin(spec: BuiltinDataset, split: str, files: list[Path]) -> InMemoryDataset:
    if spec.name in ("fashion-mnist", "mnist"):
        images_np = read_idx(files[0], IDX_IMAGES)
        labels_np = read_idx(files[1], IDX_LABELS)
        if len(images_np) != len(labels_np):
            raise DataError(
                f"'{files[0]}' has {len(images_np)} images but '{files[1]}' {len(labels_np)} labels: "
                "the files do not belong together"
            )
        images = torch.from_numpy(images_np.copy()).unsqueeze(1)  # (N, H, W) -> (N, 1, H, W)
        labels = torch.from_numpy(labels_np.astype(np.int64))
        info = spec.info
        if tuple(images.shape[2:]) != info.image_size:
            raise DataError(
                f"'{files[0]}' holds {tuple(images.shape[2:])} images, expected {info.image_size}"
            )
    else:
        cifar100 = spec.name == "cifar100"
        images, labels = _read_cifar(files, "fine_labels" if cifar100 else "labels")
        folder = files[0].parent
        classes = (
            _cifar_classes(folder, "meta", "fine_label_names", spec.info.classes)
            if cifar100
            else _cifar_classes(folder, "batches.meta", "label_names", spec.info.classes)
        )
        info = DatasetInfo(spec.name, classes, 3, (32, 32), spec.info.mean, spec.info.std)
    return InMemoryDataset(images, labels, info)


def _load_digits(seed: int = 0) -> tuple[InMemoryDataset, InMemoryDataset]:
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DataError("the digits dataset needs scikit-learn: pip install scikit-learn") from None
    digits = load_digits()
    values = np.rint(np.asarray(digits.images, dtype=np.float64) * (255.0 / 16.0)).clip(0, 255)
    images = torch.from_numpy(values.astype(np.uint8)).unsqueeze(1)  # (1797, 8, 8) -> (1797, 1, 8, 8)
    labels = torch.from_numpy(np.asarray(digits.target, dtype=np.int64))
    train_idx, test_idx = stratified_split(labels.numpy(), DIGITS_TEST_FRACTION, seed)
    classes = tuple(str(d) for d in range(10))
    info = DatasetInfo("digits", classes, 1, (8, 8), (0.5,), (0.5,))  # statistics replaced after conversion
    return tuple(
        InMemoryDataset(images[torch.from_numpy(i)], labels[torch.from_numpy(i)], info)
        for i in (train_idx, test_idx)
    )  # type: ignore[return-value]


# -------------------------------------------------------------------------------------------- load_dataset

# Per-process cache of loaded datasets: a second load (train, then test, then an evaluation) costs nothing.
# Only datasets under _CACHE_ITEM_BYTES are kept, at most _CACHE_BYTES in all (least recently used first out).
_CACHE: OrderedDict[tuple, InMemoryDataset] = OrderedDict()
_CACHE_ITEM_BYTES = 512 * 1024**2
_CACHE_BYTES = 1024**3


def clear_cache() -> None:
    """Forget every dataset cached by :func:`load_dataset` in this process."""
    _CACHE.clear()


def _cached(key: tuple, make: Callable[[], InMemoryDataset]) -> InMemoryDataset:
    if key in _CACHE:
        _CACHE.move_to_end(key)
        return _CACHE[key]
    dataset = make()
    size = dataset.images.numel()
    if size <= _CACHE_ITEM_BYTES:
        _CACHE[key] = dataset
        while sum(d.images.numel() for d in _CACHE.values()) > _CACHE_BYTES:
            _CACHE.popitem(last=False)
    return dataset


def _file_key(files: list[Path]) -> tuple:
    return tuple((str(p.resolve()), p.stat().st_mtime_ns, p.stat().st_size) for p in files)


def _adapt(dataset: InMemoryDataset, channels: int | None, size: tuple[int, int] | None) -> InMemoryDataset:
    images = dataset.images
    if channels and channels != images.shape[1]:
        images = convert_channels(images, channels)
    if size and tuple(size) != tuple(images.shape[2:]):
        images = resize_images(images, size)
    if images is dataset.images:
        return dataset
    return InMemoryDataset(images, dataset.labels, adapt_info(dataset.info, channels, size), dataset.skipped)


def _hold_out(dataset: InMemoryDataset, split: str, fraction: float, seed: int) -> InMemoryDataset:
    """The "train" or "val" part of a training set of which a seeded, stratified ``fraction`` is held out."""
    kept, held = stratified_split(dataset.labels.numpy(), fraction, seed)
    idx = torch.from_numpy(kept if split == "train" else held)
    if len(idx) == 0:
        raise DataError(f"dataset '{dataset.info.name}' is too small to hold out a validation split")
    return InMemoryDataset(dataset.images[idx], dataset.labels[idx], dataset.info, dataset.skipped)


def subset(dataset: Any, share: float, seed: int = 0) -> InMemoryDataset:
    """A seeded, stratified ``share`` (in (0, 1]) of an in-memory dataset: each class keeps about ``share`` of
    its images (at least one), so 10% of Fashion-MNIST is 600 images of each class."""
    if not isinstance(dataset, InMemoryDataset):
        raise ConfigError(
            f"dataset '{dataset.info.name}' streams from disk: a subset works on in-memory datasets only "
            "(drop train_subset / test_subset)"
        )
    if not 0.0 < share <= 1.0:
        raise ConfigError(f"a subset's share must be in (0, 1], got {share}")
    if share >= 1.0:
        return dataset
    # stratified_split holds out ceil(N * share) images, spread over the classes: they are the subset.
    _, chosen = stratified_split(dataset.labels.numpy(), share, seed)
    idx = torch.from_numpy(chosen)
    return InMemoryDataset(dataset.images[idx], dataset.labels[idx], dataset.info, dataset.skipped)


def load_dataset(
    name: str,
    split: str = "train",
    *,
    data_dir: str | Path | None = None,
    download: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
    val_fraction: float = 0.0,
    test_fraction: float = 0.1,
    seed: int = 0,
    skip_bad: bool = False,
    in_memory: bool | None = None,
) -> InMemoryDataset | FolderDataset:
    """Load dataset ``name`` (see :func:`list_datasets`, or ``folder:PATH``) for ``split``.

    ``split`` is "train", "val" or "test" (folders also "all": every image). The test split is the dataset's
    own (for a flat folder a seeded ``test_fraction`` of it, for digits 20%); the validation split is a seeded
    stratified ``val_fraction`` of the training images (or a folder's own ``val/``), and "train" is what
    remains, so the three never share an image. ``image_size`` resizes every image to a square once at load
    (antialiased); ``channels`` (1 or 3) converts (RGB -> L by ITU-R 601 luma, L -> RGB by repeating).
    ``skip_bad`` drops unreadable images of a folder (logged and counted in ``dataset.skipped``) instead of
    raising one error naming them. ``in_memory`` (folders only; built-ins always are): ``None`` loads a folder
    into memory when its decoded training split takes at most 2 GiB, else streams it. Raises
    :class:`DataError` when the data is missing or corrupt.
    """
    _check_request(split, val_fraction, test_fraction, channels, image_size)
    if name.startswith("folder:"):
        return load_folder(
            name,
            Path(name[len("folder:") :]).expanduser(),
            split,
            image_size=image_size,
            channels=channels,
            val_fraction=val_fraction,
            test_fraction=test_fraction,
            seed=seed,
            skip_bad=skip_bad,
            in_memory=in_memory,
        )
    if split == "all":
        raise ConfigError(f"the split 'all' is for folders; dataset '{name}' has train, val and test")
    if split == "val" and val_fraction <= 0:
        raise ConfigError(
            f"dataset '{name}' has no validation split unless part of its training set is held out: "
            "give val_fraction > 0"
        )
    size = (image_size, image_size) if image_size else None
    key_name = name.lower()
    if key_name == "digits":
        return _cached(
            ("digits", split, val_fraction, seed, channels, size),
            lambda: _digits_split(split, val_fraction, seed, channels, size),
        )
    if key_name not in BUILTINS:
        raise unknown_name(
            "dataset", name, list_datasets(), hint="or folder:PATH for a folder of class folders"
        )
    source_split = "train" if split == "val" else split
    spec = BUILTINS[key_name]
    files = _locate(spec, source_split, data_dir)
    if files is None and download:
        download_dataset(key_name, data_dir)
        files = _locate(spec, source_split, data_dir)
    if files is None:
        raise DataError(_missing_message(spec, data_dir))

    def make() -> InMemoryDataset:
        return _adapt(_load_builtin(spec, source_split, files), channels, size)

    whole = _cached((key_name, source_split, _file_key(files), channels, size), make)
    carve = split in ("train", "val") and val_fraction > 0
    return _hold_out(whole, split, val_fraction, seed) if carve else whole


def _check_request(
    split: str, val_fraction: float, test_fraction: float, channels: int | None, image_size: int | None
) -> None:
    """One-line ConfigErrors for the arguments of :func:`load_dataset` that no dataset could take."""
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}': use {', '.join(SPLITS)}")
    for what, fraction in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= fraction < 1.0:
            raise ConfigError(f"{what} must be in [0, 1), got {fraction}")
    if channels not in (None, 1, 3):
        raise ConfigError(f"channels must be 1 or 3, got {channels}")
    if image_size is not None and (not isinstance(image_size, int) or image_size < 1):
        raise ConfigError(f"image_size must be a positive int, got {image_size!r}")


def _digits_split(
    split: str, val_fraction: float, seed: int, channels: int | None, size: tuple[int, int] | None
) -> InMemoryDataset:
    """scikit-learn's digits: one fixed test set for all runs (seed 0), a seeded validation share held out
    of the rest, normalised with the statistics of the images it trains on."""
    train, test = (_adapt(d, channels or 1, size) for d in _load_digits(0))
    parts = {"train": train, "test": test}
    if val_fraction > 0:
        parts |= {s: _hold_out(train, s, val_fraction, seed) for s in ("train", "val")}
    mean, std = channel_stats(parts["train"].images)  # over the images it trains on
    info = DatasetInfo("digits", train.info.classes, train.info.channels, train.info.image_size, mean, std)
    return InMemoryDataset(parts[split].images, parts[split].labels, info)

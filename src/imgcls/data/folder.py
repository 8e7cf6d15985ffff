"""Image-folder datasets: one sub-folder per class, images of any format and mode Pillow reads.

Layouts:

- ``PATH/<class>/...``: a flat folder. The test split is a seeded stratified ``test_fraction`` of it (10% by
  default; seed 0 unless given, so every run is scored on the same images), the validation split a
  ``val_fraction`` of the rest.
- ``PATH/train/<class>/...`` beside ``PATH/test/<class>/...``: the test split is ``test/``; a ``val/`` beside
  both is the validation split, else the validation split is a ``val_fraction`` of ``train/``.
- ``PATH/train/`` beside ``PATH/val/`` only (ImageNet's layout): ``val/`` is the test split, touched once, and
  validation is a ``val_fraction`` of ``train/``.

The split ``all`` is every image of the folder, to score a trained run on a folder of its own. Class names
are the sorted sub-folder names of the training split; files are found recursively and recognised by the file
extensions Pillow registers; hidden files and folders are ignored. A folder needs at least two classes.

Every image becomes L or RGB: 1-bit and 8-bit grayscale stay L; 16-bit (``I;16*``) and 32-bit ``I`` images are
scaled from 0..65535 to 0..255; float ``F`` images are taken as 0..1 when their maximum is at most 1, else as
0..255; images with transparency (RGBA, LA, P with a transparent colour) are composited over black, so fully
transparent pixels become 0; palette, CMYK, YCbCr, LAB and HSV images convert to RGB with Pillow. Then
RGB -> L uses the ITU-R 601 luma and L -> RGB repeats the channel. With ``channels=None`` a folder is L when
every sampled image is grayscale (a palette of grays counts), else RGB.

Normalisation statistics are computed over the training split: over all of it when it has at most
:data:`STATS_SAMPLE` images, else over a fixed sample of that many (the same for both splits, so the two
always agree).
"""

from __future__ import annotations

import hashlib
import logging
import os
import struct
from collections import Counter
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from imgcls.data.info import DatasetInfo, InMemoryDataset, channel_stats, stratified_split
from imgcls.errors import ConfigError, DataError

__all__ = [
    "SPLITS",
    "BadImagesError",
    "IN_MEMORY_BYTES",
    "READ_ERRORS",
    "STATS_SAMPLE",
    "FolderDataset",
    "decode_image",
    "image_extensions",
    "image_to_array",
    "load_folder",
]

log = logging.getLogger(__name__)

# Folders whose decoded training split fits in this many bytes load into memory; larger ones stream.
IN_MEMORY_BYTES = 2 * 1024**3
# Images whose statistics define a folder's mean/std (all of them when the training split is smaller).
STATS_SAMPLE = 5000
# Unreadable files an error names (all of them are counted).
MAX_NAMED_BAD = 20
# Images whose headers decide a folder's default size and channels.
_PROBE_SAMPLE = 1000
# The splits a folder offers; "all" is every image in it (to score a run on a folder of its own).
SPLITS = ("train", "val", "test", "all")
# Sub-folders beside train/ that hold a held-out split (see _layout).
_HELD_OUT_DIRS = ("test", "val", "valid", "validation")
_GRAY_MODES = {"1", "L", "LA", "La", "I", "I;16", "I;16L", "I;16B", "I;16N", "F"}
_ALPHA_MODES = {"LA", "La", "PA", "RGBA", "RGBa"}
# What Pillow raises on a corrupt, truncated or unsupported file (struct.error: some truncated headers).
READ_ERRORS = (
    OSError,
    SyntaxError,
    ValueError,
    EOFError,
    struct.error,
    UnidentifiedImageError,
    Image.DecompressionBombError,
)


def image_extensions() -> frozenset[str]:
    """File extensions (lower case, with the dot) of every format this Pillow can open."""
    Image.init()
    return frozenset(ext for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN)


def _is_gray(img: Image.Image) -> bool:
    if img.mode in _GRAY_MODES:
        return True
    if img.mode in ("P", "PA"):
        palette = img.getpalette() or []
        return all(palette[i] == palette[i + 1] == palette[i + 2] for i in range(0, len(palette) - 2, 3))
    return False


def _to_l_or_rgb(img: Image.Image) -> Image.Image:
    """Bring any Pillow mode to L or RGB (see the module docstring for the rules)."""
    mode = img.mode
    if mode in ("L", "RGB"):
        return img
    if mode.startswith("I"):  # I;16, I;16B, I;16L, I;16N (16-bit) and I (32-bit, 16-bit PNGs on older Pillow)
        values = np.asarray(img).astype(np.int64)
        values = (np.clip(values, 0, 65535) * 255 + 32767) // 65535
        return Image.fromarray(values.astype(np.uint8), "L")
    if mode == "F":
        values = np.asarray(img, dtype=np.float64)
        scale = 255.0 if values.size and np.nanmax(values) <= 1.0 else 1.0
        return Image.fromarray(np.clip(np.nan_to_num(values) * scale + 0.5, 0, 255).astype(np.uint8), "L")
    if mode == "1":
        return img.convert("L")
    if mode in _ALPHA_MODES or (mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (0, 0, 0, 255))
        return Image.alpha_composite(background, rgba).convert("L" if mode in ("LA", "La") else "RGB")
    return img.convert("RGB")  # P, CMYK, YCbCr, LAB, HSV, RGBX


def decode_image(
    path: str | Path | BinaryIO,
    channels: int,
    size: tuple[int, int] | None = None,
    *,
    name: str | None = None,
    max_pixels: int | None = None,
) -> np.ndarray:
    """Decode an image file to a uint8 ``(C, H, W)`` array, resized (antialiased) to ``size`` (H, W) if given.

    ``path`` may also be an open binary stream (an upload); ``name`` then names it in errors. With
    ``max_pixels``, an image whose header declares more pixels is refused before any pixel is decoded.
    Raises :class:`DataError` naming the file when it cannot be read.
    """
    source = Path(path) if isinstance(path, str) else path
    label = name or str(source)
    try:
        with Image.open(source) as img:
            if max_pixels is not None and img.width * img.height > max_pixels:
                raise DataError(
                    f"image '{label}' declares {img.width}x{img.height} pixels, more than the {max_pixels:,} "
                    "allowed: send a smaller image"
                )
            if size is not None and img.format == "JPEG":
                # JPEG can decode at 1/2, 1/4 or 1/8 scale in the DCT domain, several times faster than a
                # full decode followed by a resize; draft keeps the result at least as large as `size`.
                img.draft("RGB" if channels == 3 else "L", (size[1], size[0]))
            img.load()
            return image_to_array(img, channels, size)
    except READ_ERRORS as e:
        if isinstance(e, UnidentifiedImageError):
            reason = "not an image format Pillow reads (a corrupt or misnamed file)"
        else:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"cannot read image '{label}': {reason}") from None


def image_to_array(img: Image.Image, channels: int, size: tuple[int, int] | None = None) -> np.ndarray:
    """A Pillow image as a uint8 ``(C, H, W)`` array of ``channels`` (1: ITU-R 601-2 luma, 3: RGB), resized
    (antialiased) to ``size`` (H, W) if given: what every image goes through, from a file or from memory."""
    out = _to_l_or_rgb(img)
    if channels == 1 and out.mode == "RGB":
        out = out.convert("L")
    elif channels == 3 and out.mode == "L":
        out = out.convert("RGB")
    if size is not None and out.size != (size[1], size[0]):
        # Pillow's resize filters widen their support when shrinking: antialiased.
        out = out.resize((size[1], size[0]), Image.Resampling.BILINEAR)
    array = np.asarray(out, dtype=np.uint8)
    # (H, W) -> (1, H, W); (H, W, C) -> (C, H, W). One copy: contiguous and writable (Pillow's buffer is not).
    return np.array(array[None] if array.ndim == 2 else array.transpose(2, 0, 1), order="C")


def _class_dirs(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_in(folder: Path, extensions: frozenset[str]) -> list[Path]:
    files = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=True):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        files.extend(
            Path(dirpath) / f
            for f in sorted(filenames)
            if not f.startswith(".") and os.path.splitext(f)[1].lower() in extensions
        )
    return files


def _layout(root: Path) -> dict[str, Path]:
    """The folder's own split folders: {"train": root/train, "test": ..., "val": ...}, or {} when it is flat.

    ``test/`` is the test split; without one, ``val/`` (``valid/``, ``validation/``) is (ImageNet's layout,
    whose ``val`` is what papers report). ``val/`` is the validation split only beside a ``test/``.
    """
    train = root / "train"
    if not (train.is_dir() and _class_dirs(train)):
        return {}
    layout = {"train": train}
    held = [root / name for name in _HELD_OUT_DIRS if (root / name).is_dir()]
    test = next((d for d in held if d.name == "test"), None)
    val = next((d for d in held if d.name != "test"), None)
    if test is not None:
        layout["test"] = test
        if val is not None:
            layout["val"] = val
    elif val is not None:
        layout["test"] = val
    return layout


def _labelled(
    split_dir: Path, classes: tuple[str, ...], extensions: frozenset[str]
) -> tuple[list[Path], list[int]]:
    """The images of a held-out split folder, labelled by the training split's classes."""
    index = {name: i for i, name in enumerate(classes)}
    files: list[Path] = []
    labels: list[int] = []
    for d in _class_dirs(split_dir):
        found = _images_in(d, extensions)
        if found and d.name not in index:
            raise DataError(
                f"'{d}' is a class that {split_dir.parent / 'train'} lacks: the splits must share their class "
                "folders"
            )
        files += found
        labels += [index.get(d.name, -1)] * len(found)
    if not files:
        raise DataError(f"folder '{split_dir}' has no images")
    return files, labels


def _hold_out(
    files: list[Path], labels: list[int], fraction: float, seed: int
) -> tuple[tuple[list[Path], list[int]], tuple[list[Path], list[int]]]:
    """((kept files, labels), (held-out files, labels)): a seeded stratified ``fraction`` held out."""
    kept_idx, held_idx = stratified_split(np.asarray(labels), fraction, seed)
    return (
        ([files[i] for i in kept_idx], [labels[i] for i in kept_idx]),
        ([files[i] for i in held_idx], [labels[i] for i in held_idx]),
    )


def _scan(
    root: Path, split: str, *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[tuple[str, ...], list[Path], list[int], list[Path], list[int]]:
    """Walk the folder once: (classes, train files, train labels, ``split`` files, ``split`` labels).

    The training split is what remains once the test split (a flat folder's seeded ``test_fraction``) and the
    validation split (the folder's ``val/`` beside a ``test/``, else a seeded ``val_fraction`` of the rest)
    are held out. ``split="all"`` is every image of the folder, whatever its layout.
    """
    if not root.is_dir():
        raise DataError(
            f"folder '{root}' does not exist or is not a directory: give folder:PATH of a directory "
            "with one sub-folder of images per class"
        )
    if split not in SPLITS:
        raise ConfigError(f"unknown split '{split}': use {', '.join(SPLITS)}")
    extensions = image_extensions()
    layout = _layout(root)
    train_dir = layout.get("train", root)
    per_class = {d.name: _images_in(d, extensions) for d in _class_dirs(train_dir)}
    for name in [n for n, found in per_class.items() if not found]:
        log.warning("folder %s: class folder '%s' holds no images; it is not a class", train_dir, name)
        del per_class[name]
    if not per_class:
        loose = len(_images_in(train_dir, extensions))
        raise DataError(
            f"folder '{train_dir}' has no class sub-folders with images"
            + (f" ({loose} images lie loose in it)" if loose else "")
            + f": put each class's images in {train_dir}/<class name>/"
        )
    if len(per_class) == 1:
        only = next(iter(per_class))
        raise DataError(
            f"folder '{train_dir}' has one class ('{only}'): a classifier needs at least two; "
            f"add a sub-folder of images for each other class to {train_dir}"
        )
    classes = tuple(per_class)  # sorted by _class_dirs
    pool = (
        [f for found in per_class.values() for f in found],
        [i for i, found in enumerate(per_class.values()) for _ in found],
    )
    if split == "all":
        files, labels = list(pool[0]), list(pool[1])
        for d in layout.values():
            if d != train_dir:
                more = _labelled(d, classes, extensions)
                files, labels = files + more[0], labels + more[1]
    held: dict[str, tuple[list[Path], list[int]]] = {
        s: _labelled(d, classes, extensions) for s, d in layout.items() if s == split and s != "train"
    }
    if not layout and test_fraction > 0:  # a flat folder: a seeded stratified test split
        pool, held["test"] = _hold_out(*pool, test_fraction, seed)
    if "val" not in layout and val_fraction > 0:  # no val/ of its own: a seeded share of the training images
        pool, held["val"] = _hold_out(*pool, val_fraction, seed)
    train_files, train_labels = pool
    if split == "all":
        return classes, train_files, train_labels, files, labels
    if split == "train":
        return classes, train_files, train_labels, train_files, train_labels
    if split not in held:
        fix = (
            "give a val_fraction > 0 to hold out part of the training images"
            if split == "val"
            else "add a test/ folder of class folders beside train/"
            if layout
            else "give a test_fraction > 0 to hold out part of it"
        )
        raise ConfigError(f"folder '{root}' has no '{split}' split: {fix}")
    if not held[split][0]:
        raise DataError(f"folder '{root}' is too small to hold out a '{split}' split: add images")
    return classes, train_files, train_labels, *held[split]


def _probe(files: Sequence[Path]) -> tuple[tuple[int, int], bool]:
    """Most common (H, W) and whether all are grayscale, over a fixed sample of image headers."""
    rng = np.random.default_rng(0)
    sample = (
        files
        if len(files) <= _PROBE_SAMPLE
        else [files[i] for i in rng.choice(len(files), _PROBE_SAMPLE, replace=False)]
    )
    sizes: Counter[tuple[int, int]] = Counter()
    gray = True
    for f in sample:
        try:
            with Image.open(f) as img:  # reads the header only
                sizes[(img.height, img.width)] += 1
                gray = gray and _is_gray(img)
        except READ_ERRORS:
            continue  # reported when (and if) the image is decoded
    if not sizes:
        raise DataError(
            f"none of the {len(sample)} sampled images under '{files[0].parent.parent}' can be read"
        )
    if len(sizes) > 1:
        log.info(
            "images have %d different sizes; resizing all to the most common, %s (give image_size to choose)",
            len(sizes),
            sizes.most_common(1)[0][0],
        )
    return sizes.most_common(1)[0][0], gray


def _stats_sample(n: int) -> np.ndarray:
    if n <= STATS_SAMPLE:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, STATS_SAMPLE, replace=False))


def _decode_many(
    files: Sequence[Path], channels: int, size: tuple[int, int], skip_bad: bool
) -> tuple[torch.Tensor, np.ndarray, list[Path]]:
    """Decode files into one uint8 (N, C, H, W) tensor; returns (images, mask of good files, bad files).

    Every file is tried, so one pass finds every bad one; without ``skip_bad`` a :class:`DataError` then names
    them (the first :data:`MAX_NAMED_BAD`) and the flag that skips them.
    """
    out = torch.empty((len(files), channels, *size), dtype=torch.uint8)
    good = np.ones(len(files), dtype=bool)
    reasons: dict[int, str] = {}

    def work(i: int) -> None:
        try:
            out[i] = torch.from_numpy(decode_image(files[i], channels, size))
        except DataError as e:
            good[i] = False
            reasons[i] = str(e)

    # Pillow releases the GIL while decoding, so threads give a near-linear speed-up without pickling.
    with ThreadPoolExecutor(max_workers=max(1, min(8, os.cpu_count() or 1))) as pool:
        for _ in pool.map(work, range(len(files))):
            pass
    bad = [files[i] for i in np.flatnonzero(~good)]
    if bad and not skip_bad:
        raise BadImagesError(bad, [reasons[i] for i in np.flatnonzero(~good)])
    if bad:
        out = out[torch.from_numpy(good)]
    return out, good, bad


class BadImagesError(DataError):
    """Files of a folder that cannot be read: every one found in one pass, the first few named in one line."""

    def __init__(self, files: Sequence[Path], reasons: Sequence[str]) -> None:
        self.files = list(files)
        shown = "; ".join(reasons[:MAX_NAMED_BAD])
        more = f"; and {len(files) - MAX_NAMED_BAD} more" if len(files) > MAX_NAMED_BAD else ""
        super().__init__(
            f"{len(files)} unreadable image(s): {shown}{more}; fix or remove them, or pass --skip-bad "
            "to leave them out"
        )


# Statistics per (training file list, channels, size): loading the test split after the training split, or a
# second time, does not decode the sample again.
_STATS_CACHE: dict[tuple, tuple[tuple[float, ...], tuple[float, ...]]] = {}


def _folder_stats(
    train_files: Sequence[Path],
    channels: int,
    size: tuple[int, int],
    decoded: torch.Tensor | None = None,
    good: np.ndarray | None = None,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    digest = hashlib.sha1("\n".join(map(str, train_files)).encode(), usedforsecurity=False).hexdigest()
    key = (digest, channels, size)
    if key in _STATS_CACHE:
        return _STATS_CACHE[key]
    sample = _stats_sample(len(train_files))
    if decoded is not None:
        if good is not None:  # rows of `decoded` are the good files only
            rows = np.cumsum(good) - 1
            sample = rows[sample[good[sample]]]
        images = decoded[torch.from_numpy(sample)]
    else:
        images, _, _ = _decode_many([train_files[i] for i in sample], channels, size, skip_bad=True)
    if len(images) == 0:
        raise DataError(f"no readable training images under '{train_files[0].parent.parent}'")
    _STATS_CACHE[key] = stats = channel_stats(images)
    return stats


class FolderDataset(torch.utils.data.Dataset):
    """A streaming image folder: decodes each image with Pillow when it is indexed.

    ``__getitem__`` returns (uint8 ``(C, H, W)`` tensor resized to ``info.image_size``, label). With
    ``skip_bad=True`` an unreadable file is logged and the next readable one is returned in its place (the
    loader needs a sample at every index); otherwise it raises :class:`DataError` naming the file.
    """

    def __init__(
        self, files: Sequence[Path], labels: Sequence[int], info: DatasetInfo, *, skip_bad: bool = False
    ):
        if len(files) != len(labels):
            raise DataError(f"{len(files)} files but {len(labels)} labels")
        self.files: list[Path] = list(files)
        self.labels: list[int] = [int(v) for v in labels]
        self.info = info
        self.skip_bad = skip_bad

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        for attempt in range(min(len(self.files), 100)):
            i = (index + attempt) % len(self.files)
            try:
                image = decode_image(self.files[i], self.info.channels, self.info.image_size)
                return torch.from_numpy(image), self.labels[i]
            except DataError as e:
                if not self.skip_bad:
                    raise
                log.warning("skipping unreadable image (%s)", e)
        raise DataError(f"100 images in a row from '{self.files[index]}' on are unreadable: check the folder")

    def __repr__(self) -> str:
        return f"FolderDataset({self.info.name!r}, n={len(self)}, classes={self.info.num_classes})"


def load_folder(
    name: str,
    root: str | Path,
    split: str = "train",
    *,
    image_size: int | None = None,
    channels: int | None = None,
    val_fraction: float = 0.0,
    test_fraction: float = 0.1,
    seed: int = 0,
    skip_bad: bool = False,
    in_memory: bool | None = None,
) -> InMemoryDataset | FolderDataset:
    """Load an image folder (see the module docstring); ``name`` is the dataset's name in its info."""
    classes, train_files, _, files, labels = _scan(
        Path(root).expanduser(), split, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed
    )
    probed_size, gray = _probe(train_files)
    size = (image_size, image_size) if image_size else probed_size
    channels = channels or (1 if gray else 3)
    decoded_bytes = len(train_files) * channels * size[0] * size[1]
    if in_memory is None:
        in_memory = decoded_bytes <= IN_MEMORY_BYTES
        log.debug(
            "folder %s: %d training images, %.2f GB decoded -> %s",
            root,
            len(train_files),
            decoded_bytes / 1e9,
            "in memory" if in_memory else "streaming",
        )
    if in_memory:
        images, good, bad = _decode_many(files, channels, size, skip_bad)
        if bad:
            log.warning(
                "skipped %d unreadable image(s) of %d in %s (first: %s)", len(bad), len(files), root, bad[0]
            )
        if len(images) == 0:
            raise DataError(f"no readable images for the '{split}' split of '{root}'")
        if split == "train":
            mean, std = _folder_stats(train_files, channels, size, images, good)
        else:
            mean, std = _folder_stats(train_files, channels, size)
        info = DatasetInfo(name, classes, channels, size, mean, std)
        kept = torch.tensor(labels, dtype=torch.int64)[torch.from_numpy(good)]
        return InMemoryDataset(images, kept, info, skipped=tuple(bad))
    mean, std = _folder_stats(train_files, channels, size)
    return FolderDataset(
        files, labels, DatasetInfo(name, classes, channels, size, mean, std), skip_bad=skip_bad
    )

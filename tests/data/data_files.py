"""Writers of real dataset files for the data tests: IDX, CIFAR pickle batches, images of every mode."""

from __future__ import annotations

import gzip
import pickle
import struct
from pathlib import Path

import numpy as np
from PIL import Image


def write_idx_file(path: Path, array: np.ndarray, *, gz: bool) -> Path:
    """An IDX file with a hand-packed header (magic 0x0000080N, big-endian uint32 dims), uint8 data."""
    array = np.ascontiguousarray(array, dtype=np.uint8)
    raw = struct.pack(">I", 0x00000800 | array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    raw += array.tobytes()
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def write_mnist_like(
    folder: Path, n_train: int = 30, n_test: int = 10, *, gz: bool = True, seed: int = 0
) -> dict:
    """Fashion-MNIST/MNIST-style files in ``folder``; returns the arrays written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    suffix = ".gz" if gz else ""
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
        labels = (np.arange(n) % 10).astype(np.uint8)
        write_idx_file(folder / f"{prefix}-images-idx3-ubyte{suffix}", images, gz=gz)
        write_idx_file(folder / f"{prefix}-labels-idx1-ubyte{suffix}", labels, gz=gz)
        out[prefix] = (images, labels)
    return out


def write_cifar(folder: Path, *, hundred: bool = False, n_per_batch: int = 6, seed: int = 0) -> dict:
    """CIFAR python batches (pickled dicts of bytes keys) in ``folder``; returns what was written."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    label_key = b"fine_labels" if hundred else b"labels"
    k = 100 if hundred else 10
    names = ["train"] if hundred else [f"data_batch_{i}" for i in range(1, 6)]
    written = {}
    for name in [*names, "test" if hundred else "test_batch"]:
        data = rng.integers(0, 256, (n_per_batch, 3072), dtype=np.uint8)
        labels = [int(v) for v in rng.integers(0, k, n_per_batch)]
        with open(folder / name, "wb") as f:
            pickle.dump({b"batch_label": b"x", label_key: labels, b"data": data}, f, protocol=2)
        written[name] = (data, labels)
    meta_name, meta_key = ("meta", b"fine_label_names") if hundred else ("batches.meta", b"label_names")
    class_names = [f"class{i}".encode() for i in range(k)]
    with open(folder / meta_name, "wb") as f:
        pickle.dump({meta_key: class_names, b"num_cases_per_batch": n_per_batch}, f)
    written["classes"] = tuple(n.decode() for n in class_names)
    return written


def save_image(
    path: Path, mode: str, size: tuple[int, int] = (12, 10), value: int | None = None, seed: int = 0
) -> Path:
    """A small image of ``mode`` (L, RGB, RGBA, P, CMYK, I;16) saved in the format its suffix names."""
    rng = np.random.default_rng(seed)
    w, h = size
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode == "I;16":
        arr = (
            rng.integers(0, 65536, (h, w), dtype=np.uint16)
            if value is None
            else np.full((h, w), value, np.uint16)
        )
        img = Image.frombytes("I;16", (w, h), arr.astype("<u2").tobytes())
    elif mode == "P":
        img = Image.frombytes(
            "RGB", (w, h), rng.integers(0, 256, (h, w, 3), dtype=np.uint8).tobytes()
        ).quantize(16)
    else:
        bands = len(Image.new(mode, (1, 1)).getbands())
        arr = rng.integers(0, 256, (h, w, bands), dtype=np.uint8)
        if value is not None:
            arr[:] = value
        img = Image.frombytes(mode, (w, h), arr.tobytes())
    img.save(path)
    return path

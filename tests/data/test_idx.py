"""The IDX reader: good files (gzipped or not), and every way a file can be broken."""

from __future__ import annotations

import gzip
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from imgcls.data.idx import IDX_IMAGES, IDX_LABELS, read_idx
from imgcls.errors import DataError

from .data_files import write_idx_file


@pytest.mark.parametrize("gz", [True, False])
def test_reads_images_and_labels(tmp_path: Path, gz: bool) -> None:
    images = np.arange(3 * 4 * 5, dtype=np.uint8).reshape(3, 4, 5)
    labels = np.array([7, 0, 9], dtype=np.uint8)
    f_img = write_idx_file(tmp_path / "img", images, gz=gz)
    f_lab = write_idx_file(tmp_path / "lab", labels, gz=gz)
    np.testing.assert_array_equal(read_idx(f_img, IDX_IMAGES), images)
    np.testing.assert_array_equal(read_idx(f_lab, IDX_LABELS), labels)


def test_big_endian_types_plain_and_gzipped(tmp_path: Path) -> None:
    values = np.array([[1, -2], [300, -32768]], dtype=np.int16)
    raw = struct.pack(">HBB", 0, 0x0B, 2) + struct.pack(">2I", 2, 2) + values.astype(">i2").tobytes()
    (tmp_path / "a").write_bytes(raw)
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), values)
    (tmp_path / "b.gz").write_bytes(gzip.compress(raw))
    np.testing.assert_array_equal(read_idx(tmp_path / "b.gz"), values)


def _raw_images() -> bytes:
    return struct.pack(">I3I", IDX_IMAGES, 2, 3, 3) + bytes(18)


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (_raw_images()[:-1], "truncated"),  # one data byte missing
        (_raw_images() + b"\0", "longer than its header says"),
        (_raw_images()[:10], "truncated inside its header"),
        (b"\x00", "truncated"),
        (b"PK\x03\x04" + bytes(40), "not an IDX file"),  # a zip file, say
        (gzip.compress(_raw_images())[:-8], "not a valid gzip stream"),  # gzip cut short
    ],
)
def test_broken_files_raise_data_error_naming_the_file(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(content)
    with pytest.raises(DataError, match=needle) as err:
        read_idx(path, IDX_IMAGES)
    assert str(path) in str(err.value)
    assert "\n" not in str(err.value)


def test_wrong_magic_for_the_role(tmp_path: Path) -> None:
    path = write_idx_file(tmp_path / "labels", np.zeros(4, np.uint8), gz=False)
    with pytest.raises(DataError, match="0x00000801, expected 0x00000803"):
        read_idx(path, IDX_IMAGES)


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="cannot read IDX file"):
        read_idx(tmp_path / "missing")


def _gzip_bomb(path: Path, header: bytes, zeros: int) -> Path:
    """``header`` then ``zeros`` zero bytes, gzipped a chunk at a time (200 MB of zeros gzip to ~200 KB)."""
    with gzip.open(path, "wb", compresslevel=9) as f:
        f.write(header)
        chunk = bytes(1 << 20)
        for _ in range(zeros >> 20):
            f.write(chunk)
    return path


def test_gzip_bomb_is_refused_without_inflating_it(tmp_path: Path) -> None:
    header = struct.pack(">I3I", IDX_IMAGES, 10, 28, 28)  # declares 7,840 bytes of data
    path = _gzip_bomb(tmp_path / "train-images-idx3-ubyte.gz", header, 200 << 20)
    assert path.stat().st_size < 1 << 20
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="longer than its header says"):
            read_idx(path, IDX_IMAGES)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 16 << 20, f"{peak / 2**20:.0f} MiB allocated for a 7,840-byte dataset"


def test_gzip_file_too_small_for_its_header_is_refused_before_inflating(tmp_path: Path) -> None:
    header = struct.pack(">I3I", IDX_IMAGES, 4_000_000, 28, 28)  # 3 GB: more than 1 KB of gzip can hold
    path = tmp_path / "x.gz"
    path.write_bytes(gzip.compress(header + bytes(1000)))
    with pytest.raises(DataError, match=r"truncated: .*-byte gzip file cannot hold them"):
        read_idx(path, IDX_IMAGES)


@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("dims", [(65536,) * 4, (0xFFFFFFFF,) * 3])  # 2**64 bytes wraps to 0 in int64
def test_header_whose_sizes_overflow_is_one_line(tmp_path: Path, gz: bool, dims: tuple[int, ...]) -> None:
    raw = struct.pack(f">I{len(dims)}I", 0x00000800 | len(dims), *dims)
    path = tmp_path / "bad"
    path.write_bytes(gzip.compress(raw) if gz else raw)
    with pytest.raises(DataError, match=r"declares dims .* not a dataset") as err:
        read_idx(path)
    assert "\n" not in str(err.value) and str(path) in str(err.value)

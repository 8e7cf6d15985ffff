"""Reader for the IDX format of MNIST and Fashion-MNIST, gzipped or not.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``0x00 0x00 TYPE NDIM``,
then ``NDIM`` big-endian uint32 sizes, then the values in C order, big-endian. Image files are
``0x00000803`` (uint8, 3 dims: N, H, W) and label files ``0x00000801`` (uint8, 1 dim: N). Every way a file
can be wrong (not IDX, truncated, trailing bytes, a broken gzip stream) raises :class:`DataError` naming it.
"""

from __future__ import annotations

import contextlib
import gzip
import math
import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO

import numpy as np

from imgcls.errors import DataError

__all__ = ["IDX_IMAGES", "IDX_LABELS", "read_idx"]

IDX_IMAGES = 0x00000803
IDX_LABELS = 0x00000801

# Type byte -> big-endian numpy dtype.
_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


# gzip's deflate cannot expand data more than about 1032-fold: a file that would have to expand more to hold
# what its header declares is truncated, whatever the header says, and is refused before anything is inflated.
_MAX_DEFLATE_RATIO = 1100
# Above this a header is not a dataset but a mistake or an attack (MNIST's training images are 47 MB).
_MAX_DATA_BYTES = 1 << 36


def _open(path: Path) -> tuple[BinaryIO, int, bool]:
    """Open ``path``: (file, size on disk, gzipped?). gzip is recognised by its magic bytes, not by the name."""
    try:
        f = open(path, "rb")
        try:
            size = os.fstat(f.fileno()).st_size
            gz = f.read(2) == b"\x1f\x8b"
            f.seek(0)
        except BaseException:
            f.close()
            raise
    except OSError as e:
        raise DataError(f"cannot read IDX file '{path}': {e.strerror or e}") from None
    return f, size, gz


def _read(stream: BinaryIO, n: int, path: Path) -> bytes:
    """Up to ``n`` bytes from ``stream``; a broken gzip stream raises :class:`DataError`."""
    try:
        return stream.read(n)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"IDX file '{path}' is not a valid gzip stream ({e}): the file is corrupt or "
            "truncated; download it again"
        ) from None
    except MemoryError:  # a header declaring more than this machine can hold
        raise DataError(f"IDX file '{path}' declares more data than fits in memory") from None


def _read_header(stream: BinaryIO, path: Path, magic: int | None) -> tuple[np.dtype, tuple[int, ...]]:
    """Parse the magic number and sizes: (big-endian dtype, dims)."""
    start = _read(stream, 4, path)
    if len(start) < 4:
        raise DataError(f"IDX file '{path}' is truncated: {len(start)} bytes, not even a header")
    zero, type_code, ndim = struct.unpack(">HBB", start)
    if zero != 0 or type_code not in _DTYPES or ndim == 0:
        raise DataError(
            f"'{path}' is not an IDX file (magic number 0x{start.hex()}): "
            "expected 0x00000803 for images or 0x00000801 for labels"
        )
    found = (type_code << 8) | ndim
    if magic is not None and found != magic:
        raise DataError(
            f"IDX file '{path}' has magic number 0x{found:08x}, expected 0x{magic:08x}: "
            "images and labels files swapped?"
        )
    sizes = _read(stream, 4 * ndim, path)
    if len(sizes) < 4 * ndim:
        raise DataError(
            f"IDX file '{path}' is truncated inside its header ({4 + len(sizes)} of {4 + 4 * ndim} bytes)"
        )
    return np.dtype(_DTYPES[type_code]), struct.unpack(f">{ndim}I", sizes)


def _size_error(path: Path, dims: tuple[int, ...], expected: int, found: str) -> DataError:
    what = "longer than its header says" if found == "found more" else "truncated"
    return DataError(
        f"IDX file '{path}' is {what}: dims {dims} need {expected} bytes of data, {found}; download it again"
    )


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """Read an IDX file into a native-endian numpy array of its declared shape.

    ``magic`` (e.g. :data:`IDX_IMAGES`) additionally requires that exact type and number of dimensions.
    Memory stays within the size the header declares: a gzip stream is inflated only that far (plus one
    byte, to detect trailing data), so a small file that inflates to gigabytes is refused cheaply.
    """
    path = Path(path)
    raw, file_size, gz = _open(path)
    # A gzip stream is inflated as it is read, never whole.
    with raw, gzip.GzipFile(fileobj=raw, mode="rb") if gz else contextlib.nullcontext(raw) as stream:
        dtype, dims = _read_header(stream, path, magic)
        header = 4 + 4 * len(dims)
        expected = math.prod(dims) * dtype.itemsize  # a Python int: no overflow
        if expected > _MAX_DATA_BYTES:
            raise DataError(
                f"IDX file '{path}' declares dims {dims}, {expected:,} bytes of data: not a dataset "
                "(a damaged header?); download it again"
            )
        # Refused before reading: a buffer of the declared size is allocated up front.
        available = file_size * _MAX_DEFLATE_RATIO if gz else file_size - header
        if expected > available:
            found = f"the {file_size}-byte gzip file cannot hold them" if gz else f"found {available}"
            raise _size_error(path, dims, expected, found)
        data = _read(stream, expected, path)
        if len(data) < expected:
            raise _size_error(path, dims, expected, f"found {len(data)}")
        if _read(stream, 1, path):  # at the end of a gzip stream this also checks its CRC
            raise _size_error(path, dims, expected, "found more")
    array = np.frombuffer(data, dtype=dtype).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)

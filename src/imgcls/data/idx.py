"""Reader for the IDX format of MNIST and Fashion-MNIST, gzipped or not.

Format (LeCun et al., http://yann.lecun.com/exdb/mnist/): a 4-byte magic number ``0x00 0x00 TYPE NDIM``,
then ``NDIM`` big-endian uint32 sizes, then the values in C order, big-endian. Image files are
``0x00000803`` (uint8, 3 dims: N, H, W) and label files ``0x00000801`` (uint8, 1 dim: N). Every way a file
can be wrong (not IDX, truncated, trailing bytes, a broken gzip stream) raises :class:`DataError` naming it.
"""

from __future__ import annotations

import gzip
import struct
import zlib
from pathlib import Path

import numpy as np

from imgcls.errors import DataError

__all__ = ["IDX_IMAGES", "IDX_LABELS", "read_idx", "write_idx"]

IDX_IMAGES = 0x00000803
IDX_LABELS = 0x00000801

# Type byte -> big-endian numpy dtype.
_DTYPES: dict[int, str] = {0x08: "u1", 0x09: "i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read IDX file '{path}': {e.strerror or e}") from None
    if raw[:2] != b"\x1f\x8b":  # gzip is recognised by its magic bytes, not by the file name
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(
            f"IDX file '{path}' is not a valid gzip stream ({e}): the file is corrupt or "
            "truncated; download it again"
        ) from None


def read_idx(path: str | Path, magic: int | None = None) -> np.ndarray:
    """Read an IDX file into a native-endian numpy array of its declared shape.

    ``magic`` (e.g. :data:`IDX_IMAGES`) additionally requires that exact type and number of dimensions.
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4:
        raise DataError(f"IDX file '{path}' is truncated: {len(raw)} bytes, not even a header")
    zero, type_code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or type_code not in _DTYPES or ndim == 0:
        raise DataError(
            f"'{path}' is not an IDX file (magic number 0x{raw[:4].hex()}): "
            "expected 0x00000803 for images or 0x00000801 for labels"
        )
    found = (type_code << 8) | ndim
    if magic is not None and found != magic:
        raise DataError(
            f"IDX file '{path}' has magic number 0x{found:08x}, expected 0x{magic:08x}: "
            "images and labels files swapped?"
        )
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"IDX file '{path}' is truncated inside its header ({len(raw)} of {header} bytes)")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_DTYPES[type_code])
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    if len(raw) - header != expected:
        what = "truncated" if len(raw) - header < expected else "longer than its header says"
        raise DataError(
            f"IDX file '{path}' is {what}: dims {dims} need {expected} bytes of data, found "
            f"{len(raw) - header}; download it again"
        )
    array = np.frombuffer(raw, dtype=dtype, offset=header).reshape(dims)
    return array.astype(dtype.newbyteorder("="), copy=False)


def write_idx(path: str | Path, array: np.ndarray, compress: bool | None = None) -> None:
    """Write ``array`` as an IDX file, gzipped if ``compress`` (by default: if the name ends in ``.gz``)."""
    path = Path(path)
    array = np.ascontiguousarray(array)
    codes = {np.dtype(v).newbyteorder("="): k for k, v in _DTYPES.items()}
    code = codes.get(array.dtype.newbyteorder("="))
    if code is None:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    data = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    data += array.astype(np.dtype(_DTYPES[code]), copy=False).tobytes()
    if compress if compress is not None else path.suffix == ".gz":
        data = gzip.compress(data, mtime=0)
    path.write_bytes(data)

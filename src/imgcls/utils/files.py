"""Atomic file writes: a crash or kill mid-write never leaves a broken file behind.

A write goes to a hidden temporary file beside its target (``.NAME.<random>.tmp``), is fsynced and renamed
over the target. A process killed mid-write leaves that temporary behind; :func:`remove_stale_temporaries`
deletes them (the trainer calls it when a run starts or resumes, once it owns the run directory). Files are
created with mode ``0o666`` less the umask, as ``open()`` creates them.

JSON is written strictly: ``NaN`` and ``Infinity`` are not JSON (``json.loads`` in other languages rejects them),
so :func:`finite_json` turns every non-finite float into ``None`` (``null``) first; :func:`dumps_json` is the one
place both the files and the CLI's printed JSON go through.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import secrets
import stat
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_path",
    "atomic_write_json",
    "atomic_write_text",
    "dumps_json",
    "finite_json",
    "remove_stale_temporaries",
]

_TMP_SUFFIX = ".tmp"


def _create_temporary(path: Path) -> Path:
    """Create an empty, new ``.NAME.<random>.tmp`` beside ``path``, mode 0o666 less the umask."""
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}{_TMP_SUFFIX}")
        try:
            # Not tempfile.mkstemp: it creates files 0o600 whatever the umask.
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed over ``path``.

    The rename is atomic on POSIX file systems, so readers see the old file or the new one, never half of it.
    On an exception the temporary file is removed and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp_path = _create_temporary(path)
    try:
        mode = stat.S_IMODE(tmp_path.stat().st_mode)  # 0o666 less the umask, as the kernel created it
        yield tmp_path
        os.chmod(tmp_path, mode)  # some writers (safetensors) replace the file with a 0o600 one
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


def remove_stale_temporaries(directory: str | Path) -> int:
    """Delete the ``.NAME.*.tmp`` files that killed writes left in ``directory``; returns how many.

    Only call it on a directory no other process is writing to (a run directory this process has claimed).
    """
    removed = 0
    for entry in Path(directory).iterdir():
        name = entry.name
        if name.startswith(".") and name.endswith(_TMP_SUFFIX) and name.count(".") >= 3 and entry.is_file():
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed += 1
    return removed


def _write(path: str | Path, writer: Callable[[Path], None]) -> None:
    with atomic_path(path) as tmp:
        writer(tmp)


def atomic_write_text(path: str | Path, text: str) -> None:
    _write(path, lambda p: p.write_text(text))


def finite_json(obj: Any) -> Any:
    """A copy of ``obj`` (dicts, lists, tuples, scalars) with every NaN or infinite float replaced by ``None``."""
    if isinstance(obj, float):  # also numpy.float64, a float subclass
        return float(obj) if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {k: finite_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_json(v) for v in obj]
    return obj


def dumps_json(obj: Any, *, indent: int | None = 2, ensure_ascii: bool = True) -> str:
    """``obj`` as strict JSON text: non-finite floats become ``null`` (see :func:`finite_json`), never ``NaN``."""
    return json.dumps(
        finite_json(obj), indent=indent, sort_keys=False, allow_nan=False, ensure_ascii=ensure_ascii
    )


def atomic_write_json(path: str | Path, obj: Any) -> None:
    """Write ``obj`` as strict JSON (non-finite floats as ``null``) atomically."""
    atomic_write_text(path, dumps_json(obj) + "\n")

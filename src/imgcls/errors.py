"""Exceptions a user can cause.

Every error that follows from a user's input (an unknown name, a bad file, a shape that does not fit) is an
:class:`ImgclsError`. Its message is one line that names the problem and the fix; the CLI prints exactly that
line and exits non-zero, never a traceback.
"""

from __future__ import annotations

import difflib
import errno
import os
import re
from collections.abc import Iterable
from pathlib import Path


class ImgclsError(Exception):
    """Base class for errors caused by user input."""


class UnknownNameError(ImgclsError, KeyError):
    """An unknown model, dataset, optimizer, ... name."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataError(ImgclsError):
    """A dataset or file that is missing, corrupt or of the wrong kind."""


class CheckpointError(ImgclsError):
    """A checkpoint that cannot be read or does not match the model."""


class ConfigError(ImgclsError, ValueError):
    """A configuration value that is out of range or inconsistent."""


class ExportError(ImgclsError):
    """A model that cannot be exported, or whose exported form does not compute what the model computes."""


class StorageError(ImgclsError):
    """A file or folder that cannot be written or read: no space, a read-only disk, no permission."""


# The fix for each operating-system error a user (or their disk) can cause; {elsewhere} names the option to write
# elsewhere, where the caller knows it.
_NO_SPACE = "free some space or {elsewhere}"
_NO_ACCESS = "{elsewhere} or change its permissions"
_BAD_PATH = "check the path"
OS_ERROR_FIXES: dict[int, str] = {
    errno.ENOSPC: _NO_SPACE,
    errno.EDQUOT: _NO_SPACE,
    errno.EFBIG: _NO_SPACE,
    errno.EROFS: "{elsewhere}",
    errno.EACCES: _NO_ACCESS,
    errno.EPERM: _NO_ACCESS,
    errno.ENOENT: _BAD_PATH,
    errno.ENOTDIR: _BAD_PATH,
    errno.EISDIR: _BAD_PATH,
    errno.ENAMETOOLONG: _BAD_PATH,
    errno.ELOOP: _BAD_PATH,
    errno.EMFILE: "raise the open-file limit (ulimit -n)",
}


def os_errno(e: BaseException) -> int | None:
    """The errno of an operating-system error, also where a library wraps it (safetensors: "(os error 28)")."""
    if isinstance(e, OSError):
        return e.errno
    found = re.search(r"\(os error (\d+)\)", str(e))
    return int(found.group(1)) if found else None


def describe_os_error(
    e: BaseException, path: str | Path | None = None, elsewhere: str = "write elsewhere"
) -> str:
    """One line for an operating-system error: the path, what went wrong, and the fix.

    ``path`` names the place when the error does not (a failed ``write`` carries no file name). A hidden
    temporary file (``.name.XXXX.tmp``, see ``imgcls.utils.files``) is shown as its folder, the place the user
    chose. ``elsewhere`` is the fix that writes to another place, e.g. "pass another --out-dir".
    """
    code = os_errno(e)
    path = getattr(e, "filename", None) or path
    if path is not None and Path(path).name.startswith(".") and Path(path).name.endswith(".tmp"):
        path = Path(path).parent
    reason = getattr(e, "strerror", None) or (os.strerror(code) if code is not None else str(e))
    fix = OS_ERROR_FIXES.get(code, "check the path and the disk, then try again") if code is not None else ""
    where = f"cannot use '{path}'" if path is not None else "cannot read or write a file"
    return f"{where}: {reason}" + (f": {fix.format(elsewhere=elsewhere)}" if fix else "")


def unknown_name(kind: str, name: str, valid: Iterable[str], hint: str = "") -> UnknownNameError:
    """Build an :class:`UnknownNameError` that lists close matches (or all valid names when few)."""
    valid = sorted(valid)
    close = difflib.get_close_matches(name, valid, n=5, cutoff=0.5)
    if close:
        choices = f"did you mean {', '.join(close)}?"
    elif len(valid) <= 20:
        choices = f"valid: {', '.join(valid)}"
    else:
        choices = f"{len(valid)} are known"
    msg = f"unknown {kind} '{name}': {choices}"
    if hint:
        msg += f" ({hint})"
    return UnknownNameError(msg)

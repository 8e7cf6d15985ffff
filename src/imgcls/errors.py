"""Exceptions a user can cause.

Every error that follows from a user's input (an unknown name, a bad file, a shape that does not fit) is an
:class:`ImgclsError`. Its message is one line that names the problem and the fix; the CLI prints exactly that
line and exits non-zero, never a traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


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

"""What the classic classifiers accept, checked once for all of them: samples as an ``(N, D)`` matrix (images
flattened), labels as int64 class indices; NaN, infinities and non-integer labels refused in one line.
"""

from __future__ import annotations

from typing import Any

import torch

from imgcls.errors import DataError

__all__ = ["INT_DTYPES", "as_labels", "as_matrix"]

INT_DTYPES = (torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64)


def as_matrix(x: Any, what: str = "data") -> torch.Tensor:
    """``x`` (tensor or array, ``(N, D)`` or ``(N, C, H, W)``) as an ``(N, D)`` tensor; refuses NaN / inf."""
    t = torch.as_tensor(x)
    if t.dim() < 2:
        raise DataError(
            f"{what} must have one row per sample, (N, D) or (N, C, H, W); got shape {tuple(t.shape)}"
        )
    t = t.reshape(t.shape[0], -1)
    if t.dtype == torch.bool:
        t = t.to(torch.uint8)
    elif t.dtype in (torch.float16, torch.bfloat16):
        t = t.float()
    elif not (t.dtype.is_floating_point or t.dtype in INT_DTYPES):
        raise DataError(f"{what} must be numbers, got dtype {t.dtype}")
    # one sum finds any NaN / inf (they propagate); only then look for the rows
    if t.dtype.is_floating_point and t.numel() and not torch.isfinite(t.sum()):
        bad = ~torch.isfinite(t).all(1)
        if bad.any():
            row = int(bad.nonzero()[0, 0])
            raise DataError(
                f"{what} holds NaN or infinite values ({int(bad.sum())} rows, the first is row {row}): "
                "drop or impute them before fitting"
            )
    return t


def as_labels(y: Any, n: int, num_classes: int | None = None) -> tuple[torch.Tensor, int]:
    """``y`` as int64 ``(n,)`` labels in ``0..C-1`` and the class count ``C`` (``num_classes`` or max + 1)."""
    t = torch.as_tensor(y)
    if t.dim() != 1 or t.shape[0] != n:
        raise DataError(f"labels must be one per sample, shape ({n},); got {tuple(t.shape)}")
    if t.dtype.is_floating_point:
        if not bool((t == t.round()).all()):
            raise DataError("labels must be integer class indices 0..C-1")
    elif t.dtype not in INT_DTYPES:
        raise DataError(f"labels must be integer class indices, got dtype {t.dtype}")
    t = t.to(torch.int64)
    if n and int(t.min()) < 0:
        raise DataError(f"labels must be class indices >= 0, got {int(t.min())}")
    top = int(t.max()) + 1 if n else 0
    if num_classes is None:
        num_classes = top
    elif top > num_classes:
        raise DataError(f"label {top - 1} is outside 0..{num_classes - 1} (num_classes={num_classes})")
    return t, num_classes

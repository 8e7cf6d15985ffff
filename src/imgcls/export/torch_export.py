"""``torch.export`` of a trained run: a ``.pt2`` file that runs with PyTorch alone (``--format torch-export``).

The file holds the graph and the weights (``torch.export.save``) and, as the extra file ``imgcls.json``, the
same metadata the ONNX export stores (:func:`imgcls.export.onnx.run_metadata`: classes, size, mean, std and
the preprocessing recipe). A client needs no imgcls and no model code::

    import json, torch
    extra = {"imgcls.json": ""}
    program = torch.export.load("model.pt2", extra_files=extra)
    meta = json.loads(extra["imgcls.json"])
    logits = program.module()(x)   # x: float32 (B, C, H, W), normalised as meta["preprocessing"] says

``dtype`` ``bf16`` or ``fp16`` exports the model with its weights and arithmetic in that type (the input is
cast inside the graph); it is refused where this CPU has no fast path for it (:func:`check_dtype`), since
inference there would be slower than fp32, not faster. Such an export is checked against eager fp32 PyTorch
with a tolerance that fits the type (:data:`DTYPE_RTOL`).
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import torch
from torch import nn

from imgcls.errors import ConfigError, ExportError
from imgcls.export.onnx import (
    METADATA_KEY,
    RTOL,
    VERIFY_BATCHES,
    ExportResult,
    Parity,
    compare_logits,
    default_out,
    example_input,
    first_line,
    load_for_export,
    quiet_exporter,
    run_metadata,
)
from imgcls.train.checkpoint import LoadedRun
from imgcls.utils.files import atomic_path

__all__ = ["DTYPES", "DTYPE_RTOL", "EXTRA_FILE", "check_dtype", "export_model_torch", "export_torch"]

log = logging.getLogger(__name__)

EXTRA_FILE = f"{METADATA_KEY}.json"
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# bf16 keeps 8 bits of mantissa, fp16 11: a logit is good to about 2^-8 and 2^-11 of its size, and the
# errors of a deep network's layers add up; argmax must still agree where the two best logits are apart.
DTYPE_RTOL = {"fp32": RTOL, "bf16": 5e-2, "fp16": 1e-2}


def check_dtype(dtype: str) -> torch.dtype:
    """The torch dtype of ``fp32|bf16|fp16``; ConfigError where this CPU has no fast path for it.

    bf16 needs instructions for it (AVX-512 BF16, AMX or ARM bf16) that measure faster than fp32
    (:func:`imgcls.utils.hardware.fast_bf16`); fp16 needs AVX-512 FP16 or AMX-FP16 (x86) or ARM's fp16
    arithmetic, without which PyTorch converts every fp16 value to fp32 and back.
    """
    if dtype not in DTYPES:
        raise ConfigError(f"unknown dtype '{dtype}': use one of {', '.join(DTYPES)}")
    if dtype == "bf16":
        from imgcls.utils.hardware import cpu_info, fast_bf16

        if not fast_bf16():
            raise ConfigError(
                f"this CPU ({cpu_info().model}) has no fast bf16 arithmetic (AVX-512 BF16, AMX or ARM bf16): "
                "bf16 inference would be slower than fp32 here; use --dtype fp32"
            )
    elif dtype == "fp16":
        from imgcls.utils.hardware import cpu_info

        info = cpu_info()
        if not info.flags & {"avx512_fp16", "amx_fp16", "fphp", "asimdhp"}:
            raise ConfigError(
                f"this CPU ({info.model}) has no fp16 arithmetic (AVX-512 FP16, AMX-FP16 or ARM fp16): "
                "fp16 inference would be slower than fp32 here; use --dtype fp32 (or bf16 where supported)"
            )
    return DTYPES[dtype]


class _CastInput(nn.Module):
    """``model`` in ``dtype``: a float32 input is cast on the way in, the logits back to float32 on the way out."""

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.model = model.to(dtype)
        self.dtype = dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) float32 -> (B, K) float32
        return self.model(x.to(self.dtype)).float()


def export_model_torch(
    model: nn.Module,
    input_shape: tuple[int, int, int],
    path: str | Path,
    *,
    dynamic_batch: bool = True,
    metadata: dict | None = None,
    dtype: str = "fp32",
    reference: nn.Module | None = None,
    verify: bool = True,
) -> list[Parity]:
    """``torch.export`` ``model`` to a ``.pt2`` file, checked against ``reference`` (default ``model``) first."""
    reference = model if reference is None else reference
    model = model.eval()
    dynamic = ({0: torch.export.Dim("batch", min=1, max=65_536)},) if dynamic_batch else None
    example = example_input(input_shape, 2 if dynamic_batch else 1, False, seed=0)
    try:
        with quiet_exporter(), torch.no_grad():
            program = torch.export.export(model, (example,), dynamic_shapes=dynamic)
    except Exception as e:
        raise ExportError(
            f"torch.export cannot export this model ({first_line(e)}): try --no-dynamic-batch or --format onnx"
        ) from None
    extra = {EXTRA_FILE: json.dumps(metadata or {})}
    buffer = io.BytesIO()  # torch.export.save wants a name ending in .pt2; a temporary file's does not
    torch.export.save(program, buffer, extra_files=extra)
    data = buffer.getvalue()
    parity = verify_torch(data, reference, input_shape, dynamic_batch, DTYPE_RTOL[dtype]) if verify else []
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    log.info("wrote %s (%.1f MB)", path, path.stat().st_size / 1e6)
    return parity


def verify_torch(
    data: bytes, reference: nn.Module, input_shape: tuple[int, int, int], dynamic_batch: bool, rtol: float
) -> list[Parity]:
    """Load the saved program (the file's bytes) back; compare it with eager ``reference`` at batch 1, 3, 8."""
    loaded = torch.export.load(io.BytesIO(data)).module()
    out = []
    for i, b in enumerate(VERIFY_BATCHES if dynamic_batch else (1,)):
        x = example_input(input_shape, b, False, seed=100 + i)
        with torch.no_grad():
            p = compare_logits(loaded(x).float().numpy(), reference(x).float().numpy(), rtol)
        if not p.ok:
            raise ExportError(
                f"the torch.export program does not match eager PyTorch at batch {b}: max |logit difference| "
                f"{p.max_abs_diff:.3g} ({p.rel_diff:.3g} of the largest logit, allowed {rtol:g}), "
                f"{p.argmax_mismatches} different argmax"
            )
        out.append(p)
    return out


def export_torch(
    run: str | Path | LoadedRun,
    out: str | Path | None = None,
    *,
    dynamic_batch: bool = True,
    dtype: str = "fp32",
    which: str = "best",
    verify: bool = True,
) -> ExportResult:
    """Export a trained run with ``torch.export`` (default ``RUN/model.pt2``, ``RUN/model.bf16.pt2``, ...)."""
    torch_dtype = check_dtype(dtype)
    loaded = load_for_export(run, which)
    info = loaded.info
    reference = loaded.model.float().eval()
    model = reference if dtype == "fp32" else _CastInput(_copy(reference), torch_dtype).eval()
    meta = {**run_metadata(info, loaded.classes), "dtype": dtype}
    suffix = ".pt2" if dtype == "fp32" else f".{dtype}.pt2"
    path = Path(out) if out is not None else default_out(loaded, suffix)
    shape = (int(info["in_chans"]), int(info["image_size"]), int(info["image_size"]))
    parity = export_model_torch(
        model,
        shape,
        path,
        dynamic_batch=dynamic_batch,
        metadata=meta,
        dtype=dtype,
        reference=reference,
        verify=verify,
    )
    return ExportResult(path, "torch-export", meta, parity)


def _copy(model: nn.Module) -> nn.Module:
    import copy

    return copy.deepcopy(model)

"""Device and precision selection (``--device auto``, ``--amp auto``)."""

from __future__ import annotations

import contextlib
import logging

import torch

from imgcls.errors import ConfigError
from imgcls.utils.hardware import fast_bf16

__all__ = ["autocast", "resolve_amp", "resolve_device"]

log = logging.getLogger(__name__)


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA, then Apple MPS, then the CPU; an unavailable device is a ConfigError."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise ConfigError(f"unknown device '{name}': use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ConfigError(
            "device 'cuda' asked for, but PyTorch sees no CUDA GPU here: use --device cpu or auto"
        )
    if device.type == "mps" and not (
        getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()
    ):
        raise ConfigError("device 'mps' asked for, but it is not available: use --device cpu or auto")
    if device.type not in ("cpu", "cuda", "mps"):
        raise ConfigError(f"unsupported device '{name}': use auto, cpu, cuda or mps")
    return device


def resolve_amp(amp: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``amp`` (auto | off | bf16 | fp16) on ``device``; None means full fp32."""
    if amp == "off":
        return None
    if amp == "fp16":
        if device.type == "cpu":
            raise ConfigError("fp16 autocast is for GPUs: use --amp bf16 (or off) on the CPU")
        return torch.float16
    if amp == "bf16":
        return torch.bfloat16
    # auto
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    if device.type == "cpu" and fast_bf16():  # by capability, then a cached micro-benchmark
        return torch.bfloat16
    return None


def autocast(device: torch.device, dtype: torch.dtype | None) -> contextlib.AbstractContextManager:
    if dtype is None:
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=dtype)

"""Device and precision selection (``--device auto``, ``--amp auto``)."""

from __future__ import annotations

import contextlib
import logging

import torch

from imgcls.errors import ConfigError
from imgcls.utils.hardware import MIN_STEP_SPEEDUP, bf16_forward_speedup, fast_bf16

__all__ = ["autocast", "inference_amp", "resolve_amp", "resolve_device"]

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


def inference_amp(model: torch.nn.Module, device: torch.device, shape: tuple[int, ...]) -> torch.dtype | None:
    """The autocast dtype for evaluating or predicting with ``model`` on batches of ``shape``: ``--amp auto``'s,
    except that on a CPU with fast bf16 products, bf16 is kept only where this model's forward pass runs at least
    MIN_STEP_SPEEDUP times as fast in it (fast products do not make every network faster: depthwise
    convolutions, many small layers). Timed once per machine, model and batch shape (at most 128 images), on
    random input, and cached (:func:`imgcls.utils.hardware.bf16_forward_speedup`)."""
    amp = resolve_amp("auto", device)
    if amp != torch.bfloat16 or device.type != "cpu":
        return amp
    shape = (min(shape[0], 128), *shape[1:])
    size = sum(p.numel() for p in model.parameters())
    key = f"{type(model).__name__}|{size} parameters|{shape}"
    with torch.random.fork_rng(devices=[]):  # the caller's random stream is left as it was
        x = torch.randn(shape, device=device)

    def forward(bf16: bool) -> None:
        with torch.no_grad(), autocast(device, torch.bfloat16 if bf16 else None):
            model(x)

    was_training = model.training
    model.eval()
    try:
        speedup = bf16_forward_speedup(key, forward)
    finally:
        model.train(was_training)
    log.debug("inference of %s: %.2fx as fast in bf16 as in fp32 here", key, speedup)
    return amp if speedup >= MIN_STEP_SPEEDUP else None

"""What this machine's CPU is and what it is fast at: by capability first, by a short measurement where needed.

Our 2-core machines differ: an AMD Zen 3 has AVX2 and FMA only (fp32 matrix multiply about 85 GFLOP/s; bf16
is emulated and about 100x slower), a Zen 4 has AVX-512 with VNNI and BF16 (fp32 about 190, bf16 about
430 GFLOP/s). Most laptops are AVX2-only or ARM. A hardware-specific fast path is taken only where this
module says it is faster on the machine at hand:

- :func:`cpu_class` names the class from ``torch.backends.cpu.get_cpu_capability()`` and the CPU flags.
- :func:`fast_bf16` is False without bf16 instructions (AVX-512 BF16, AMX, or ARM's bf16); where they are
  present, a matrix multiply in bf16 and in fp32 is timed once (a few milliseconds) and bf16 must win by
  :data:`MIN_SPEEDUP`.
- :func:`bf16_step_speedup` times one model's training step both ways, for ``--amp auto`` where
  :func:`fast_bf16` holds: fast bf16 products do not make every network faster (depthwise convolutions and
  many small layers run slower in bf16 on an AVX-512 BF16 EPYC: EfficientNet's step 2.2x slower at 16 px).
- :func:`one_thread_step_speedup` likewise times a step on one thread against all of them, for a run whose
  thread count is left to imgcls: small batches run faster on one thread than on two.
- :func:`fast_int8` likewise for int8 products (``torch._int_mm``, the k-NN's pixel path): False without
  int8 dot-product instructions (AVX-512 VNNI, AVX-VNNI, AMX, ARM's i8mm); where they are present, timed
  against fp32.

Measured verdicts are cached per machine (CPU model, flags, torch version, threads) in ``$IMGCLS_CACHE`` or
``~/.cache/imgcls``, ``wisdom.json``, like FFTW's wisdom, so later runs do not measure again.

Every choice is logged at debug level (``imgcls -v``) and :func:`machine_report` puts it in benchmark reports.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imgcls.utils.files import atomic_write_text

__all__ = [
    "MIN_SPEEDUP",
    "MIN_STEP_SPEEDUP",
    "bf16_forward_speedup",
    "bf16_step_speedup",
    "CpuInfo",
    "cpu_class",
    "cpu_info",
    "describe",
    "fast_bf16",
    "fast_int8",
    "machine_report",
    "matmul_throughput",
    "one_thread_step_speedup",
]

log = logging.getLogger(__name__)

MIN_SPEEDUP = 1.3  # a fast path also pays casts and other work around its products: it must win clearly
MIN_STEP_SPEEDUP = 1.1  # a whole training step, casts included, timed: a clear win over timing noise


@dataclass(frozen=True)
class CpuInfo:
    model: str  # e.g. "AMD EPYC 7B13"
    capability: str  # torch's dispatch level: DEFAULT, AVX2, AVX512, ZVECTOR, ...
    flags: frozenset[str]
    cores: int
    arch: str  # platform.machine(): x86_64, aarch64, arm64


@functools.lru_cache(maxsize=1)
def cpu_info() -> CpuInfo:
    fields: dict[str, str] = {}
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                fields.setdefault(key.strip(), value.strip())  # the first processor's
    except OSError:  # not Linux: the capability alone decides
        pass
    model = fields.get("model name") or fields.get("Model") or platform.processor() or "unknown CPU"
    flags = set((fields.get("flags") or fields.get("Features") or "").split())  # x86 flags, ARM Features
    return CpuInfo(
        model=model,
        capability=torch.backends.cpu.get_cpu_capability(),
        flags=frozenset(flags),
        cores=os.cpu_count() or 1,
        arch=platform.machine(),
    )


def cpu_class(info: CpuInfo | None = None) -> str:
    """The class speed claims are stated for: AMX, AVX512_BF16, AVX512, AVX2, NEON or DEFAULT."""
    info = info or cpu_info()
    if info.arch in ("aarch64", "arm64"):
        return "NEON"
    if info.capability.startswith("AVX512"):
        if "amx_bf16" in info.flags:
            return "AMX"
        return "AVX512_BF16" if "avx512_bf16" in info.flags else "AVX512"
    return "AVX2" if info.capability.startswith("AVX2") else "DEFAULT"


def _has_bf16_instructions(info: CpuInfo) -> bool:
    if info.arch in ("aarch64", "arm64"):
        return "bf16" in info.flags  # FEAT_BF16
    return info.capability.startswith("AVX512") and bool({"avx512_bf16", "amx_bf16"} & info.flags)


def _has_int8_instructions(info: CpuInfo) -> bool:
    if info.arch in ("aarch64", "arm64"):
        return "i8mm" in info.flags
    return bool({"avx512_vnni", "avx_vnni", "amx_int8"} & info.flags)


def _cache_path() -> Path:
    root = os.environ.get("IMGCLS_CACHE") or Path.home() / ".cache" / "imgcls"
    return Path(root) / "wisdom.json"


def _machine_key(info: CpuInfo) -> str:
    return f"{info.model}|{info.capability}|{len(info.flags)}|torch {torch.__version__}|{torch.get_num_threads()}t"


def _read_wisdom() -> dict[str, dict[str, Any]]:
    """The cache, or what of it is well-formed (a damaged or oversized file is measured again)."""
    path = _cache_path()
    try:
        if path.stat().st_size > 1 << 20:
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict)} if isinstance(data, dict) else {}


def _write_wisdom(data: dict[str, Any]) -> None:
    path = _cache_path()
    try:  # a cache: losing it only costs a re-measurement
        atomic_write_text(path, json.dumps(data, indent=1, sort_keys=True))
    except OSError as e:
        log.debug("cannot write %s (%s): the measurement will be repeated next time", path, e)


def _seconds(fn: Callable[[], object]) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def _matmul_seconds(dtype: torch.dtype, size: int = 512, repeats: int = 3) -> float:
    """Best time of a ``size`` square matrix multiply in ``dtype`` (a few milliseconds in all)."""
    if dtype == torch.int8:  # torch._int_mm: int8 x int8 -> int32
        a = torch.randint(-128, 128, (size, size), dtype=torch.int8)
        b = torch.randint(-128, 128, (size, size), dtype=torch.int8)
        mm = torch._int_mm
    else:
        a, b, mm = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype), torch.mm
    mm(a, b)  # warm up: thread pool, kernel choice
    return min(_seconds(lambda: mm(a, b)) for _ in range(repeats))


def _measure_speedup(dtype: torch.dtype) -> float:
    """How many times faster a matrix multiply in ``dtype`` runs than in float32, here."""
    return _matmul_seconds(torch.float32) / _matmul_seconds(dtype)


def _cached_speedup(field: str, measure: Callable[[], float]) -> tuple[float, str]:
    """The speed-up stored under ``field`` for this machine in the wisdom file, else ``measure()``'s, stored
    there; with where it came from. A value that is not a positive number is measured again."""
    machine = _machine_key(cpu_info())
    speedup = _read_wisdom().get(machine, {}).get(field)
    if isinstance(speedup, (int, float)) and not isinstance(speedup, bool) and speedup > 0:
        return float(speedup), f"cached in {_cache_path()}"
    speedup = measure()
    wisdom = _read_wisdom()  # re-read: another process may have stored its own verdicts meanwhile
    wisdom.setdefault(machine, {})[field] = speedup
    _write_wisdom(wisdom)
    return speedup, "measured"


def _fast(name: str, dtype: torch.dtype, has_instructions: Callable[[CpuInfo], bool]) -> bool:
    """The verdict for one fast path: by the flags, then by a cached measurement (module docstring)."""
    info = cpu_info()
    if not has_instructions(info):
        log.debug("%s: off (%s has no %s instructions)", name, cpu_class(info), name)
        return False
    speedup, source = _cached_speedup(f"{name}_speedup", lambda: _measure_speedup(dtype))
    verdict = speedup >= MIN_SPEEDUP
    log.debug("%s: %s (matrix multiply %.2fx fp32, %s)", name, "on" if verdict else "off", speedup, source)
    return verdict


@functools.lru_cache(maxsize=1)
def fast_bf16() -> bool:
    """True where bf16 autocast makes this CPU's matrix products clearly faster than fp32 (module docstring)."""
    return _fast("bf16", torch.bfloat16, _has_bf16_instructions)


def _step_speedup(field: str, step: Callable[[bool], None]) -> float:
    """How many times faster ``step(True)`` (a training step or a forward pass in the alternative form) runs
    than ``step(False)`` (the same step as it is), cached under ``field`` in the wisdom file.

    Each form is warmed up once (kernel choice), then timed 5 times (3 where a step takes over a quarter of
    a second, once where it takes over a second), the two forms interleaved so that other work on the
    machine slows both alike; the best times are compared.
    """

    def measure() -> float:
        warm = _seconds(lambda: step(False))  # the warm-up runs; their times only size the repeats
        step(True)
        repeats = 5 if warm < 0.25 else 3 if warm < 1.0 else 1
        base, alt = [], []
        for _ in range(repeats):
            base.append(_seconds(lambda: step(False)))
            alt.append(_seconds(lambda: step(True)))
        return min(base) / min(alt)

    speedup, source = _cached_speedup(field, measure)
    log.debug("%s: %.2fx (%s)", field, speedup, source)
    return speedup


def bf16_step_speedup(key: str, step: Callable[[bool], None]) -> float:
    """How many times faster ``step(True)`` (one training step under bf16 autocast) runs than ``step(False)``
    (the same step in fp32) on this machine; ``key`` names the step (model, batch shape, memory format).
    Timed as :func:`_step_speedup` says and cached per machine and ``key`` with the other verdicts.

    Measured on an AVX-512 BF16 EPYC (2 threads): EfficientNet-B0 at half width and depth, 16 px, 0.4-0.8x;
    cifar_resnet20 at 16 px 0.9x at batch 32 and 1.1-1.2x at batch 128; quicknet_s 1.2-1.4x.
    """
    return _step_speedup(f"bf16_step|{key}", step)


def bf16_forward_speedup(key: str, step: Callable[[bool], None]) -> float:
    """As :func:`bf16_step_speedup`, for a forward pass without gradients (evaluation, prediction): ``step(True)``
    runs it under bf16 autocast, ``step(False)`` in fp32."""
    return _step_speedup(f"bf16_forward|{key}", step)


def one_thread_step_speedup(key: str, step: Callable[[bool], None]) -> float:
    """How many times faster ``step(True)`` (one training step on a single thread) runs than ``step(False)``
    (the same step on all of torch's threads) here; ``key`` names the step. Timed and cached as
    :func:`bf16_step_speedup` is (the machine's key includes the thread count).

    Small steps lose to threading: each operator's work is split and the threads meet at a barrier, where
    passive OpenMP waiting (which ``import imgcls`` sets) puts them to sleep and wakes them. On an AVX-512
    BF16 EPYC (2 cores) quicknet_s at batch 32, 28 px, trained a 2,000-image folder in 26 s on one thread
    and 43 s on two; at batch 512 two threads win.
    """
    return _step_speedup(f"one_thread_step|{key}", step)


@functools.lru_cache(maxsize=1)
def fast_int8() -> bool:
    """True where int8 products (``torch._int_mm``) are clearly faster than fp32 ones here (module docstring)."""
    return _fast("int8", torch.int8, _has_int8_instructions)


def matmul_throughput(
    dtype: torch.dtype = torch.float32, size: int = 1024, seconds: float = 1.0, device: str = "cpu"
) -> float:
    """Measured FLOP/s of a square ``size`` matrix multiply in ``dtype`` (best of repeated runs over ``seconds``)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    for _ in range(3):  # warm up (thread pool, kernel selection)
        a @ b
    best = 0.0
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        t = time.perf_counter()
        for _ in range(4):
            a @ b
        if device != "cpu":
            torch.cuda.synchronize()
        best = max(best, 4 * 2 * size**3 / (time.perf_counter() - t))
    return best


def machine_report(seconds: float = 2.0) -> dict[str, Any]:
    """What a benchmark report states about its machine, with matmul throughput measured now (GFLOP/s)."""
    info = cpu_info()
    fp32 = matmul_throughput(torch.float32, size=1024, seconds=seconds) / 1e9
    # emulated bf16 runs at about 1 GFLOP/s: a smaller product keeps its measurement short
    size = 1024 if _has_bf16_instructions(info) else 256
    bf16 = matmul_throughput(torch.bfloat16, size=size, seconds=seconds / 2) / 1e9
    return {
        "cpu": info.model,
        "class": cpu_class(info),
        "capability": info.capability,
        "cores": info.cores,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "fp32_gflops": round(fp32, 1),
        "bf16_gflops": round(bf16, 1),
        "bf16_autocast": fast_bf16(),
        "int8_products": fast_int8(),
        "load_average": os.getloadavg() if hasattr(os, "getloadavg") else None,
    }


def describe(report: dict[str, Any]) -> str:
    """One line for a report's header."""
    return (
        f"{report['cpu']} ({report['class']}, torch capability {report['capability']}), {report['cores']} cores, "
        f"torch {report['torch']} with {report['threads']} threads; matrix multiply fp32 "
        f"{report['fp32_gflops']:.0f} GFLOP/s, bf16 {report['bf16_gflops']:.0f} GFLOP/s; bf16 autocast "
        f"{'on' if report['bf16_autocast'] else 'off'}, int8 products {'on' if report['int8_products'] else 'off'}"
    )

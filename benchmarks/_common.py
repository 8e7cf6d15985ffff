"""Shared by the benchmark scripts: hardware description and summary statistics."""

from __future__ import annotations

import os
import platform
import statistics

import torch


def hardware() -> str:
    cpu = platform.processor() or "unknown CPU"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return (
        f"{cpu}, {os.cpu_count()} cores, torch {torch.__version__} "
        f"({torch.get_num_threads()} threads, {torch.backends.cpu.get_cpu_capability()})"
    )


def spread(values: list[float]) -> str:
    """'mean ± std (min-max, n=N)'."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {sd:.2f} ({min(values):.2f}-{max(values):.2f}, n={len(values)})"

"""Shared by the benchmark scripts: hardware description and summary statistics."""

from __future__ import annotations

import statistics

from imgcls.utils.hardware import describe, machine_report


def hardware() -> str:
    """The machine in one line: CPU model and class, cores, torch threads, fp32 and bf16 matmul measured now."""
    return describe(machine_report())


def spread(values: list[float]) -> str:
    """'mean ± std (min-max, n=N)'."""
    if not values:
        return "-"
    mean = statistics.fmean(values)
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return f"{mean:.2f} ± {sd:.2f} ({min(values):.2f}-{max(values):.2f}, n={len(values)})"

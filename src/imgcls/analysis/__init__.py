"""Understanding a model: parameter and FLOP counts (receptive fields and visualisation come later)."""

from imgcls.analysis.complexity import count_flops, matmul_throughput

__all__ = ["count_flops", "matmul_throughput"]

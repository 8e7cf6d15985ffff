"""Understanding a model in numbers: parameters, multiply-adds and FLOPs, activations, receptive fields.

``summarize(model, input_size)`` gives the layer-by-layer table (``imgcls summary``); ``count_flops`` the
total of one pass, forward or forward and backward (the benchmarks use it).
"""

from imgcls.analysis.complexity import count_flops, matmul_throughput
from imgcls.analysis.receptive_field import Field, gradient_field
from imgcls.analysis.summary import Row, Summary, count_macs, summarize, summarize_model

__all__ = [
    "Field",
    "Row",
    "Summary",
    "count_flops",
    "count_macs",
    "gradient_field",
    "matmul_throughput",
    "summarize",
    "summarize_model",
]

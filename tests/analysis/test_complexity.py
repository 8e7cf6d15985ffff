from __future__ import annotations

import torch
from torch import nn

from imgcls.analysis import count_flops, matmul_throughput


def test_count_flops_of_known_layers() -> None:
    conv = nn.Conv2d(3, 8, 3, padding=1, bias=False)  # 8*3*3*3 MACs per output pixel, 16*16 pixels
    assert count_flops(conv, (3, 16, 16)) == 2 * 8 * 27 * 256
    lin = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    assert count_flops(lin, (3, 2, 2), batch_size=4) == 2 * 4 * 12 * 5
    # backward: each layer's weight gradient costs its forward again, and every layer but the first also
    # passes a gradient to its input (the image needs none)
    two = nn.Sequential(nn.Flatten(), nn.Linear(12, 5), nn.Linear(5, 3))
    fwd1, fwd2 = 2 * 4 * 12 * 5, 2 * 4 * 5 * 3
    assert count_flops(two, (3, 2, 2), batch_size=4, backward=True) == (fwd1 + fwd2) + fwd1 + 2 * fwd2


def test_count_flops_on_meta_device() -> None:
    with torch.device("meta"):
        m = nn.Conv2d(3, 64, 7, stride=2, padding=3)
    assert count_flops(m, (3, 224, 224)) == 2 * 64 * 3 * 49 * 112 * 112


def test_matmul_throughput_is_positive() -> None:
    assert matmul_throughput(size=64, seconds=0.05) > 1e6

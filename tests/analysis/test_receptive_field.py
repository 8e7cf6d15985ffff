"""Receptive fields: the recurrence's figures, and the same fields measured by input gradients.

A field depends on kernels, strides, padding and dilation, not on widths: the measured VGG-16 and ResNet-18
are their registry configs with 4 channels per layer, the same geometry at a fraction of the cost.
"""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from imgcls.analysis import gradient_field, summarize
from imgcls.models import create_model, get_model_spec


def _narrow(name: str) -> nn.Module:
    cfg = get_model_spec(name).kwargs["cfg"]
    return create_model(name, cfg=dataclasses.replace(cfg, widths=(4,) * len(cfg.widths)))


def _dilated_stack() -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(1, 2, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(2, 2, 3, padding=2, dilation=2),
        nn.ReLU(),
        nn.Conv2d(2, 2, 3, padding=4, dilation=4),
        nn.MaxPool2d(2),
        nn.Conv2d(2, 2, 3, stride=2, dilation=3),
    )


def test_vgg16_pool5_has_field_212_and_jump_32() -> None:
    with torch.device("meta"):
        model = create_model("vgg16")
    pool5 = summarize(model, (3, 224, 224), depth=2).row("features.30")
    assert pool5.field == (212, 212) and pool5.jump == (32, 32) and pool5.output_shape == (1, 512, 7, 7)


def test_dilated_stack_follows_the_recurrence() -> None:
    s = summarize(_dilated_stack(), (1, 64, 64))
    # r: 3, + 2*2 = 7, + 2*4 = 15, pool (k 2, j 1): 16, dilated by 3 at jump 2: + 2*3*2 = 28
    assert [s.row(n).field[0] for n in ("0", "2", "4", "5", "6")] == [3, 7, 15, 16, 28]
    assert [s.row(n).jump[0] for n in ("0", "2", "4", "5", "6")] == [1, 1, 1, 2, 4]


@pytest.mark.parametrize(
    ("name", "layers", "size"),
    [
        ("vgg16", ["features.23", "features.30"], 224),
        ("resnet18", ["layer2", "layer3", "layer4"], 224),
        ("googlenet", ["inception3b", "inception4a"], 160),
        ("dilated", ["4", "6"], 64),
    ],
)
def test_measured_field_equals_computed(name: str, layers: list[str], size: int) -> None:
    model = (
        _dilated_stack()
        if name == "dilated"
        else create_model(name)
        if name == "googlenet"
        else _narrow(name)
    )
    chans = 1 if name == "dilated" else 3
    s = summarize(model, (chans, size, size), depth=2)
    for layer in layers:
        row = s.row(layer)
        unit, rows, cols = gradient_field(model, (chans, size, size), layer)
        for axis, (i, measured) in enumerate(zip(unit, (rows, cols))):
            lo = row.start[axis] - (row.field[axis] - 1) / 2 + i * row.jump[axis]
            hi = lo + row.field[axis] - 1
            assert measured == (max(lo, 0), min(hi, size - 1)), (layer, axis)
        if name != "resnet18" or layer != "layer4":  # layer4's field (435) is wider than the image
            assert rows[1] - rows[0] + 1 == row.field[0]

"""Helpers the model tests share: torchvision's state_dict layouts, our layouts, and multiply-add counts.

torchvision's layouts live in ``shared/reference/torchvision_keys`` beside the repository (not in it). A test
that needs one skips, saying so, where that folder is absent, and fails instead when the ``CI`` environment
variable is set: CI must check every layout.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from imgcls.analysis import count_flops
from imgcls.models import create_model, get_model_spec

KEYS_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "torchvision_keys"

Layout = list[tuple[str, list[int]]]


def torchvision_layout(name: str) -> Layout:
    """torchvision's ``state_dict`` of model ``name`` as (key, shape) pairs, in order (KEYS_DIR/README.md)."""
    path = KEYS_DIR / f"{name}.txt"
    if not path.is_file():
        reason = f"torchvision key list {path} is absent: ../shared/reference is not checked out beside the repository"
        if os.environ.get("CI"):
            pytest.fail(f"{reason} (CI is set: this test must run there, not skip)")
        pytest.skip(reason)
    rows = [line.split(" ", 1) for line in path.read_text().splitlines() if line.strip()]
    return [(key, json.loads(shape)) for key, shape in rows]


def layout(model: nn.Module) -> Layout:
    """Our model's ``state_dict`` as (key, shape) pairs, in order."""
    return [(key, list(value.shape)) for key, value in model.state_dict().items()]


def gmacs(name: str, **kwargs: Any) -> float:
    """Multiply-adds (G) of registered ``name`` at its native input size, counted on the meta device."""
    spec = get_model_spec(name)
    with torch.device("meta"):
        model = create_model(name, **kwargs).eval()
    return count_flops(model, spec.input_size) / 2e9  # a multiply-add is two FLOPs

"""QuickNet: the presets' network; stem stride, downsampling forms and config overrides."""

from __future__ import annotations

import pytest
import torch

from imgcls.analysis import count_flops
from imgcls.errors import ConfigError
from imgcls.models import create_model


def _shapes(model: torch.nn.Module, x: torch.Tensor) -> list[tuple[int, ...]]:
    """Output shape of the stem and of every stage."""
    out, shapes = model.stem(x), []
    shapes.append(tuple(out.shape))
    for stage in model.stages:
        out = stage(out)
        shapes.append(tuple(out.shape))
    return shapes


def test_stride2_stem_keeps_parameters_and_final_size_and_saves_work() -> None:
    x = torch.zeros(2, 1, 28, 28)
    fast = create_model("quicknet_s", num_classes=10, in_chans=1).eval()  # stride-2 stem
    full = create_model("quicknet_s", num_classes=10, in_chans=1, stem_stride=1).eval()
    assert fast.cfg.stem_stride == 2 and full.cfg.stem_stride == 1
    # The stem halves 28 -> 14 and the first stage keeps it; the full-resolution stem's first stage halves.
    assert _shapes(fast, x) == [(2, 24, 14, 14), (2, 32, 14, 14), (2, 64, 7, 7), (2, 128, 4, 4)]
    assert _shapes(full, x) == [(2, 24, 28, 28), (2, 32, 14, 14), (2, 64, 7, 7), (2, 128, 4, 4)]
    count = sum(p.numel() for p in fast.parameters())
    assert count == sum(p.numel() for p in full.parameters()) == 295_048  # regression pin (our own design)
    assert count_flops(fast, (1, 28, 28)) < count_flops(full, (1, 28, 28))


@pytest.mark.parametrize("downsample", ["pool", "stride"])
@pytest.mark.parametrize("stem_stride", [1, 2])
def test_every_form_ends_at_the_same_size(downsample: str, stem_stride: int) -> None:
    model = create_model(
        "quicknet_m", num_classes=7, in_chans=3, downsample=downsample, stem_stride=stem_stride, stem_kernel=4
    ).eval()
    x = torch.randn(2, 3, 32, 32)
    feats = model.forward_features(x)
    assert feats.shape == (2, 192, 4, 4)
    assert torch.allclose(model.forward_head(feats), model(x))
    assert model(x).shape == (2, 7)


def test_unknown_field_names_the_valid_ones() -> None:
    with pytest.raises(ConfigError, match="stem_stride"):
        create_model("quicknet_s", num_classes=10, in_chans=1, stem_strid=2)

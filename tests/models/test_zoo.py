"""The registry-wide contract test: every registered model, one parametrized test per property.

Facts a test needs (reference parameter count and multiply-adds, smallest input, tolerances) live in each
variant's ModelSpec, never in if/else chains here (STYLE.md rule 13).
"""

from __future__ import annotations

import pytest
import torch

from imgcls.analysis import count_flops
from imgcls.models import create_model, get_model_spec, list_models
from imgcls.models.registry import AuxOutputs, spec_param_count

ALL_MODELS = list_models()
WITH_MACS = [n for n in ALL_MODELS if get_model_spec(n).gmacs is not None]


def _logits(out: torch.Tensor | AuxOutputs) -> torch.Tensor:
    return out.logits if isinstance(out, AuxOutputs) else out


@pytest.mark.parametrize("name", ALL_MODELS)
def test_parameter_count_matches_reference(name: str) -> None:
    spec = get_model_spec(name)
    assert spec.num_params is not None, f"{name} has no reference parameter count"
    assert spec.source, f"{name} does not say where its reference figure comes from"
    assert spec_param_count(spec) == spec.num_params


@pytest.mark.parametrize("name", ALL_MODELS)
def test_forward_backward_and_contract(name: str) -> None:
    spec = get_model_spec(name)
    torch.manual_seed(0)
    C, H, W = spec.smallest_input
    model = create_model(name, num_classes=7, in_chans=C, **spec.test_kwargs)
    x = torch.randn(2, C, H, W)

    model.train()
    out = model(x)
    logits = _logits(out)
    assert logits.shape == (2, 7)
    loss = logits.logsumexp(-1).mean()
    if isinstance(out, AuxOutputs):
        loss = loss + sum(a.logsumexp(-1).mean() for a in out.aux)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None and torch.isfinite(g).all() for g in grads), "missing or non-finite gradients"

    model.eval()
    with torch.no_grad():
        y = model(x)
        assert isinstance(y, torch.Tensor) and torch.isfinite(y).all()
        feats = model.forward_features(x)
        torch.testing.assert_close(model.forward_head(feats), y, rtol=spec.tolerance, atol=spec.tolerance)
        pre = model.forward_head(feats, pre_logits=True)
        assert pre.shape == (2, model.num_features)

    model.reset_classifier(3)
    with torch.no_grad():
        assert model(x).shape == (2, 3)
    # reset_classifier(0): a feature extractor whose output is the pre-logits features, num_features wide.
    model.reset_classifier(0)
    with torch.no_grad():
        features = model(x)
    assert features.shape == (2, model.num_features)
    torch.testing.assert_close(features, pre, rtol=spec.tolerance, atol=spec.tolerance)


@pytest.mark.parametrize("name", WITH_MACS)
def test_stored_multiply_adds_match_a_count(name: str) -> None:
    """The stored multiply-adds against a count at the native input size (imgcls.analysis, meta device)."""
    spec = get_model_spec(name)
    assert spec.gmacs_rtol <= 0.02, f"{name}: a multiply-add tolerance over 2 % checks little"
    with torch.device("meta"):
        model = create_model(name, **dict(spec.ref_kwargs)).eval()
    assert count_flops(model, spec.input_size) / 2e9 == pytest.approx(spec.gmacs, rel=spec.gmacs_rtol)


@pytest.mark.parametrize("name", ALL_MODELS)
@pytest.mark.parametrize("chans,size", [(1, 28), (3, 32)])
def test_small_image_form(name: str, chans: int, size: int) -> None:
    """Every model trains on Fashion-MNIST (1x28x28) and CIFAR (3x32x32): checked on the meta device (free)."""
    with torch.device("meta"):
        model = create_model(name, num_classes=10, in_chans=chans, image_size=size).eval()
        y = model(torch.empty(2, chans, size, size))
    assert y.shape == (2, 10)

"""Feature extraction through the model contract, probes on features, the linear / MLP pixel models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from imgcls.classic import extract_features, train_probe
from imgcls.data import DatasetInfo, InMemoryDataset, normalize
from imgcls.errors import DataError
from imgcls.models import create_model


@pytest.fixture
def tiny_set() -> InMemoryDataset:
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (37, 1, 8, 8), dtype=torch.uint8, generator=g)
    info = DatasetInfo("tiny", ("a", "b", "c"), 1, (8, 8), (0.5,), (0.25,))
    return InMemoryDataset(images, torch.arange(37) % 3, info)


def test_features_are_the_pre_logits_of_each_batch(tiny_set: InMemoryDataset) -> None:
    torch.manual_seed(0)
    model = create_model("mlp", num_classes=3, in_chans=1, input_size=(8, 8)).train()
    feats = extract_features(model, tiny_set, batch_size=10)
    assert feats.shape == (37, 100) and feats.dtype == torch.float32
    assert model.training  # the mode is restored
    with torch.no_grad():
        model.eval()
        x = normalize(tiny_set.images, (0.5,), (0.25,))
        expected = model.forward_head(model.forward_features(x), pre_logits=True)
    torch.testing.assert_close(feats, expected)
    other = extract_features(model, tiny_set, batch_size=64, mean=(0.1,), std=(1.0,))
    assert not torch.allclose(other, feats)  # the run's own normalisation is honoured
    with pytest.raises(DataError, match="3-channel"):
        extract_features(model, tiny_set, mean=(0.5, 0.5, 0.5), std=(1, 1, 1))


def test_a_linear_probe_separates_separable_features() -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 300)
    x = rng.normal(size=(300, 6)) + np.eye(3, 6)[y] * 4 + 100  # offset: the probe standardises
    probe = train_probe(x[:200], y[:200], 3, epochs=20, batch_size=50)
    with torch.no_grad():
        pred = probe(torch.as_tensor(x[200:], dtype=torch.float32)).argmax(1).numpy()
    assert (pred == y[200:]).mean() > 0.95


def test_linear_models_resample_other_sizes_and_read_vectors() -> None:
    model = create_model("linear_softmax", num_classes=4, in_chans=3, input_size=(6, 6))
    assert model.head.in_features == 3 * 6 * 6
    assert model(torch.randn(2, 3, 12, 12)).shape == (2, 4)  # area-resampled to 6x6
    x = torch.randn(2, 3, 6, 6)
    torch.testing.assert_close(model(x), model.head(x.flatten(1)))  # linear in the pixels, no resampling
    vec = create_model("mlp", num_classes=2, in_chans=50, input_size=(1, 1), hidden=(16, 8))
    assert vec(torch.randn(5, 50, 1, 1)).shape == (5, 2) and vec.num_features == 8

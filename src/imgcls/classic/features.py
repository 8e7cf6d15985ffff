"""Features of a network for the classic methods: ``forward_head(forward_features(x), pre_logits=True)``.

k-NN on a network's features evaluates the representation without training anything more (Wu, Xiong, Yu,
Lin, "Unsupervised Feature Learning via Non-Parametric Instance Discrimination", CVPR 2018,
arXiv:1805.01978); a linear classifier on frozen features is the linear probe (Kornblith, Shlens, Le, "Do
Better ImageNet Models Transfer Better?", CVPR 2019, arXiv:1805.08974). Both read the features every imgcls
model exposes through its contract: the pooled, pre-classifier vector.

A feature source is a trained run (a run directory or a weights file in one, through
:func:`imgcls.train.load_run`: the run's normalisation, image size and channels come with it) or a
registered model name (through :func:`imgcls.models.create_model`, with ``pretrained`` weights if given,
else a randomly initialised network: a baseline of its own, logged as such).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.data import InMemoryDataset, make_loader, normalize
from imgcls.errors import DataError

__all__ = ["FeatureSource", "extract_features", "load_feature_source"]

log = logging.getLogger(__name__)


@dataclass
class FeatureSource:
    """A network to take features from, with what its inputs need.

    ``mean`` / ``std`` (normalisation), ``image_size`` and ``channels`` are the run's when it comes from a
    run, None (the dataset's own) for a model name.
    """

    model: nn.Module
    name: str
    mean: tuple[float, ...] | None = None
    std: tuple[float, ...] | None = None
    image_size: int | None = None
    channels: int | None = None


def load_feature_source(
    spec: str,
    pretrained: str | None = None,
    *,
    num_classes: int = 10,
    in_chans: int = 1,
    image_size: int | None = None,
    device: str | torch.device = "cpu",
) -> FeatureSource:
    """A run directory / weights file (via ``load_run``) or a registered model name (via ``create_model``).

    ``num_classes``, ``in_chans`` and ``image_size`` build a named model for the data it will see; a
    ``pretrained`` checkpoint with another class count loads all but its classifier (features ignore it).
    """
    path = Path(spec)
    if path.exists():
        from imgcls.train import load_run

        if pretrained is not None:
            log.warning("--pretrained is ignored: the run '%s' brings its own weights", spec)
        run = load_run(path, device=device)
        info = run.info
        return FeatureSource(
            run.model,
            str(path),
            tuple(info["mean"]),
            tuple(info["std"]),
            info.get("image_size"),
            info.get("in_chans"),
        )
    from imgcls.models import create_model, load_pretrained
    from imgcls.models.pretrained import load_state_dict_file

    model = create_model(spec, num_classes=num_classes, in_chans=in_chans, image_size=image_size)
    if pretrained is None:
        log.warning("features of '%s' with random weights (give --pretrained PATH or a run directory)", spec)
    else:
        from imgcls.train.trainer import _classifier_keys

        state = load_state_dict_file(pretrained)
        own = model.state_dict()
        for key in _classifier_keys(spec, num_classes, in_chans, image_size or 28, {}):
            if key in state and state[key].shape != own[key].shape:
                state[key] = own[key]  # another class count: the classifier does not matter for features
        load_pretrained(model, state)
    return FeatureSource(model.to(device).eval(), spec)


@torch.no_grad()
def extract_features(
    model: nn.Module,
    dataset: InMemoryDataset | Any,
    batch_size: int = 256,
    device: str | torch.device = "cpu",
    *,
    mean: Sequence[float] | None = None,
    std: Sequence[float] | None = None,
) -> torch.Tensor:
    """Pre-logit features ``(N, D)`` float32 (on the CPU) of every image of ``dataset``, in order.

    Batched, without gradients, in eval mode (the model's mode is restored afterwards). Images are
    normalised with ``mean`` / ``std`` (default: the dataset's statistics), as in training.
    """
    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    device = torch.device(device)
    info = dataset.info
    mean = tuple(mean) if mean is not None else info.mean
    std = tuple(std) if std is not None else info.std
    if len(mean) != info.channels:
        raise DataError(
            f"the network expects {len(mean)}-channel images, the dataset has {info.channels}: load the "
            f"dataset with channels={len(mean)}"
        )
    was_training = model.training
    model.eval()
    parts = []
    try:
        if isinstance(dataset, InMemoryDataset):
            batches = (dataset.images[i : i + batch_size] for i in range(0, len(dataset), batch_size))
            for x in batches:
                parts.append(_features(model, normalize(x.to(device), mean, std)))
        else:  # a streaming folder: its loader decodes and normalises with the dataset's statistics
            m0, s0 = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (info.mean, info.std))
            m1, s1 = (torch.tensor(v, device=device).view(1, -1, 1, 1) for v in (mean, std))
            for x, _ in make_loader(dataset, batch_size, train=False, device=device):
                parts.append(_features(model, (x * s0 + m0 - m1) / s1))  # re-normalised: a no-op if equal
    finally:
        model.train(was_training)
    if not parts:
        raise DataError(f"dataset '{info.name}' holds no images")
    return torch.cat(parts)


def _features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    f = model.forward_head(model.forward_features(x), pre_logits=True)
    return f.flatten(1).float().cpu()

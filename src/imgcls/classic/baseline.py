"""One call per baseline: load the data (pixels or a network's features), fit, evaluate, time it.

What ``imgcls baseline METHOD`` runs. Image methods (``knn``, ``nb``, ``linear``, ``mlp``) give a
:class:`BaselineResult` with top-1 and top-5 accuracy on the test split; the rule learners (``find-s``,
``candidate-elimination``) read a CSV of categorical attributes and give a :class:`RuleResult`.

Reference accuracies on Fashion-MNIST pixels (Xiao et al. 2017, arXiv:1708.07747, Table 3): k-NN about
0.85-0.86, Gaussian naive Bayes 0.511, logistic regression 0.842; see benchmarks/classic_vs_sklearn.py.
Defaults of the trained methods: ``linear`` 10 epochs of SGD (lr 0.05), ``mlp`` 10 epochs (lr 0.1), batch
256, cosine schedule, plain cross-entropy (no label smoothing), no augmentation and no flip test-time
augmentation (a mirrored image is a different input to a pixel classifier: averaging over it cost the linear
model 18 points on Fashion-MNIST, 66% vs 84%); on features (a linear probe) 30 epochs of AdamW (lr 1e-2).
These are set here, not inherited from the ``fast`` preset's defaults, which are tuned for the ConvNet.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.classic.bayes import GaussianNB
from imgcls.classic.features import FeatureSource, extract_features, load_feature_source
from imgcls.classic.knn import DEFAULT_MEMORY_BUDGET_MB, KNeighborsClassifier, topk_accuracy
from imgcls.classic.probe import train_probe
from imgcls.classic.rules import CandidateElimination, FindS, read_attribute_csv
from imgcls.data import DatasetInfo, load_dataset, subset
from imgcls.errors import ConfigError, unknown_name
from imgcls.train import TrainConfig, train
from imgcls.utils.device import resolve_device

__all__ = [
    "IMAGE_METHODS",
    "METHODS",
    "RULE_METHODS",
    "BaselineResult",
    "RuleResult",
    "run_baseline",
    "run_rules",
]

log = logging.getLogger(__name__)

IMAGE_METHODS = ("knn", "nb", "linear", "mlp")
RULE_METHODS = ("find-s", "candidate-elimination")
METHODS = IMAGE_METHODS + RULE_METHODS
_MODEL_OF = {"linear": "linear_softmax", "mlp": "mlp"}
# (epochs, lr) of the trained methods on pixels (SGD) and on features (AdamW probe)
_PIXEL_DEFAULTS = {"linear": (10, 0.05), "mlp": (10, 0.1)}
_PROBE_DEFAULTS = (30, 1e-2)


@dataclass
class BaselineResult:
    """Test-split accuracy of one image baseline, with its sizes, settings and times (seconds)."""

    method: str
    dataset: str
    n_train: int
    n_test: int
    num_features: int
    top1: float
    top5: float | None
    fit_seconds: float
    predict_seconds: float
    total_seconds: float
    settings: dict[str, Any] = field(default_factory=dict)
    run_dir: str | None = None

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1

    @property
    def top5_error(self) -> float | None:
        return None if self.top5 is None else 1.0 - self.top5

    def to_dict(self) -> dict[str, Any]:
        return asdict(self) | {"top1_error": self.top1_error, "top5_error": self.top5_error}


@dataclass
class RuleResult:
    """What a rule learner found: Find-S's hypothesis, or Candidate-Elimination's S and G."""

    method: str
    source: str
    n_examples: int
    attributes: list[str]
    specific: list[str]  # Find-S: its one hypothesis
    general: list[str] | None = None  # Candidate-Elimination only
    covered_negatives: list[int] = field(default_factory=list)  # Find-S: 1-based example numbers
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def run_baseline(
    method: str,
    *,
    dataset: str = "fashion-mnist",
    data_dir: str | Path | None = None,
    features: str | None = None,
    pretrained: str | None = None,
    k: int = 5,
    metric: str = "l2",
    weights: str = "uniform",
    memory_budget_mb: float = DEFAULT_MEMORY_BUDGET_MB,
    device: str = "auto",
    epochs: int | None = None,
    lr: float | None = None,
    batch_size: int = 256,
    out_dir: str | Path = "runs",
    seed: int = 0,
    progress: bool = True,
    image_size: int | None = None,
    train_subset: float = 1.0,
    test_subset: float = 1.0,
) -> BaselineResult:
    """Fit ``method`` (knn, nb, linear, mlp) on ``dataset``'s training split, evaluate on its test split.

    ``features``: a run directory / weights file or a registered model name whose pre-logit features replace
    the pixels (``pretrained``: weights for a model name). ``linear`` / ``mlp`` on pixels train through
    :func:`imgcls.train.train` into ``out_dir``; on features they train a probe (:mod:`imgcls.classic.probe`).
    ``image_size``: resize the pixels (features: the network's own size). ``train_subset`` / ``test_subset``:
    a seeded, stratified share of each split, the same images a training run with these settings and
    ``seed`` (and no validation split) sees.
    """
    if method not in IMAGE_METHODS:
        hint = "find-s and candidate-elimination take a CSV: use run_rules" if method in RULE_METHODS else ""
        raise unknown_name("baseline method", method, IMAGE_METHODS, hint)
    t_start = time.perf_counter()
    dev = resolve_device(device)
    if features is None and pretrained is not None:
        raise ConfigError("--pretrained needs --features MODEL (the network whose weights they are)")
    source = None if features is None else _feature_source(features, pretrained, dataset, data_dir, dev)
    size, channels = (image_size, None) if source is None else (source.image_size, source.channels)
    train_set = load_dataset(dataset, "train", data_dir=data_dir, image_size=size, channels=channels)
    test_set = load_dataset(dataset, "test", data_dir=data_dir, image_size=size, channels=channels)
    train_set, test_set = subset(train_set, train_subset, seed), subset(test_set, test_subset, seed)
    info = train_set.info
    settings: dict[str, Any] = {"device": str(dev), "features": features or "pixels"}

    if method in ("linear", "mlp") and source is None:
        cfg = _pixel_config(
            method, info, dataset=dataset, data_dir=data_dir, image_size=image_size, train_subset=train_subset,
            test_subset=test_subset, epochs=epochs, lr=lr, batch_size=batch_size, out_dir=out_dir, seed=seed,
            device=str(dev), progress=progress,
        )  # fmt: skip
        return _train_pixels(cfg, method, train_set, test_set, settings=settings, t_start=t_start)

    x_train, x_test = (_inputs(source, ds, batch_size, dev) for ds in (train_set, test_set))
    y_train, y_test = train_set.labels, test_set.labels
    c = info.num_classes

    t_fit = time.perf_counter()
    if method == "knn":
        settings.update(k=k, metric=metric, weights=weights, memory_budget_mb=memory_budget_mb)
        knn = KNeighborsClassifier(
            k, metric=metric, weights=weights, memory_budget_mb=memory_budget_mb, device=dev
        )
        rank = knn.fit(x_train, y_train, num_classes=c).predict_topk
    elif method == "nb":
        if source is None:  # pixels in [0, 1], as the Fashion-MNIST benchmark fed scikit-learn
            x_train, x_test = x_train.float() / 255, x_test.float() / 255
        settings.update(var_smoothing=1e-9)
        rank = (
            GaussianNB(device=dev).fit(x_train, y_train, num_classes=c, class_names=info.classes).predict_topk
        )
    else:  # linear probe / MLP probe on features
        ep, rate = epochs or _PROBE_DEFAULTS[0], lr or _PROBE_DEFAULTS[1]
        settings.update(model=_MODEL_OF[method], epochs=ep, lr=rate, optimizer="adamw", batch_size=batch_size)
        probe = train_probe(
            x_train, y_train, c, _MODEL_OF[method], epochs=ep, lr=rate, batch_size=batch_size, seed=seed,
            device=dev,
        )  # fmt: skip
        rank = partial(_probe_topk, probe, device=dev)
    t_pred = time.perf_counter()
    ranked = rank(x_test, min(5, c))
    t_end = time.perf_counter()
    if method == "knn":
        settings["search"] = asdict(knn.stats)
    acc = topk_accuracy(ranked.cpu(), y_test, (1, 5))
    return BaselineResult(
        method=method,
        dataset=info.name,
        n_train=len(train_set),
        n_test=len(test_set),
        num_features=int(x_train.shape[1]),
        top1=acc[1],
        top5=acc.get(5),
        fit_seconds=t_pred - t_fit,
        predict_seconds=t_end - t_pred,
        total_seconds=t_end - t_start,
        settings=settings,
    )


def _feature_source(
    features: str, pretrained: str | None, dataset: str, data_dir: str | Path | None, device: torch.device
) -> FeatureSource:
    """The network whose pre-logit features replace the pixels, built for ``dataset``'s classes and images."""
    probe_set = load_dataset(dataset, "train", data_dir=data_dir)
    return load_feature_source(
        features,
        pretrained,
        num_classes=probe_set.info.num_classes,
        in_chans=probe_set.info.channels,
        image_size=probe_set.info.image_size[0],
        device=device,
    )


def _inputs(source: FeatureSource | None, ds: Any, batch_size: int, device: torch.device) -> torch.Tensor:
    """A split as the classifier sees it, (N, D): the network's features, or the uint8 pixels flattened."""
    if source is None:
        return ds.images.flatten(1)
    return extract_features(
        source.model, ds, batch_size=batch_size, device=device, mean=source.mean, std=source.std
    )


@torch.no_grad()
def _probe_topk(probe: nn.Module, x: torch.Tensor, topk: int, *, device: torch.device) -> torch.Tensor:
    """The ``topk`` classes a probe ranks first for each row of features ``x`` (N, D), 4,096 rows at a time."""
    return torch.cat([probe(rows.to(device)).topk(topk, dim=1).indices.cpu() for rows in x.split(4096)])


def _pixel_config(
    method: str,
    info: DatasetInfo,
    *,
    dataset: str,
    data_dir: str | Path | None,
    image_size: int | None,
    train_subset: float,
    test_subset: float,
    epochs: int | None,
    lr: float | None,
    batch_size: int,
    out_dir: str | Path,
    seed: int,
    device: str,
    progress: bool,
) -> TrainConfig:
    """The training run of ``linear`` / ``mlp`` on pixels: this module's recipe (see the module docstring),
    sized for the dataset's own images."""
    ep, rate = epochs or _PIXEL_DEFAULTS[method][0], lr or _PIXEL_DEFAULTS[method][1]
    return TrainConfig(
        model=_MODEL_OF[method],
        model_kwargs={"input_size": list(info.image_size)},
        dataset=dataset,
        data_dir=None if data_dir is None else str(data_dir),
        image_size=image_size,
        train_subset=train_subset,
        test_subset=test_subset,
        fallback_dataset=None,
        epochs=ep,
        batch_size=batch_size,
        optimizer="sgd",
        lr=rate,
        schedule="cosine",
        label_smoothing=0.0,
        augment="none",
        tta_flip=False,
        eval_every=max(1, int(ep)),
        val_fraction=0.0,  # a fixed recipe on every training image, as scikit-learn fits: nothing to choose
        out_dir=str(out_dir),
        device=device,
        seed=seed,
        progress=progress,
    )


def _train_pixels(
    cfg: TrainConfig, method: str, train_set: Any, test_set: Any, *, settings: dict[str, Any], t_start: float
) -> BaselineResult:
    """linear / mlp on pixels: the imgcls trainer runs ``cfg``; its test figures become the result."""
    info = train_set.info
    settings.update(
        model=cfg.model, epochs=cfg.epochs, lr=cfg.lr, optimizer=cfg.optimizer, batch_size=cfg.batch_size
    )
    result = train(cfg)
    c, h, w = info.channels, *info.image_size
    return BaselineResult(
        method=method,
        dataset=info.name,
        n_train=len(train_set),
        n_test=len(test_set),
        num_features=c * h * w,
        top1=result.test_acc,
        top5=result.test_top5 if info.num_classes >= 5 else None,
        fit_seconds=result.train_seconds,
        predict_seconds=result.total_seconds - result.train_seconds,
        total_seconds=time.perf_counter() - t_start,
        settings=settings,
        run_dir=str(result.run_dir),
    )


def run_rules(method: str, csv_path: str | Path, positive: str | None = None) -> RuleResult:
    """Run Find-S or Candidate-Elimination on a CSV of categorical examples (see :mod:`imgcls.classic.rules`)."""
    if method not in RULE_METHODS:
        raise unknown_name("rule learner", method, RULE_METHODS)
    t0 = time.perf_counter()
    table = read_attribute_csv(csv_path, positive)
    if method == "find-s":
        fs = FindS().fit(table)
        return RuleResult(
            method,
            str(csv_path),
            len(table),
            list(table.attributes),
            [str(fs.hypothesis)],
            covered_negatives=[i + 1 for i in fs.covered_negatives],
            seconds=time.perf_counter() - t0,
        )
    ce = CandidateElimination().fit(table)
    return RuleResult(
        method,
        str(csv_path),
        len(table),
        list(table.attributes),
        [str(h) for h in ce.specific],
        [str(h) for h in ce.general],
        seconds=time.perf_counter() - t0,
    )

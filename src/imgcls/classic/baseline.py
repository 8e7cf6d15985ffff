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
from pathlib import Path
from typing import Any

import torch

from imgcls.classic.bayes import GaussianNB
from imgcls.classic.features import extract_features, load_feature_source
from imgcls.classic.knn import DEFAULT_MEMORY_BUDGET_MB, KNeighborsClassifier, topk_accuracy
from imgcls.classic.probe import train_probe
from imgcls.classic.rules import CandidateElimination, FindS, read_attribute_csv
from imgcls.errors import ConfigError, unknown_name

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
    from imgcls.data import load_dataset, subset
    from imgcls.utils.device import resolve_device

    if method not in IMAGE_METHODS:
        hint = "find-s and candidate-elimination take a CSV: use run_rules" if method in RULE_METHODS else ""
        raise unknown_name("baseline method", method, IMAGE_METHODS, hint)
    t_start = time.perf_counter()
    dev = resolve_device(device)
    source = None
    size = channels = None
    if features is not None:
        probe_set = load_dataset(dataset, "train", data_dir=data_dir)
        source = load_feature_source(
            features,
            pretrained,
            num_classes=probe_set.info.num_classes,
            in_chans=probe_set.info.channels,
            image_size=probe_set.info.image_size[0],
            device=dev,
        )
        size, channels = source.image_size, source.channels
    elif pretrained is not None:
        raise ConfigError("--pretrained needs --features MODEL (the network whose weights they are)")
    if source is None:
        size = image_size
    train_set = load_dataset(dataset, "train", data_dir=data_dir, image_size=size, channels=channels)
    test_set = load_dataset(dataset, "test", data_dir=data_dir, image_size=size, channels=channels)
    train_set, test_set = subset(train_set, train_subset, seed), subset(test_set, test_subset, seed)
    info = train_set.info
    settings: dict[str, Any] = {"device": str(dev), "features": features or "pixels"}

    if method in ("linear", "mlp") and source is None:
        return _train_pixels(
            method, dataset, data_dir, train_set, test_set, epochs, lr, batch_size, out_dir, seed, str(dev),
            progress, settings, t_start, image_size=image_size, train_subset=train_subset,
            test_subset=test_subset,
        )  # fmt: skip

    if source is not None:
        kw = dict(batch_size=batch_size, device=dev, mean=source.mean, std=source.std)
        x_train = extract_features(source.model, train_set, **kw)
        x_test = extract_features(source.model, test_set, **kw)
    else:
        x_train, x_test = train_set.images.flatten(1), test_set.images.flatten(1)  # uint8 pixels
    y_train, y_test = train_set.labels, test_set.labels
    c = info.num_classes
    topk = min(5, c)

    t_fit = time.perf_counter()
    if method == "knn":
        settings.update(k=k, metric=metric, weights=weights, memory_budget_mb=memory_budget_mb)
        clf = KNeighborsClassifier(
            k, metric=metric, weights=weights, memory_budget_mb=memory_budget_mb, device=dev
        )
        clf.fit(x_train, y_train, num_classes=c)
        t_pred = time.perf_counter()
        ranked = clf.predict_topk(x_test, topk)
        settings["search"] = asdict(clf.stats)
    elif method == "nb":
        if source is None:  # pixels in [0, 1], as the Fashion-MNIST benchmark fed scikit-learn
            x_train, x_test = x_train.float() / 255, x_test.float() / 255
        settings.update(var_smoothing=1e-9)
        nb = GaussianNB(device=dev).fit(x_train, y_train, num_classes=c, class_names=info.classes)
        t_pred = time.perf_counter()
        ranked = nb.predict_topk(x_test, topk)
    else:  # linear probe / MLP probe on features
        ep, rate = epochs or _PROBE_DEFAULTS[0], lr or _PROBE_DEFAULTS[1]
        settings.update(model=_MODEL_OF[method], epochs=ep, lr=rate, optimizer="adamw", batch_size=batch_size)
        probe = train_probe(
            x_train, y_train, c, _MODEL_OF[method], epochs=ep, lr=rate, batch_size=batch_size, seed=seed,
            device=dev,
        )  # fmt: skip
        t_pred = time.perf_counter()
        with torch.no_grad():
            ranked = torch.cat([probe(x.to(dev)).topk(topk, dim=1).indices.cpu() for x in x_test.split(4096)])
    t_end = time.perf_counter()
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


def _train_pixels(
    method: str,
    dataset: str,
    data_dir: str | Path | None,
    train_set: Any,
    test_set: Any,
    epochs: int | None,
    lr: float | None,
    batch_size: int,
    out_dir: str | Path,
    seed: int,
    device: str,
    progress: bool,
    settings: dict[str, Any],
    t_start: float,
    *,
    image_size: int | None = None,
    train_subset: float = 1.0,
    test_subset: float = 1.0,
) -> BaselineResult:
    """linear / mlp on pixels: the imgcls trainer, sized for the dataset's own images."""
    from imgcls.train import TrainConfig, train

    info = train_set.info
    ep, rate = epochs or _PIXEL_DEFAULTS[method][0], lr or _PIXEL_DEFAULTS[method][1]
    cfg = TrainConfig(
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
    settings.update(model=cfg.model, epochs=ep, lr=rate, optimizer=cfg.optimizer, batch_size=batch_size)
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

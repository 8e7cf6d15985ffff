"""Local response normalisation and dropout in AlexNet: Krizhevsky, Sutskever and Hinton, "ImageNet
Classification with Deep Convolutional Neural Networks", 2012, sec. 3.3 and 4.2.

Sec. 3.3: LRN after conv1 and conv2 reduced the top-1 and top-5 error rates by 1.4% and 1.2% (ImageNet; on
CIFAR-10 a four-layer CNN went from 13% test error without normalisation to 11% with it). Sec. 4.2: without
dropout the network overfits substantially. Here the zoo's one-tower ``alexnet_paper`` in its small-image form
(module docstring of :mod:`imgcls.models.alexnet`) is trained with and without each.

Departures: the fully connected layers are 512 wide (the paper: 4096), torchvision's initialisation
(the paper's N(0, 0.01) weights, with biases of 1 in conv2, conv4, conv5 and fc6-7, barely move in a few
epochs), SGD lr 0.01 (the paper's), Fashion-MNIST.
As in the zoo's ``alexnet_paper``, the input is rescaled to mean-subtracted 0-255 pixels (``input_scale``), the
scale the LRN constants are set for; without it the LRN is a constant factor (:mod:`imgcls.models.layers.lrn`).
"""

from __future__ import annotations

import functools
from dataclasses import replace
from typing import Any

from torch import nn

from imgcls.experiments.runner import (
    Experiment,
    Outcome,
    Run,
    Scale,
    compare_means,
    fmt_pct,
    per_seed,
    recipe,
    seeded,
)

FORMS: dict[str, tuple[bool, bool]] = {  # name: (LRN, dropout)
    "LRN + dropout (paper)": (True, True),
    "no LRN": (False, True),
    "no dropout": (True, False),
    "neither": (False, False),
}
HIDDEN = 512
SEEDS: dict[str, tuple[int, ...]] = {"tiny": (0,), "quick": (0,), "full": (0, 1, 2)}
EPOCHS = {"tiny": 1, "quick": 4, "full": 8}


def alexnet_form(lrn: bool, dropout: bool, *, num_classes: int = 10, in_chans: int = 3) -> nn.Module:
    """``alexnet_paper`` (small-image form, fc layers HIDDEN wide) with or without LRN and dropout."""
    from imgcls.models.alexnet import VARIANTS, AlexNet

    cfg = VARIANTS["alexnet_paper"].cfg
    cfg = replace(
        cfg,
        lrn_after=cfg.lrn_after if lrn else (),
        drop_rate=cfg.drop_rate if dropout else 0.0,
        hidden=HIDDEN,
        init="torchvision",
    )
    return AlexNet(cfg, num_classes=num_classes, in_chans=in_chans, small_input=True)


def runs(scale: Scale) -> list[Run]:
    out = []
    for form, (lrn, dropout) in FORMS.items():
        name = f"experiment_alexnet_lrn{int(lrn)}_dropout{int(dropout)}"
        for s in SEEDS[scale]:
            params = recipe(scale, name, seed=s, epochs=EPOCHS[scale], lr=0.01)
            builder = functools.partial(alexnet_form, lrn, dropout)
            out.append(
                Run(seeded(form, s), params, model=builder, model_id=f"alexnet_form({lrn}, {dropout}) v2")
            )
    return out


def analyze(records: dict[str, dict[str, Any]], scale: Scale) -> Outcome:
    from matplotlib.figure import Figure

    err = {f: [1 - a for a in per_seed(records, f, "test_acc")] for f in FORMS}
    train_err = {f: per_seed(records, f, "final_train_error") for f in FORMS}
    gap = {f: [t - tr for t, tr in zip(err[f], train_err[f], strict=True)] for f in FORMS}
    paper = "LRN + dropout (paper)"
    comparisons = [
        compare_means(
            "test error, without LRN minus with",
            err["no LRN"],
            err[paper],
            expect_a_greater=True,
            expected="> 0 (LRN helps)",
            paper="top-1/top-5 error 1.4%/1.2% lower on ImageNet; 13% vs 11% on CIFAR-10 (sec. 3.3)",
        ),
        compare_means(
            "test error, without dropout minus with",
            err["no dropout"],
            err[paper],
            expect_a_greater=True,
            expected="> 0 (dropout helps)",
            paper="no figure: 'substantial overfitting' without it (sec. 4.2)",
        ),
        compare_means(
            "overfitting (test minus training error), without dropout minus with",
            gap["no dropout"],
            gap[paper],
            expect_a_greater=True,
            expected="> 0 (dropout reduces overfitting)",
            paper="no figure (sec. 4.2)",
        ),
    ]
    table = [
        {
            "form": f,
            "LRN": "yes" if FORMS[f][0] else "no",
            "dropout": "0.5" if FORMS[f][1] else "no",
            "test error": fmt_pct(err[f]),
            "final training error": fmt_pct(train_err[f]),
        }
        for f in FORMS
    ]
    fig = Figure(figsize=(8, 4.5))
    ax = fig.subplots()
    names = list(FORMS)
    for i, f in enumerate(names):
        ax.bar(
            i - 0.2, 100 * sum(err[f]) / len(err[f]), 0.4, color="C0", label="test error" if i == 0 else None
        )
        ax.bar(
            i + 0.2,
            100 * sum(train_err[f]) / len(train_err[f]),
            0.4,
            color="C1",
            label="final training error" if i == 0 else None,
        )
        ax.plot([i - 0.2] * len(err[f]), [100 * e for e in err[f]], "k.", markersize=4)
    ax.set_xticks(range(len(names)), names)
    ax.set_xlabel("AlexNet form")
    ax.set_ylabel("error (%) (dots: seeds)")
    ax.legend()
    ax.set_title("LRN and dropout in AlexNet (Krizhevsky et al. 2012, sec. 3.3, 4.2)")
    fig.tight_layout()
    return Outcome(
        comparisons,
        table,
        {"lrn_dropout": fig},
        measures={"test_error": err, "final_train_error": train_err},
        notes=[
            "The training error is that of the last epoch's batches, with dropout active where it is used.",
            "Few epochs: overfitting, which dropout fights, grows with training; a short run shows little of it.",
        ],
    )


EXPERIMENT = Experiment(
    name="lrn-dropout",
    title="Local response normalisation and dropout in AlexNet",
    claim="AlexNet's local response normalisation and its dropout in the fully connected layers each lower "
    "the test error.",
    source="Krizhevsky et al. 2012, ImageNet Classification with Deep CNNs (NeurIPS), sec. 3.3 and 4.2",
    runs=runs,
    analyze=analyze,
    seeds=SEEDS,
    description="alexnet_paper in its small-image form (fc 512 wide) with and without LRN (after conv1, conv2) "
    "and dropout 0.5 (fc6, fc7), on Fashion-MNIST, SGD lr 0.01, batch 128, cosine schedule.",
)

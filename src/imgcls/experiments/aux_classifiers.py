"""GoogLeNet's auxiliary classifiers: Szegedy et al., "Going Deeper with Convolutions", 2014
(arXiv:1409.4842), sec. 5.

Two auxiliary classifiers on intermediate modules (4a, 4d), their losses added with weight 0.3 during
training and dropped at inference, were meant to strengthen the gradient reaching the lower layers and to
regularise; the paper gives no figure for their effect. Its authors' later "Rethinking the Inception
Architecture" (Szegedy et al. 2015, arXiv:1512.00567, sec. 4) found that they did not speed early training
and gave a slightly higher final plateau. Here the zoo's ``googlenet`` (torchvision's layout, batch norm) is
trained with and without them and the early training curves and test accuracy compared.

Departures: batch norm (torchvision's form; it weakens the vanishing-gradient argument the heads were made
for), Fashion-MNIST at the scale's size, few epochs.
"""

from __future__ import annotations

from typing import Any

from imgcls.experiments.runner import (
    Comparison,
    Experiment,
    Outcome,
    Run,
    Scale,
    compare_means,
    fmt_pct,
    mean_sd,
    per_seed,
    recipe,
    seeded,
    train_error_curves,
)

FORMS = {"with aux heads": True, "without": False}
SEEDS: dict[str, tuple[int, ...]] = {"tiny": (0,), "quick": (0,), "full": (0, 1, 2)}
EPOCHS = {"tiny": 1, "quick": 3, "full": 4}


def runs(scale: Scale) -> list[Run]:
    return [
        Run(
            seeded(form, s),
            recipe(scale, "googlenet", seed=s, epochs=EPOCHS[scale], model_kwargs={"aux_logits": aux}),
        )
        for form, aux in FORMS.items()
        for s in SEEDS[scale]
    ]


def _first_epoch_error(records: dict[str, dict[str, Any]], form: str) -> list[float]:
    out = []
    for name, rec in records.items():
        if name.split("/seed")[0] == form:
            rows = [r for r in rec["history"] if "train_acc" in r]
            out.append(1 - rows[0]["train_acc"])
    return out


def analyze(records: dict[str, dict[str, Any]], scale: Scale) -> Outcome:
    from matplotlib.figure import Figure

    acc = {f: per_seed(records, f, "test_acc") for f in FORMS}
    early = {f: _first_epoch_error(records, f) for f in FORMS}
    with_aux, without = FORMS
    test = compare_means(
        "test accuracy, with aux heads minus without",
        acc[with_aux],
        acc[without],
        expect_a_greater=True,
        expected=">= 0, small",
        paper="no figure (sec. 5); slightly higher final plateau (arXiv:1512.00567, sec. 4)",
    )
    test.held = test.held or test.within_noise
    first = compare_means(
        "training error in the first epoch, with aux heads minus without",
        early[with_aux],
        early[without],
        expect_a_greater=False,
        expected="<= 0 (the extra gradient speeds early training)",
        paper="no figure (sec. 5: 'increase the gradient signal'); no faster early training "
        "(arXiv:1512.00567, sec. 4)",
    )
    first.held = first.held or first.within_noise
    comparisons: list[Comparison] = [first, test]
    table = [
        {
            "form": f,
            "parameters (training)": records[seeded(f, SEEDS[scale][0])]["params"],
            "first-epoch training error": fmt_pct(early[f]),
            "test accuracy": fmt_pct(acc[f]),
            "training seconds": f"{mean_sd(per_seed(records, f, 'train_seconds'))[0]:.1f}",
        }
        for f in FORMS
    ]
    fig = Figure(figsize=(7, 4.5))
    ax = fig.subplots()
    train_error_curves(ax, records, list(FORMS), {})
    ax.set_title("GoogLeNet's auxiliary classifiers: early training (Szegedy et al. 2014, sec. 5)")
    fig.tight_layout()
    return Outcome(
        comparisons,
        table,
        {"aux_classifiers": fig},
        measures={"test_acc": acc, "first_epoch_train_error": early},
        notes=[
            "The training error counts the main classifier only; the auxiliary heads are dropped at test."
        ],
    )


EXPERIMENT = Experiment(
    name="aux-classifiers",
    title="GoogLeNet's auxiliary classifiers",
    claim="Auxiliary classifiers on intermediate layers help early training and change the final accuracy "
    "only a little.",
    source="Szegedy et al. 2014, Going Deeper with Convolutions (arXiv:1409.4842), sec. 5",
    runs=runs,
    analyze=analyze,
    seeds=SEEDS,
    description="googlenet (torchvision layout, batch norm, small-image stem) with aux_logits on and off, "
    "Fashion-MNIST, SGD lr 0.1, batch 128, cosine schedule.",
)

"""Width against depth: Zagoruyko and Komodakis, "Wide Residual Networks", 2016 (arXiv:1605.07146), the trend
of Tables 4 and 5.

At a similar number of parameters a wider, shallower residual network is as accurate as a thinner, deeper one
or more, and trains faster (fewer sequential layers). Here WRN-40-1 (thin and deep, the zoo's ``wrn40_1``)
against WRN-16-2 (wide and shallow, ``wrn16_4`` with widen factor 2), 0.56M and 0.69M parameters at 10
classes and 3 channels.

Departures: Fashion-MNIST, few epochs, no dropout, no augmentation.
"""

from __future__ import annotations

from typing import Any

from imgcls.experiments.runner import (
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

NETS: dict[str, tuple[str, dict[str, Any]]] = {
    "WRN-40-1 (thin, deep)": ("wrn40_1", {}),
    "WRN-16-2 (wide, shallow)": ("wrn16_4", {"widen_factor": 2}),
}
SEEDS: dict[str, tuple[int, ...]] = {"tiny": (0,), "quick": (0,), "full": (0, 1, 2)}
EPOCHS = {"tiny": 1, "quick": 4, "full": 8}


def runs(scale: Scale) -> list[Run]:
    return [
        Run(seeded(name, s), recipe(scale, model, seed=s, epochs=EPOCHS[scale], model_kwargs=kwargs))
        for name, (model, kwargs) in NETS.items()
        for s in SEEDS[scale]
    ]


def analyze(records: dict[str, dict[str, Any]], scale: Scale) -> Outcome:
    from matplotlib.figure import Figure

    thin, wide = NETS
    acc = {n: per_seed(records, n, "test_acc") for n in NETS}
    secs = {n: per_seed(records, n, "train_seconds") for n in NETS}
    params = {n: records[seeded(n, SEEDS[scale][0])]["params"] for n in NETS}
    accuracy = compare_means(
        f"test accuracy, {wide} minus {thin}",
        acc[wide],
        acc[thin],
        expect_a_greater=True,
        expected=">= 0 (width does as well as depth)",
        paper="WRN-16-8 (11.0M) 4.81% vs WRN-40-4 (8.9M) 4.97% CIFAR-10 error (Table 4, ZCA preprocessing)",
    )
    accuracy.held = accuracy.held or accuracy.within_noise  # "as well as": a gap within noise holds it
    speed = compare_means(
        f"training seconds, {wide} minus {thin}",
        [s / 100 for s in secs[wide]],  # seconds / 100: compare_means prints fractions as points
        [s / 100 for s in secs[thin]],
        expect_a_greater=False,
        expected="< 0 (the shallow net trains faster)",
        paper="WRN-40-4 8x faster than ResNet-1001 at about its accuracy (Fig. 4, Titan X, batch 32)",
    )
    speed.ours = (
        f"{mean_sd(secs[wide])[0] - mean_sd(secs[thin])[0]:+.1f} s ({mean_sd(secs[wide])[0]:.1f} s vs "
        + (f"{mean_sd(secs[thin])[0]:.1f} s)")
    )
    table = [
        {
            "network": n,
            "parameters": params[n],
            "test accuracy": fmt_pct(acc[n]),
            "training seconds": f"{mean_sd(secs[n])[0]:.1f}",
        }
        for n in NETS
    ]
    fig = Figure(figsize=(11, 4))
    ax_c, ax_a = fig.subplots(1, 2)
    train_error_curves(ax_c, records, list(NETS), {})
    ax_c.set_title("training error")
    for i, n in enumerate(NETS):
        ax_a.plot([params[n] / 1e6] * len(acc[n]), [100 * a for a in acc[n]], "o", color=f"C{i}", label=n)
    ax_a.set_xlabel("parameters (millions)")
    ax_a.set_ylabel("test accuracy (%) (dots: seeds)")
    ax_a.set_title("accuracy at a similar parameter count")
    ax_a.legend()
    fig.suptitle("Width can beat depth at equal parameters (Zagoruyko and Komodakis 2016, Table 4)")
    fig.tight_layout()
    return Outcome(
        [accuracy, speed],
        table,
        {"width_vs_depth": fig},
        measures={"test_acc": acc, "train_seconds": secs, "params": params},
        notes=[
            "Training time is wall time on a shared CPU; the paper's speed claim is about GPUs, where width "
            "parallelises better.",
            "The paper's errors are CIFAR-10's, of larger networks; they show the direction only.",
        ],
    )


EXPERIMENT = Experiment(
    name="width-vs-depth",
    title="Width against depth at a similar parameter count",
    claim="At a similar parameter count a wide, shallow residual network is as accurate as a thin, deep one "
    "and trains faster.",
    source="Zagoruyko and Komodakis 2016, Wide Residual Networks (arXiv:1605.07146), Tables 4-5",
    runs=runs,
    analyze=analyze,
    seeds=SEEDS,
    description="WRN-40-1 and WRN-16-2 on Fashion-MNIST, SGD lr 0.1, batch 128, cosine schedule, no "
    "augmentation.",
)

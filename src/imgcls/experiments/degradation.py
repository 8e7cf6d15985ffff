"""The degradation problem: He, Zhang, Ren and Sun, "Deep Residual Learning for Image Recognition", 2015
(arXiv:1512.03385), Fig. 1 and Fig. 6.

Deeper plain networks reach a *higher training error* than shallower ones (it is not overfitting), and
residual shortcuts reverse this: plain-20 vs plain-56 and ResNet-20 vs ResNet-56 (the zoo's ``plain20``,
``plain56``, ``cifar_resnet20``, ``cifar_resnet56``: sec. 4.2's CIFAR networks, option A shortcuts).

Departures: Fashion-MNIST (grey, 28x28; 16x16 at the quick scale) stands in for CIFAR-10, a share of its
training set for all of it, a few epochs with a cosine schedule for the paper's 64k iterations with steps,
no augmentation; weight decay 5e-4 (paper: 1e-4).
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
    per_seed,
    recipe,
    seeded,
    train_error_curves,
)

NETS = {
    "plain20": "plain-20",
    "plain56": "plain-56",
    "cifar_resnet20": "ResNet-20",
    "cifar_resnet56": "ResNet-56",
}
SEEDS: dict[str, tuple[int, ...]] = {"tiny": (0,), "quick": (0,), "full": (0, 1, 2)}
EPOCHS = {"tiny": 1, "quick": 6, "full": 12}
# Linear warm-up to lr 0.1 over two epochs (the runner's default is half an epoch): with half an epoch the
# 56-layer nets blew up in their first epoch at the quick scale (ResNet-56: mean loss 5.45, then stuck near
# chance), a failure to start rather than the degradation the paper measures. He et al. warmed up their
# deepest net too (sec. 4.2: lr 0.01 for about 400 iterations before 0.1, for ResNet-110); all four nets
# get the same warm-up here.
WARMUP_EPOCHS = {"tiny": 0.5, "quick": 2.0, "full": 2.0}


def runs(scale: Scale) -> list[Run]:
    return [
        Run(
            seeded(net, s),
            recipe(scale, net, seed=s, epochs=EPOCHS[scale], warmup_epochs=WARMUP_EPOCHS[scale]),
        )
        for net in NETS
        for s in _seeds(net, scale)
    ]


def _seeds(net: str, scale: Scale) -> tuple[int, ...]:
    """Every seed for the ResNets, whose difference is within a seed's noise once both train to near zero
    error; the first only for the plain nets, whose gap is tens of points."""
    return SEEDS[scale] if net.startswith("cifar_resnet") else SEEDS[scale][:1]


def analyze(records: dict[str, dict[str, Any]], scale: Scale) -> Outcome:
    from matplotlib.figure import Figure

    from imgcls.models import get_model_spec

    err = {net: per_seed(records, net, "final_train_error") for net in NETS}
    test_err = {net: [1 - a for a in per_seed(records, net, "test_acc")] for net in NETS}
    paper = {n: 100 - get_model_spec(n).top1 for n in ("cifar_resnet20", "cifar_resnet56")}  # Table 6
    comparisons: list[Comparison] = [
        compare_means(
            "final training error, plain-56 minus plain-20",
            err["plain56"],
            err["plain20"],
            expect_a_greater=True,
            expected="> 0 (the deeper plain net trains worse)",
            paper="> 0 (Fig. 6 left: plain-56 above plain-20 throughout training)",
        ),
        compare_means(
            "final training error, ResNet-56 minus ResNet-20",
            err["cifar_resnet56"],
            err["cifar_resnet20"],
            expect_a_greater=False,
            expected="< 0 (the deeper ResNet trains better)",
            paper="< 0 (Fig. 6 middle)",
        ),
        compare_means(
            "test error, ResNet-56 minus ResNet-20",
            test_err["cifar_resnet56"],
            test_err["cifar_resnet20"],
            expect_a_greater=False,
            expected="< 0",
            paper=f"{paper['cifar_resnet56'] - paper['cifar_resnet20']:+.2f} points "
            f"({paper['cifar_resnet56']:.2f}% vs {paper['cifar_resnet20']:.2f}%, Table 6, CIFAR-10)",
        ),
    ]
    table = [
        {
            "network": name,
            "parameters": records[seeded(net, SEEDS[scale][0])]["params"],
            "final training error": fmt_pct(err[net]),
            "test error": fmt_pct(test_err[net]),
            "paper test error (CIFAR-10)": f"{paper[net]:.2f}%" if net in paper else "",
        }
        for net, name in NETS.items()
    ]
    fig = Figure(figsize=(10, 4))
    ax_plain, ax_res = fig.subplots(1, 2, sharey=True)
    train_error_curves(ax_plain, records, ["plain20", "plain56"], NETS)
    ax_plain.set_title("plain networks")
    train_error_curves(ax_res, records, ["cifar_resnet20", "cifar_resnet56"], NETS)
    ax_res.set_title("residual networks")
    fig.suptitle("Degradation: deeper plain nets train worse, deeper ResNets better (He et al. 2015, Fig. 6)")
    fig.tight_layout()
    return Outcome(
        comparisons,
        table,
        {"training_error": fig},
        measures={"final_train_error": err, "test_error": test_err},
        notes=[
            f"{EPOCHS[scale]} epochs at this scale; the paper trains 64k iterations of batch 128 (about 164 epochs "
            "of CIFAR-10's 50,000 training images). The training error is that of the last epoch's batches (no "
            "augmentation), the quantity of Fig. 6's dashed curves.",
            "Fashion-MNIST stands in for CIFAR-10: the paper's test errors are CIFAR-10's and are shown for "
            "the direction only.",
        ],
    )


EXPERIMENT = Experiment(
    name="degradation",
    title="The degradation problem and residual learning",
    claim="A deeper plain network has a higher training error than a shallower one, and residual shortcuts "
    "reverse this: the deeper ResNet trains to a lower error.",
    source="He et al. 2015, Deep Residual Learning for Image Recognition (arXiv:1512.03385), Fig. 1 and 6",
    runs=runs,
    analyze=analyze,
    seeds=SEEDS,
    description="plain-20/56 and ResNet-20/56 (sec. 4.2 networks) on Fashion-MNIST, SGD lr 0.1 after a 2-epoch "
    "linear warm-up, batch 128, cosine schedule, no augmentation.",
)

"""Compound scaling: Tan and Le, "EfficientNet: Rethinking Model Scaling for Convolutional Neural Networks",
2019 (arXiv:1905.11946), the trend of Fig. 3, 4 and 8.

Scaling one dimension of a network (width, depth or input resolution) gains accuracy with diminishing
returns; scaling all three together by the compound rule (Eq. 3: depth alpha^phi, width beta^phi, resolution
gamma^phi, alpha = 1.2, beta = 1.1, gamma = 1.15) gains more for the same multiply-adds (sec. 6, Fig. 8: up
to 2.5% top-1 over single-dimension scaling of B0). Here a small base (EfficientNet-B0 at half width and half
depth, the zoo's ``efficientnet_b0`` with ``width_mult``/``depth_mult``) is scaled at phi = 1 and 2 by the
compound rule and by each single dimension to the same FLOPs growth
(:func:`imgcls.models.efficientnet.single_dimension_scaling`), and accuracy is plotted against the
multiply-adds :func:`imgcls.analysis.summarize` counts.

Departures: a half-size B0 at 8-28 pixels on Fashion-MNIST, not B0 at 224 on ImageNet; few epochs.
"""

from __future__ import annotations

from typing import Any

from imgcls.experiments.runner import (
    SCALE_DATA,
    Comparison,
    Experiment,
    Outcome,
    Run,
    Scale,
    fmt_pct,
    mean_sd,
    per_seed,
    recipe,
    seeded,
)

BASE_WIDTH, BASE_DEPTH = 0.5, 0.5
PHIS = (1, 2)
METHODS = ("compound", "width", "depth", "resolution")
BASE_SIZE = {"tiny": 8, "quick": 16, "full": 28}
SEEDS: dict[str, tuple[int, ...]] = {"tiny": (0,), "quick": (0,), "full": (0,)}
EPOCHS = {"tiny": 1, "quick": 4, "full": 6}


def points(scale: Scale) -> dict[str, tuple[float, float, int]]:
    """label -> (width_mult, depth_mult, resolution) of the base and each scaled network."""
    from imgcls.models.efficientnet import compound_scaling, single_dimension_scaling

    base = BASE_SIZE[scale]
    out = {"base": (BASE_WIDTH, BASE_DEPTH, base)}
    for phi in PHIS:
        for method in METHODS:
            s = (
                compound_scaling(phi, base_resolution=base)
                if method == "compound"
                else single_dimension_scaling(phi, method, base_resolution=base)  # type: ignore[arg-type]
            )
            out[f"{method} phi={phi}"] = (BASE_WIDTH * s.width_mult, BASE_DEPTH * s.depth_mult, s.resolution)
    return out


def runs(scale: Scale) -> list[Run]:
    out = []
    for label, (w, d, r) in points(scale).items():
        for s in SEEDS[scale]:
            params = recipe(
                scale,
                "efficientnet_b0",
                seed=s,
                epochs=EPOCHS[scale],
                image_size=r,
                model_kwargs={"width_mult": w, "depth_mult": d, "dropout": 0.0, "stochastic_depth_prob": 0.0},
            )
            out.append(Run(seeded(label, s), params))
    return out


def _macs(w: float, d: float, r: int, in_chans: int) -> int:
    from imgcls.analysis import summarize
    from imgcls.models import create_model

    model = create_model(
        "efficientnet_b0", 10, in_chans, image_size=r, width_mult=w, depth_mult=d, dropout=0.0
    )
    return summarize(model, (in_chans, r, r), depth=0).totals["macs"]


def analyze(records: dict[str, dict[str, Any]], scale: Scale) -> Outcome:
    from matplotlib.figure import Figure

    pts = points(scale)
    in_chans = 1  # Fashion-MNIST and digits are grey
    macs = {label: _macs(w, d, r, in_chans) for label, (w, d, r) in pts.items()}
    acc = {label: per_seed(records, label, "test_acc") for label in pts}
    mean = {label: mean_sd(v)[0] for label, v in acc.items()}
    comparisons = []
    for phi in PHIS:
        singles = {m: mean[f"{m} phi={phi}"] for m in METHODS[1:]}
        best = max(singles, key=singles.__getitem__)
        comp = f"compound phi={phi}"
        diff = 100 * (mean[comp] - singles[best])
        comparisons.append(
            Comparison(
                f"test accuracy at phi={phi}, compound minus the best single dimension ({best})",
                "> 0 (compound scaling wins at similar cost)",
                "up to +2.5% top-1 over single-dimension scaling of B0 (sec. 6, Fig. 8)",
                f"{diff:+.2f} points ({100 * mean[comp]:.2f}% vs {100 * singles[best]:.2f}%; MACs "
                f"{macs[comp] / 1e6:.1f}M vs {macs[f'{best} phi={phi}'] / 1e6:.1f}M)",
                diff > 0,
            )
        )
    table = [
        {
            "network": label,
            "width": round(w, 3),
            "depth": round(d, 3),
            "resolution": r,
            "parameters": records[seeded(label, SEEDS[scale][0])]["params"],
            "MACs": macs[label],
            "test accuracy": fmt_pct(acc[label]),
        }
        for label, (w, d, r) in pts.items()
    ]
    fig = Figure(figsize=(7, 4.8))
    ax = fig.subplots()
    for i, method in enumerate(METHODS):
        labels = ["base"] + [f"{method} phi={phi}" for phi in PHIS]
        ax.plot(
            [macs[lab] / 1e6 for lab in labels],
            [100 * mean[lab] for lab in labels],
            "o-" if method == "compound" else "s--",
            color=f"C{i}",
            linewidth=2.5 if method == "compound" else 1.2,
            label=f"scale {method}" if method != "compound" else "compound scaling",
        )
    ax.set_xlabel("multiply-adds per image (millions)")
    ax.set_ylabel("test accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("Compound scaling against one dimension (Tan and Le 2019, Fig. 8)")
    fig.tight_layout()
    return Outcome(
        comparisons,
        table,
        {"compound_scaling": fig},
        measures={"macs": macs, "test_acc": acc},
        notes=[
            f"Base: EfficientNet-B0 at width {BASE_WIDTH}, depth {BASE_DEPTH}, {BASE_SIZE[scale]} px "
            f"({SCALE_DATA[scale]['dataset']}); dropout and stochastic depth off for short runs.",
            "Multiply-adds are counted at each network's own resolution; small-image rounding of the feature "
            "maps makes equal-FLOPs targets only approximately equal.",
        ],
    )


EXPERIMENT = Experiment(
    name="compound-scaling",
    title="Compound scaling against scaling one dimension",
    claim="Scaling width, depth and resolution together by the compound rule gives more accuracy for the "
    "multiply-adds than scaling any one of them alone.",
    source="Tan and Le 2019, EfficientNet (arXiv:1905.11946), Eq. 3, Fig. 3, 4 and 8",
    runs=runs,
    analyze=analyze,
    seeds=SEEDS,
    description="half-width, half-depth EfficientNet-B0 scaled at phi 1 and 2, Fashion-MNIST, SGD lr 0.1, "
    "batch 128, cosine schedule.",
)

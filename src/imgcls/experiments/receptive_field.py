"""Stacks of small filters: Simonyan and Zisserman, "Very Deep Convolutional Networks for Large-Scale Image
Recognition", 2014 (arXiv:1409.1556), sec. 2.3 and sec. 4.1.

Sec. 2.3: a stack of two 3x3 convolutions sees a 5x5 field and three see 7x7, with fewer parameters (three
3x3 layers of C channels: 27 C^2 weights, one 7x7: 49 C^2) and more non-linearities. Sec. 4.1: net B with
each pair of 3x3 layers replaced by one 5x5 layer had a top-1 error 7% higher (center crop). Here the
receptive field, parameters and multiply-adds of each form are computed by :func:`imgcls.analysis.summarize`
and the field measured by :func:`imgcls.analysis.gradient_field`; then small networks of each form
(``nets.conv_stack_net``: a stem and two stages of the block, trained the same way) are compared on accuracy.

Departures: Fashion-MNIST, two stages of 32 and 64 channels with batch norm, not ImageNet and VGG-B.
"""

from __future__ import annotations

import functools
from typing import Any

from imgcls.experiments.nets import conv_stack_net
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
)

# form name: (kernel, layers); each stacked form sits beside the single layer of the same field.
FORMS = {"3x3 x2": (3, 2), "5x5 x1": (5, 1), "3x3 x3": (3, 3), "7x7 x1": (7, 1)}
PAIRS = (("3x3 x2", "5x5 x1"), ("3x3 x3", "7x7 x1"))
BLOCK_CHANNELS = 64  # C of the block analysed alone
SEEDS: dict[str, tuple[int, ...]] = {"tiny": (0,), "quick": (0,), "full": (0, 1, 2)}
EPOCHS = {"tiny": 1, "quick": 4, "full": 8}


def _model_name(form: str) -> str:
    k, n = FORMS[form]
    return f"experiment_conv{k}x{k}_x{n}"


def runs(scale: Scale) -> list[Run]:
    out = []
    for form, (k, n) in FORMS.items():
        for s in SEEDS[scale]:
            params = recipe(scale, _model_name(form), seed=s, epochs=EPOCHS[scale])
            builder = functools.partial(conv_stack_net, k, n)
            out.append(Run(seeded(form, s), params, model=builder, model_id=f"conv_stack_net({k}, {n}) v1"))
    return out


def block_figures(kernel: int, layers: int, channels: int = BLOCK_CHANNELS, side: int = 32) -> dict[str, Any]:
    """Parameters, multiply-adds, and computed and measured receptive field of ``layers`` ``kernel`` x
    ``kernel`` convolutions of ``channels`` channels (no norm, no bias: the convolutions' own figures)."""
    from torch import nn

    from imgcls.analysis import gradient_field, summarize
    from imgcls.models.layers import ConvNormAct

    block = nn.Sequential(
        *(ConvNormAct(channels, channels, kernel, norm_layer=None, bias=False) for _ in range(layers))
    )
    summary = summarize(block, (channels, side, side), depth=1)
    _, (top, bottom), (left, right) = gradient_field(block, (channels, side, side))
    return {
        "params": summary.totals["params"],
        "params_per_c2": summary.totals["params"] / channels**2,
        "macs": summary.totals["macs"],
        "field_computed": int(summary.rows[-1].field[0]),
        "field_measured": bottom - top + 1,
        "measured_width": right - left + 1,
    }


def analyze(records: dict[str, dict[str, Any]], scale: Scale) -> Outcome:
    from matplotlib.figure import Figure

    blocks = {form: block_figures(k, n) for form, (k, n) in FORMS.items()}
    acc = {form: per_seed(records, form, "test_acc") for form in FORMS}
    comparisons: list[Comparison] = []
    for stack, single in PAIRS:
        a, b = blocks[stack], blocks[single]
        same = a["field_computed"] == b["field_computed"] == a["field_measured"] == b["field_measured"]
        comparisons.append(
            Comparison(
                f"receptive field, {stack} vs {single} (computed / measured by gradients)",
                "equal",
                f"equal ({FORMS[single][0]}x{FORMS[single][0]}, sec. 2.3)",
                f"{a['field_computed']}/{a['field_measured']} vs {b['field_computed']}/{b['field_measured']} px",
                same,
            )
        )
        n, k = FORMS[stack][1], FORMS[single][0]
        comparisons.append(
            Comparison(
                f"weights per C^2, {stack} vs {single}",
                "stack fewer",
                f"{9 * n} vs {k * k}" + (" (27 C^2 vs 49 C^2, sec. 2.3)" if k == 7 else " (9n vs k^2)"),
                f"{a['params_per_c2']:g} vs {b['params_per_c2']:g} (MACs {a['macs'] / 1e6:.1f}M vs "
                f"{b['macs'] / 1e6:.1f}M at {BLOCK_CHANNELS}x32x32)",
                a["params"] < b["params"],
            )
        )
        comparisons.append(
            compare_means(
                f"test accuracy, {stack} minus {single}",
                acc[stack],
                acc[single],
                expect_a_greater=True,
                expected="> 0 (the deeper stack is better)",
                paper="top-1 error 7% higher for net B with each 3x3 pair made one 5x5 (center crop, sec. 4.1)"
                if k == 5
                else "no figure (sec. 2.3 argues for the stack)",
            )
        )
    table = [
        {
            "form": form,
            "network parameters": records[seeded(form, SEEDS[scale][0])]["params"],
            "block parameters": blocks[form]["params"],
            "block MACs": blocks[form]["macs"],
            "field (computed)": blocks[form]["field_computed"],
            "field (measured)": blocks[form]["field_measured"],
            "test accuracy": fmt_pct(acc[form]),
        }
        for form in FORMS
    ]
    fig = Figure(figsize=(11, 4))
    ax_p, ax_a = fig.subplots(1, 2)
    names = list(FORMS)
    ax_p.bar(names, [blocks[f]["params_per_c2"] for f in names], color=["C0", "C1", "C0", "C1"])
    ax_p.set_ylabel("weights per C^2 (one block)")
    ax_p.set_xlabel("block (field 5x5: left pair, 7x7: right pair)")
    ax_p.set_title("parameters of equal receptive fields")
    for i, f in enumerate(names):
        vals = [100 * v for v in acc[f]]
        ax_a.plot([i] * len(vals), vals, "o", color="C0" if i % 2 == 0 else "C1")
        ax_a.bar(i, sum(vals) / len(vals), color="C0" if i % 2 == 0 else "C1", alpha=0.4)
    ax_a.set_xticks(range(len(names)), names)
    lo = min(100 * min(v) for v in acc.values())
    ax_a.set_ylim(max(0.0, lo - 5), None)
    ax_a.set_xlabel("block of the network's two stages")
    ax_a.set_ylabel("test accuracy (%) (dots: seeds)")
    ax_a.set_title("accuracy, trained the same way")
    fig.suptitle(
        "A stack of 3x3 convolutions sees as far as one large filter, with fewer weights (VGG sec. 2.3)"
    )
    fig.tight_layout()
    return Outcome(
        comparisons,
        table,
        {"receptive_field": fig},
        measures={"blocks": blocks, "test_acc": acc},
        notes=[
            "Block figures: convolutions of 64 channels without bias or norm on a 64x32x32 input; the measured "
            "field is the extent of the non-zero input gradient of the central output unit.",
            "The paper's 7% is ImageNet top-1 of VGG-B against its 5x5 form; ours is Fashion-MNIST accuracy of "
            "small two-stage networks.",
        ],
    )


EXPERIMENT = Experiment(
    name="receptive-field",
    title="Stacks of 3x3 convolutions against one larger filter",
    claim="Two (three) stacked 3x3 convolutions have the receptive field of one 5x5 (7x7) convolution with "
    "fewer parameters, and the deeper stack classifies better.",
    source="Simonyan and Zisserman 2014, Very Deep Convolutional Networks (arXiv:1409.1556), sec. 2.3 and 4.1",
    runs=runs,
    analyze=analyze,
    seeds=SEEDS,
    description="networks of a 3x3 stem and two stages (32, 64 channels, 2x2 max-pool between) of each block "
    "form, on Fashion-MNIST, SGD lr 0.1, batch 128, cosine schedule, no augmentation.",
)

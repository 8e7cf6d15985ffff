"""Does an ensemble gain? Several quick runs of different seeds on Fashion-MNIST, and their ensemble.

    python benchmarks/ensemble.py [--seeds 0 1 2] [--epochs 2] [--model quicknet_s]

Trains one run per seed with the ``fast`` preset's recipe (shortened to ``--epochs``, warm-up at most half
of them), then scores every run and
the ensemble (mean-logits, then mean-probs and vote from a second pass) on the 10,000 test images
(``imgcls.ensemble.evaluate_ensemble_runs``). The report gives each member's test accuracy, their mean and
spread, and each ensemble's, with the machine and the load average.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import torch  # noqa: E402
from _common import hardware, spread  # noqa: E402

from imgcls.data import make_loader  # noqa: E402
from imgcls.ensemble import COMBINE, EnsembleEval, evaluate_ensemble_runs, load_ensemble  # noqa: E402
from imgcls.evaluate import eval_dataset  # noqa: E402
from imgcls.metrics import Tally  # noqa: E402
from imgcls.train import TrainConfig, resolve_config, train  # noqa: E402
from imgcls.utils.device import autocast, resolve_amp, resolve_device  # noqa: E402


def evaluate_all(runs: list[Path]) -> dict[str, EnsembleEval]:
    """Every combination rule's ensemble and each member, from one pass of every member over the test split."""
    first = evaluate_ensemble_runs(runs, combine=COMBINE[0])  # the members' logits, combined the first way
    ensemble, loaded = load_ensemble(runs, combine=COMBINE[0], device=resolve_device("auto"))
    info = loaded[0].info
    ds = eval_dataset(info, loaded[0].classes, runs[0], info["dataset"], "test")
    loader = make_loader(ds, 500, train=False, device=resolve_device("auto"))
    tallies = {c: Tally(info["num_classes"]) for c in COMBINE[1:]}
    amp = resolve_amp("auto", resolve_device("auto"))
    with torch.no_grad():
        for x, y in loader:
            with autocast(x.device, amp):
                logits = ensemble.member_logits(x)
            for c, tally in tallies.items():
                ensemble.combine = c
                tally.add(ensemble.combine_logits(logits), y)
    out = {COMBINE[0]: first}
    for c, tally in tallies.items():
        out[c] = EnsembleEval(tally.result(loaded[0].classes), first.members, c, first.names)
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=float, default=2.0)
    p.add_argument("--model", default="quicknet_s")
    p.add_argument("--out-dir", default="runs/bench-ensemble")
    p.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = p.parse_args()
    load0 = os.getloadavg()[0]
    runs, seconds = [], []
    for seed in args.seeds:
        overrides = dict(
            preset="fast",
            model=args.model,
            epochs=args.epochs,
            warmup_epochs=min(1.0, args.epochs / 2),  # the preset's 1 epoch, or half of a shorter run
            seed=seed,
            fallback_dataset=None,
            progress=False,
            out_dir=args.out_dir,
            name=f"{args.model}-e{args.epochs:g}-s{seed}-{int(time.time())}",
        )
        cfg: TrainConfig = resolve_config(None, overrides)
        r = train(cfg)
        runs.append(r.run_dir)
        seconds.append(r.train_seconds)
    results = evaluate_all(runs)
    members = results["mean-logits"].members
    accs = [100 * m.top1 for m in members]
    lines = [
        f"# Ensembles of {len(runs)} {args.model} runs on Fashion-MNIST ({args.epochs:g} epochs each)",
        "",
        f"`python benchmarks/ensemble.py --seeds {' '.join(map(str, args.seeds))} --epochs {args.epochs:g} "
        f"--model {args.model}`: the fast preset's recipe, {args.epochs:g} epochs, seeds "
        f"{', '.join(map(str, args.seeds))}; test accuracy on the 10,000 test images (each run's best weights "
        "on its validation split, its own test-time flip).",
        "",
        f"Machine: {hardware()}; load average {load0:.2f} at the start, {os.getloadavg()[0]:.2f} at the end; "
        f"training {spread(seconds)} s a run.",
        "",
        "| model | top-1 (%) | top-5 (%) |",
        "|---|---:|---:|",
    ]
    for seed, m in zip(args.seeds, members):
        lines.append(f"| seed {seed} | {100 * m.top1:.2f} | {100 * m.top5:.2f} |")
    lines.append(f"| members: mean ± std | {spread(accs)} | |")
    for c, ev in results.items():
        lines.append(
            f"| **ensemble, {c}** | **{100 * ev.ensemble.top1:.2f}** | {100 * ev.ensemble.top5:.2f} |"
        )
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

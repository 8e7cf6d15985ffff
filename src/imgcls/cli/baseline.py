"""``imgcls baseline METHOD``: non-neural baselines (k-NN, naive Bayes, linear / MLP, rule learners)."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from imgcls.classic.baseline import RuleResult

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    from imgcls.classic.baseline import METHODS
    from imgcls.classic.knn import DEFAULT_MEMORY_BUDGET_MB

    p = sub.add_parser(
        "baseline",
        help="non-neural baselines: knn, nb, linear, mlp, find-s, candidate-elimination",
        description=(
            "Fit a classic baseline on a dataset's training split and report top-1 / top-5 accuracy on its "
            "test split: knn (k nearest neighbours), nb (Gaussian naive Bayes), linear (softmax classifier), "
            "mlp, on pixels or on a network's features (--features). find-s and candidate-elimination learn "
            "a conjunction from a CSV of categorical attributes (--csv)."
        ),
    )
    p.add_argument("method", choices=METHODS, metavar="METHOD", help=", ".join(METHODS))
    p.add_argument("--dataset", default="fashion-mnist", help="dataset name (default: fashion-mnist)")
    p.add_argument("--data-dir", help="where to look for the dataset first")
    p.add_argument(
        "--features",
        metavar="MODEL_OR_RUN",
        help="use the pre-logit features of a run directory / weights file or a registered model",
    )
    p.add_argument("--pretrained", metavar="PATH", help="weights for --features MODEL")
    p.add_argument("--k", type=int, default=5, help="knn: neighbours that vote (default: 5)")
    p.add_argument(
        "--metric", default="l2", choices=["l2", "l1", "cosine"], help="knn distance (default: l2)"
    )
    p.add_argument(
        "--weights",
        default="uniform",
        choices=["uniform", "distance"],
        help="knn vote weights (default: uniform)",
    )
    p.add_argument(
        "--memory-budget-mb",
        type=float,
        default=DEFAULT_MEMORY_BUDGET_MB,
        help=f"knn: largest temporary allocation (default: {DEFAULT_MEMORY_BUDGET_MB:g})",
    )
    p.add_argument("--epochs", type=int, help="linear / mlp: epochs (default: 10 on pixels, 30 on features)")
    p.add_argument("--lr", type=float, help="linear / mlp: learning rate")
    p.add_argument("--batch-size", type=int, default=256, help="(default: 256)")
    p.add_argument(
        "--out-dir", default="runs", help="linear / mlp on pixels: where the run goes (default: runs)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto | cpu | cuda | cuda:N | mps (default: auto)")
    p.add_argument("--threads", type=int, help="torch CPU threads (default: all cores)")
    p.add_argument("--csv", metavar="FILE", help="find-s / candidate-elimination: the examples")
    p.add_argument(
        "--positive", metavar="VALUE", help="the target value of positive examples (default: yes/no)"
    )
    p.add_argument("--ascii", action="store_true", help="print the empty constraint as 0 instead of ∅")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imgcls.classic.baseline import RULE_METHODS, run_baseline, run_rules
    from imgcls.errors import ConfigError

    if args.threads is not None:
        if args.threads < 1:
            raise ConfigError(f"--threads must be >= 1, got {args.threads}")
        import torch

        torch.set_num_threads(args.threads)
    if args.method in RULE_METHODS:
        if not args.csv:
            raise ConfigError(
                f"{args.method} learns from a table: give --csv FILE (header row, last column the target)"
            )
        result = run_rules(args.method, args.csv, args.positive)
        if args.json:
            print(json.dumps(result.to_dict(), indent=2, ensure_ascii=False))
            return 0
        _print_rules(result, args.ascii)
        return 0
    if args.csv:
        raise ConfigError(f"--csv is for find-s and candidate-elimination; {args.method} uses --dataset")
    result = run_baseline(
        args.method,
        dataset=args.dataset,
        data_dir=args.data_dir,
        features=args.features,
        pretrained=args.pretrained,
        k=args.k,
        metric=args.metric,
        weights=args.weights,
        memory_budget_mb=args.memory_budget_mb,
        device=args.device,
        epochs=args.epochs,
        lr=args.lr,
        batch_size=args.batch_size,
        out_dir=args.out_dir,
        seed=args.seed,
        progress=not getattr(args, "quiet", False),
    )
    if args.json:
        print(json.dumps(result.to_dict(), indent=2))
        return 0
    s = result.settings
    what = {
        "knn": f"knn (k={s.get('k')}, {s.get('metric')}, {s.get('weights')})",
        "nb": "Gaussian naive Bayes",
    }.get(result.method, f"{result.method} ({s.get('model')}, {s.get('epochs')} epochs, lr {s.get('lr')})")
    print(
        f"{what} on {result.dataset} {s['features']}: {result.n_train} train, {result.n_test} test, "
        f"{result.num_features} features"
    )
    line = f"top-1 accuracy {result.top1:.4f} (error {result.top1_error:.4f})"
    if result.top5 is not None:
        line += f"   top-5 accuracy {result.top5:.4f} (error {result.top5_error:.4f})"
    print(line)
    print(
        f"time: fit {result.fit_seconds:.2f} s, predict {result.predict_seconds:.2f} s, "
        f"total {result.total_seconds:.2f} s (with data loading)"
    )
    if result.run_dir:
        print(f"run: {result.run_dir}")
    return 0


def _print_rules(result: RuleResult, ascii: bool) -> None:
    def fmt(h: str) -> str:
        return h.replace("∅", "0") if ascii else h

    print(
        f"{result.method} on {result.source}: {result.n_examples} examples, {len(result.attributes)} attributes"
    )
    print(f"attributes: {', '.join(result.attributes)}")
    if result.general is None:
        print(f"h = {fmt(result.specific[0])}")
        if result.covered_negatives:
            nums = ", ".join(map(str, result.covered_negatives))
            print(
                f"warning: h covers negative example(s) {nums}: the data is inconsistent with any conjunction"
            )
    else:
        print("S = {" + ", ".join(fmt(h) for h in result.specific) + "}")
        print("G = {" + ", ".join(fmt(h) for h in result.general) + "}")

"""``imgcls eval RUN_OR_CHECKPOINT``: top-1/top-5 accuracy and error, per-class accuracy, precision, recall and
F1, confusion matrix (counts and row-normalised).

``imgcls eval RUN1 RUN2 ... [--combine mean-logits|mean-probs|vote]``: the ensemble of the runs and each of them
in one pass over the data: a table of every member's and the ensemble's top-1/top-5, then the ensemble's full
report (written to ``--out``, default ``ensemble-eval-DATASET-SPLIT`` beside the first run).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a trained run", description="Evaluate a trained run on a dataset."
    )
    p.add_argument(
        "runs",
        nargs="+",
        metavar="RUN",
        help="run directory (runs/NAME) or a .safetensors file inside one; several: evaluate their ensemble",
    )
    p.add_argument(
        "--combine",
        default="mean-logits",
        choices=["mean-logits", "mean-probs", "vote"],
        help="how an ensemble of several runs combines them (default: mean-logits)",
    )
    p.add_argument("--dataset", help="dataset name (default: the one the run was trained on)")
    p.add_argument("--data-dir", help="where to look for the dataset first")
    p.add_argument(
        "--split",
        choices=["train", "val", "test", "all"],
        help="(default: the run's test split; all of a folder the run was not trained on)",
    )
    p.add_argument(
        "--skip-bad", action="store_true", help="leave out unreadable images (counted in the report)"
    )
    p.add_argument(
        "--weights", default="best", choices=["best", "last"], help="which weights of a run (default: best)"
    )
    p.add_argument(
        "--tta-flip",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="average with mirrored images (default: as trained)",
    )
    p.add_argument("--batch-size", type=int, default=500)
    p.add_argument("--device", default="auto")
    p.add_argument(
        "--out",
        help="folder for metrics.json, confusion_counts.csv, confusion_row_normalised.csv and .png "
        "(default: RUN/eval-DATASET-SPLIT)",
    )
    p.add_argument("--json", action="store_true", help="print the metrics as JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imgcls.evaluate import evaluate_run
    from imgcls.utils.files import dumps_json

    if len(args.runs) > 1:
        return _run_ensemble(args)
    result, out_dir = evaluate_run(
        args.runs[0],
        dataset=args.dataset,
        split=args.split,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        device=args.device,
        tta_flip=args.tta_flip,
        which=args.weights,
        out_dir=Path(args.out) if args.out else None,
        save=False,
        skip_bad=args.skip_bad,
    )
    # The metrics first: a report that cannot be written (a full disk) must not lose what was computed.
    if args.json:
        print(dumps_json(result.to_dict() | {"out_dir": str(out_dir)}))  # null, never NaN
    else:
        print(result.table())
    sys.stdout.flush()
    result.save(out_dir)
    if not args.json:
        print(f"\nmetrics and confusion matrix (counts, row-normalised) written to {out_dir}")
    return 0


def _run_ensemble(args: argparse.Namespace) -> int:
    from imgcls.ensemble import evaluate_ensemble_runs
    from imgcls.utils.files import dumps_json

    ev = evaluate_ensemble_runs(
        args.runs,
        combine=args.combine,
        dataset=args.dataset,
        split=args.split,
        data_dir=args.data_dir,
        batch_size=args.batch_size,
        device=args.device,
        tta_flip=args.tta_flip,
        which=args.weights,
        skip_bad=args.skip_bad,
    )
    src = ev.ensemble.source
    first = Path(args.runs[0])
    base = first if first.is_dir() else first.parent
    name = f"ensemble-eval-{src['dataset'].replace(':', '_').replace('/', '_')}-{src['split']}"
    out_dir = Path(args.out) if args.out else base.parent / name
    if args.json:
        print(dumps_json(ev.to_dict() | {"out_dir": str(out_dir)}))
    else:
        print(ev.table())
        print(f"\nthe ensemble ({len(ev.members)} runs, {ev.combine}):")
        print(ev.ensemble.table())
    sys.stdout.flush()
    ev.ensemble.save(out_dir)
    if not args.json:
        print(f"\nthe ensemble's metrics and confusion matrix (counts, row-normalised) written to {out_dir}")
    return 0

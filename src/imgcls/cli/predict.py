"""``imgcls predict RUN FILES_OR_DIRS...``: the top-k classes of each image, as a table, JSON or CSV.

``RUN`` may be an ``.onnx`` file written by ``imgcls export`` (or pass it as ``--onnx FILE``): it then runs in
onnxruntime, without torch model code.

CSV (``--csv``) has one row per top-k entry: ``input,rank,class,probability`` (rank from 1; an empty probability
where the model gave a non-finite one). JSON never holds NaN: such a probability is ``null``.

``imgcls predict RUN1 RUN2 ... FILES_OR_DIRS...``: the leading arguments that are runs (a directory holding a
``model.json``, or a ``.safetensors`` file) predict together as an ensemble (``--combine``).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="classify image files", description="Classify image files with a trained run."
    )
    p.add_argument(
        "run",
        help="run directory (runs/NAME), a .safetensors file inside one, or an .onnx file from imgcls export; "
        "more runs may follow (an ensemble)",
    )
    p.add_argument("inputs", nargs="*", help="image files or folders (searched recursively)")
    p.add_argument(
        "--onnx",
        default=None,
        metavar="FILE",
        help="classify with this ONNX file in onnxruntime (then RUN is an input)",
    )
    p.add_argument(
        "--combine",
        default="mean-logits",
        choices=["mean-logits", "mean-probs", "vote"],
        help="how several runs combine (default: mean-logits)",
    )
    p.add_argument("-k", "--top-k", type=int, default=5, help="classes per image (default: 5)")
    p.add_argument("--weights", default="best", choices=["best", "last"])
    p.add_argument("--tta-flip", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument(
        "--skip-bad",
        action="store_true",
        help="leave out unreadable images (named on stderr) instead of stopping",
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fmt.add_argument(
        "--csv", action="store_true", help="print CSV instead of a table: input,rank,class,probability"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imgcls.errors import DataError
    from imgcls.predict import predict
    from imgcls.utils.files import dumps_json

    runs, inputs = ([args.onnx], [args.run, *args.inputs]) if args.onnx else ([args.run], list(args.inputs))
    while len(inputs) > 1 and _is_run(inputs[0]):  # RUN1 RUN2 ... FILES: the leading runs are an ensemble
        runs.append(inputs.pop(0))
    if not inputs:
        raise DataError("no images to classify: give image files or folders after the run")
    preds = predict(
        runs if len(runs) > 1 else runs[0],
        inputs,
        combine=args.combine,
        top_k=args.top_k,
        device=args.device,
        tta_flip=args.tta_flip,
        which=args.weights,
        batch_size=args.batch_size,
        skip_bad=args.skip_bad,
    )
    if args.json:
        print(dumps_json([p.to_dict() for p in preds]))
        return 0
    if args.csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["input", "rank", "class", "probability"])
        for p in preds:
            for rank, (name, prob) in enumerate(p.top, 1):
                w.writerow([p.input, rank, name, repr(prob) if math.isfinite(prob) else ""])
        return 0
    for p in preds:
        print(p.input)
        for name, prob in p.top:
            print(f"  {100 * prob:6.2f}%  {name}")
    return 0


def _is_run(arg: str) -> bool:
    """Whether a command-line argument names a run (a directory with a model.json, or a .safetensors file)."""
    p = Path(arg)
    return (p.is_dir() and (p / "model.json").is_file()) or (p.suffix == ".safetensors" and p.is_file())

"""``imgcls predict RUN FILES_OR_DIRS...``: the top-k classes of each image, as a table or JSON."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "predict", help="classify image files", description="Classify image files with a trained run."
    )
    p.add_argument("run", help="run directory (runs/NAME) or a .safetensors file inside one")
    p.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("-k", "--top-k", type=int, default=5, help="classes per image (default: 5)")
    p.add_argument("--weights", default="best", choices=["best", "last"])
    p.add_argument("--tta-flip", action=argparse.BooleanOptionalAction, default=None)
    p.add_argument("--device", default="auto")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imgcls.predict import predict

    preds = predict(
        args.run,
        args.inputs,
        top_k=args.top_k,
        device=args.device,
        tta_flip=args.tta_flip,
        which=args.weights,
        batch_size=args.batch_size,
    )
    if args.json:
        print(json.dumps([p.to_dict() for p in preds], indent=2))
        return 0
    for p in preds:
        print(p.path)
        for name, prob in p.top:
            print(f"  {100 * prob:6.2f}%  {name}")
    return 0

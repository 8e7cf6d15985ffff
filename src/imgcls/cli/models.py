"""``imgcls models [PATTERN]``: the registered models with their parameter counts."""

from __future__ import annotations

import argparse
import json

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("models", help="list the registered models", description="List the registered models.")
    p.add_argument(
        "pattern", nargs="?", default="*", help="shell pattern or substring, e.g. 'resnet*' or vit"
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imgcls.models import get_model_spec, list_models

    names = list_models(args.pattern)
    rows = []
    for name in names:
        s = get_model_spec(name)
        rows.append(
            {
                "name": name,
                "family": s.family,
                "params": s.num_params,
                "params_at": s.ref_kwargs.get("num_classes", 1000),
                "input_size": list(s.input_size),
                "source": s.source,
            }
        )
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no model matches '{args.pattern}'")
        return 1
    w = max(len(r["name"]) for r in rows)
    print(f"{'model':<{w}}  {'family':<14} {'params':>13}  {'classes':>7}  input")
    for r in rows:
        params = f"{r['params']:,}" if r["params"] is not None else "?"
        size = "x".join(map(str, r["input_size"]))
        print(f"{r['name']:<{w}}  {r['family']:<14} {params:>13}  {r['params_at']:>7}  {size}")
    print(f"{len(rows)} models")
    return 0

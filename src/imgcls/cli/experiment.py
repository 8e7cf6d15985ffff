"""``imgcls experiment list | run NAME``: the papers' claims as experiments (see :mod:`imgcls.experiments`)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "experiment",
        help="rerun a paper's claim (degradation, receptive fields, ...) and report whether it held",
        description=(
            "The papers' claims as experiments: 'list' shows them, 'run NAME' trains the runs it needs "
            "(reusing finished runs from the cache, resuming interrupted ones), writes report.md, results.json "
            "and PNG plots, and prints whether the claim's direction held, with the numbers."
        ),
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True
    actions.add_parser("list", help="the experiments and their claims")
    r = actions.add_parser("run", help="run one experiment and write its report")
    r.add_argument("name", metavar="NAME", help="an experiment (imgcls experiment list)")
    scale = r.add_mutually_exclusive_group()
    scale.add_argument(
        "--quick", action="store_const", const="quick", dest="scale", help="the small version (minutes)"
    )
    scale.add_argument(
        "--scale",
        choices=("tiny", "quick", "full"),
        dest="scale",
        help="tiny: a smoke test of a few steps; quick: as --quick; full: the default",
    )
    r.add_argument("--out", default=None, help="report directory (default: experiments/NAME-SCALE)")
    r.add_argument(
        "--cache",
        default=None,
        help="directory of finished runs, shared by experiments (default: experiments/cache)",
    )
    r.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    r.set_defaults(scale="full")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imgcls.experiments import get_experiment, list_experiments, run_experiment

    if args.action == "list":
        for name in list_experiments():
            exp = get_experiment(name)
            print(f"{name:20s} {exp.claim}")
            print(f"{'':20s} ({exp.source})")
        return 0
    report = run_experiment(args.name, args.scale, args.out, args.cache, progress=args.progress)
    print("\n".join(report.lines()))
    return 0

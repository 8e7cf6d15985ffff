"""``imgcls explain RUN IMAGE... [--method M] [--layer L] [--class C] [--out DIR]``: pictures of what a
trained run looks at (:func:`imgcls.explain.run.explain_run`)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]

METHOD_HELP = (
    "gradcam, gradcam++, occlusion, deconvnet, guided-backprop, filters, feature-maps, attention, rollout, "
    "or all (default: every method that applies to the model)"
)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "explain",
        help="pictures of what a trained model looks at",
        description="Explain a trained run's predictions: Grad-CAM(++), occlusion, deconvnet, guided "
        "backpropagation, filters, feature maps, attention maps and rollout. Writes METHOD.png, METHOD.npy "
        "and explain.json.",
    )
    p.add_argument("run", help="run directory (runs/NAME) or a .safetensors file inside one")
    p.add_argument("inputs", nargs="+", help="image files or folders (searched recursively)")
    p.add_argument("--method", nargs="+", default=["all"], metavar="M", help=METHOD_HELP)
    p.add_argument("--layer", default=None, help="target layer by module name (default: the model's own)")
    p.add_argument(
        "--class",
        dest="target",
        default=None,
        help="class to explain, by name or index (default: each image's predicted class)",
    )
    p.add_argument("--out", default=None, help="output folder (default: RUN/explain)")
    p.add_argument("--top-k", type=int, default=4, help="feature maps the deconvnet projects per image")
    p.add_argument("--weights", default="best", choices=["best", "last"])
    p.add_argument("--device", default="auto")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imgcls.explain.run import explain_run

    result = explain_run(
        args.run,
        args.inputs,
        methods=args.method,
        layer=args.layer,
        target=args.target,
        out_dir=args.out,
        which=args.weights,
        device=args.device,
        top_k=args.top_k,
    )
    for path in result.files:
        print(path)
    for method, why in result.skipped.items():
        print(f"skipped {method}: {why}")
    return 0

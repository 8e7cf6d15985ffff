"""``imgcls summary MODEL_OR_RUN``: a model layer by layer (shapes, parameters, MACs, FLOPs, receptive fields)."""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]

_MAX_CHANNELS = 64
_MAX_SIDE = 16_384


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "summary",
        help="a model layer by layer: shapes, parameters, MACs, FLOPs, receptive fields",
        description=(
            "A model layer by layer: output shape, trainable and frozen parameters, multiply-adds (MACs) and "
            "FLOPs (2 per multiply-add), activation memory, and the receptive field, jump and start of each "
            "layer's units, for one image. Runs on the meta device: no memory, no arithmetic."
        ),
    )
    p.add_argument(
        "target", metavar="MODEL_OR_RUN", help="a registered model name (imgcls models) or a run directory"
    )
    p.add_argument(
        "--input",
        metavar="CxHxW",
        help="input size, e.g. 3x224x224 or 224x224 (default: the model's native size; a run's training size)",
    )
    p.add_argument(
        "--depth", type=int, default=3, help="nesting depth of the rows (default: 3; 0: the model only)"
    )
    p.add_argument(
        "--num-classes", type=int, default=None, help="classifier outputs (default: 1000; a run's own)"
    )
    fmt = p.add_mutually_exclusive_group()
    fmt.add_argument("--json", action="store_true", help="print JSON instead of a table")
    fmt.add_argument("--csv", action="store_true", help="print CSV (one row per layer) instead of a table")
    p.set_defaults(func=run)


def parse_input_size(text: str) -> tuple[int, ...]:
    """``"3x224x224"`` -> (3, 224, 224); ``"224x224"`` -> (224, 224); ``"224"`` -> (224, 224)."""
    from imgcls.errors import ConfigError

    parts = text.lower().replace(",", "x").split("x")
    if not 1 <= len(parts) <= 3 or not all(p.strip().isdigit() for p in parts):
        raise ConfigError(f"--input must look like 3x224x224 (C x H x W) or 224x224, got '{text}'")
    size = tuple(int(p) for p in parts)
    size = (size[0], size[0]) if len(size) == 1 else size
    chans, sides = (size[0], size[1:]) if len(size) == 3 else (1, size)
    if not 1 <= chans <= _MAX_CHANNELS or not all(1 <= s <= _MAX_SIDE for s in sides):
        raise ConfigError(
            f"--input {text}: channels must be 1..{_MAX_CHANNELS} and sides 1..{_MAX_SIDE}, e.g. 3x224x224"
        )
    return size


def run(args: argparse.Namespace) -> int:
    from imgcls.analysis import summarize_model
    from imgcls.errors import ConfigError
    from imgcls.utils.files import dumps_json

    if args.depth < 0:
        raise ConfigError(f"--depth must be >= 0, got {args.depth}")
    if args.num_classes is not None and args.num_classes < 1:
        raise ConfigError(f"--num-classes must be >= 1, got {args.num_classes}")
    size = parse_input_size(args.input) if args.input else None
    summary = summarize_model(args.target, size, depth=args.depth, num_classes=args.num_classes)
    if args.json:
        print(dumps_json(summary.to_dict()))
    elif args.csv:
        print(summary.to_csv(), end="")
    else:
        print(summary.to_table())
    return 0

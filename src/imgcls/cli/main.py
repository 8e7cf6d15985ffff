"""``imgcls`` entry point: one sub-command per module in this package.

Each sub-command module offers ``add_parser(subparsers)``, which registers its parser and sets
``func=run`` where ``run(args) -> int`` calls the library. A user's mistake (an :class:`ImgclsError`)
becomes one line on stderr and exit status 2; never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from imgcls.errors import ImgclsError

log = logging.getLogger("imgcls")

# Sub-command modules, in the order ``imgcls --help`` lists them.
COMMANDS = ("train", "eval", "predict", "models", "baseline")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgcls", description="Image classification: train, evaluate and use the classic networks."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"imgcls.cli.{name}").add_parser(sub)
    return parser


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:
        # ``imgcls`` alone: the main job is ``imgcls train``; show the commands instead of guessing.
        parser.print_help()
        return 0
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 0
    _setup_logging(args.verbose, args.quiet)
    try:
        return int(args.func(args) or 0)
    except ImgclsError as e:
        print(f"imgcls {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"imgcls {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

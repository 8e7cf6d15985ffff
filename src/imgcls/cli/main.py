"""``imgcls`` entry point: one sub-command per module in this package.

Each sub-command module offers ``add_parser(subparsers)``, which registers its parser and sets
``func=run`` where ``run(args) -> int`` calls the library.

What the command line promises: an error prints one line on stderr, never a traceback (``-v`` adds the
traceback), and the exit status says what happened:

- 0: done. 1: an internal error (a bug: rerun with ``-v`` and report it), or ``imgcls models`` matched nothing.
- 2: a mistake in the command, the settings or the files (an :class:`ImgclsError`, a bad flag), a disk
  that refused (no space, read-only, no permission) or memory that ran out; the line names the problem and
  the fix.
- 130 (Ctrl-C, SIGINT) and 143 (SIGTERM): stopped; a training run keeps its last finished epoch and continues
  with ``imgcls train --resume RUN``.
- 141: the reader of the output went away (``imgcls models | head -3``); the rest of the output is dropped
  quietly, as for any command killed by SIGPIPE.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import signal
import sys
import threading
import traceback
from collections.abc import Iterator, Sequence
from types import FrameType

from imgcls.errors import ImgclsError, describe_os_error, os_errno

log = logging.getLogger("imgcls")

# Sub-command modules, in the order ``imgcls --help`` lists them.
COMMANDS = (
    "train",
    "eval",
    "predict",
    "explain",
    "export",
    "quantize",
    "serve",
    "models",
    "summary",
    "baseline",
    "experiment",
)

EXIT_INTERNAL_ERROR = 1
EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 128 + 2  # SIGINT, as a shell reports a process it killed
EXIT_BROKEN_PIPE = 128 + 13  # SIGPIPE
EXIT_TERMINATED = 128 + 15  # SIGTERM

# Where each command writes (flag, attribute): a failed write names the flag that writes elsewhere.
OUTPUT_FLAGS = {
    "train": ("--out-dir", "out_dir"),
    "eval": ("--out", "out"),
    "explain": ("--out", "out"),
    "baseline": ("--out-dir", "out_dir"),
    "export": ("--out", "out"),
    "quantize": ("--out", "out"),
    "experiment": ("--out", "out"),
}


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, like Ctrl-C: the trainer stops and leaves a resumable run."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="imgcls", description="Image classification: train, evaluate and use the classic networks."
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging, tracebacks of errors")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        importlib.import_module(f"imgcls.cli.{name}").add_parser(sub)
    return parser


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    # -v is imgcls's debug output; the libraries' own debug lines stay out (matplotlib's font search alone
    # logs hundreds when a run draws its curves)
    logging.basicConfig(level=max(level, logging.INFO), format="%(message)s", stream=sys.stderr)
    logging.getLogger("imgcls").setLevel(level)


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    """While inside, SIGTERM (``kill``, a job scheduler's stop) raises :class:`Terminated`, as Ctrl-C does."""
    if threading.current_thread() is not threading.main_thread():  # signal handlers live in the main thread
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _silence_stdout() -> None:
    """Point stdout at the null device: its reader is gone, and the flush at exit must not fail again."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # stdout is no file descriptor (captured, e.g. in tests)
        pass


def _error(args: argparse.Namespace, message: str, code: int) -> int:
    print(f"imgcls {args.command}: {message}", file=sys.stderr)
    return code


def _out_of_memory(e: Exception) -> bool:
    """Whether ``e`` is an allocation that failed: a batch or image size too large for this machine."""
    torch = sys.modules.get("torch")
    if isinstance(e, MemoryError) or (torch is not None and isinstance(e, torch.OutOfMemoryError)):
        return True
    return "DefaultCPUAllocator: can't allocate memory" in str(e)


def _unexpected(args: argparse.Namespace, e: Exception) -> int:
    """An exception that is no ImgclsError: a disk that refused is the user's to fix; anything else is a bug."""
    if args.verbose:
        traceback.print_exc()
    if os_errno(e) is not None:
        flag, attr = OUTPUT_FLAGS.get(args.command, (None, ""))
        elsewhere = f"pass another {flag}" if flag else "write elsewhere"
        line = describe_os_error(e, getattr(args, attr, None) if attr else None, elsewhere)
        return _error(args, f"error: {line}", EXIT_USER_ERROR)
    first = str(e).strip().splitlines()[0] if str(e).strip() else ""
    if _out_of_memory(e):
        return _error(args, f"error: out of memory ({first[:120]}): lower --batch-size", EXIT_USER_ERROR)
    hint = "" if args.verbose else "rerun with -v for the traceback; "
    return _error(
        args, f"internal error: {type(e).__name__}: {first} ({hint}please report it)", EXIT_INTERNAL_ERROR
    )


def _run(args: argparse.Namespace) -> int:
    """Call the sub-command; every failure becomes one line on stderr and an exit status (module docstring)."""
    try:
        return int(args.func(args) or 0)
    except ImgclsError as e:
        return _error(args, f"error: {e}", EXIT_USER_ERROR)
    except Terminated:
        return _error(args, "terminated (SIGTERM)", EXIT_TERMINATED)
    except KeyboardInterrupt:
        return _error(args, "interrupted", EXIT_INTERRUPTED)
    except BrokenPipeError:
        raise  # main() handles it, after the final flush
    except Exception as e:
        return _unexpected(args, e)


def _main(argv: list[str]) -> int:
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
    with _sigterm_as_interrupt():
        return _run(args)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        try:
            return _main(list(sys.argv[1:] if argv is None else argv))
        finally:
            sys.stdout.flush()  # a reader that went away shows here, not as an error at exit
    except BrokenPipeError:
        _silence_stdout()
        return EXIT_BROKEN_PIPE


if __name__ == "__main__":
    sys.exit(main())

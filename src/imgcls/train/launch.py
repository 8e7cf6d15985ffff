"""``imgcls train --nproc N``: one run trained by N processes of this machine, started by torchrun's own
machinery (``torch.distributed.launcher.elastic_launch``, a standalone c10d rendezvous on this machine), not a
process manager of our own.

Each process runs the trainer, which joins the others through :mod:`imgcls.train.distributed`; this module
sits above the trainer and only starts the processes and reports the first failure in one line.
"""

from __future__ import annotations

import logging
import os
import tempfile
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

from imgcls.errors import ConfigError, ImgclsError
from imgcls.train.config import TrainConfig
from imgcls.train.distributed import DistributedError, error_class, first_line
from imgcls.train.trainer import TrainResult, train

__all__ = ["launch_training"]


def launch_training(cfg: TrainConfig, nproc: int) -> TrainResult:
    """Train ``cfg`` on ``nproc`` processes of this machine, started by torchrun's machinery; returns rank 0's
    result. Each process gets ``cpu_count // nproc`` threads unless ``cfg.threads`` says otherwise (torchrun
    itself gives 1). A process that fails stops the others; its one-line message is raised here."""
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    if not isinstance(nproc, int) or nproc < 1:
        raise ConfigError(f"nproc must be a positive number of processes, got {nproc!r}")
    if nproc == 1:
        return train(cfg)
    if cfg.threads is None:
        cfg = replace(cfg, threads=max(1, (os.cpu_count() or 1) // nproc))
    config = LaunchConfig(
        min_nodes=1,
        max_nodes=1,
        nproc_per_node=nproc,
        run_id=f"imgcls-{uuid.uuid4().hex[:12]}",
        rdzv_backend="c10d",  # torchrun --standalone: a rendezvous on a free port of this machine
        rdzv_endpoint="localhost:0",
        max_restarts=0,
        monitor_interval=0.1,
        start_method="spawn",
    )
    level = logging.getLogger("imgcls").getEffectiveLevel()
    elastic = logging.getLogger("torch.distributed.elastic")
    saved = elastic.level
    elastic.setLevel(logging.CRITICAL)  # its report of a failed worker is a traceback; ours is one line
    with tempfile.TemporaryDirectory(prefix="imgcls-dist-") as errors_dir:
        try:
            results = elastic_launch(config, _worker)(cfg, level, errors_dir)
        except ChildFailedError as e:
            raise _child_error(e, Path(errors_dir)) from None
        finally:
            elastic.setLevel(saved)
    return results[0]


def _child_error(e: Any, errors_dir: Path) -> ImgclsError:
    """The error of the first process that failed: its own one-line message, else how it ended."""
    for rank in sorted(e.failures):
        path = errors_dir / f"rank{rank}.txt"
        if path.is_file():
            name, _, message = path.read_text(encoding="utf-8").partition("\n")
            cls = error_class(name)
            if cls is DistributedError and name != DistributedError.__name__:  # not the user's to fix: a bug
                message = (
                    f"internal error in training process {rank}: {name}: {message.strip()} (please report it)"
                )
            return cls(message.strip())
    rank, failure = min(e.failures.items())
    how = f"signal {failure.signal_name()}" if failure.exitcode < 0 else f"exit status {failure.exitcode}"
    return DistributedError(
        f"training process {rank} died ({how}) and the run stopped: resume it with "
        "imgcls train --resume RUN (any number of processes)"
    )


def _worker(cfg: TrainConfig, level: int, errors_dir: str) -> TrainResult:
    """One process of :func:`launch_training`: set up logging as the CLI does, train, and on failure leave a
    one-line message for the launcher before exiting."""
    logging.basicConfig(level=level, format="%(message)s")
    try:
        return train(cfg)
    except Exception as e:
        rank = os.environ.get("RANK", "0")
        Path(errors_dir, f"rank{rank}.txt").write_text(f"{type(e).__name__}\n{first_line(e)}\n", "utf-8")
        raise SystemExit(2) from None

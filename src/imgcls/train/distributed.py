"""Training on several processes with PyTorch's own engine: ``torch.distributed`` started by torchrun.

``torchrun --nproc-per-node N -m imgcls train ...`` (or ``--nnodes``/``--rdzv-endpoint`` for several
machines) starts N processes that each call the same trainer; :func:`setup` finds them in the environment
torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``) and joins the process group: NCCL on
CUDA (one GPU per local rank), gloo on CPUs. ``imgcls train --nproc N`` is
:func:`imgcls.train.launch.launch_training`, above the trainer: the same torchrun machinery.

What each process does is in the trainer; this module holds the plumbing it needs: who is rank 0, sums over
the processes, broadcasts, and a step that only rank 0 takes (writing files) whose failure every rank reports.

A process that dies stops the job (torchrun stops the others; ``launch_training`` raises its one-line
message). With ``torchrun --max-restarts N``, a run given a ``--name`` is resumed from its last checkpoint
when torchrun starts it again (``TORCHELASTIC_RESTART_COUNT`` > 0), with whatever number of processes.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
from torch import nn

from imgcls import errors
from imgcls.errors import ConfigError, ImgclsError

__all__ = [
    "DistContext",
    "DistributedError",
    "in_launched_process",
    "restart_count",
    "setup",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

# What torchrun (and elastic_launch) sets in every process it starts.
_LAUNCHED_ENV = ("LOCAL_RANK", "TORCHELASTIC_RUN_ID")


class DistributedError(ImgclsError):
    """A process of a distributed run failed (its own message says why) or could not join the others."""


def in_launched_process() -> bool:
    """Whether this process was started by torchrun (or :func:`launch_training`)."""
    return any(k in os.environ for k in _LAUNCHED_ENV)


def restart_count() -> int:
    """How many times torchrun restarted this job's processes (``--max-restarts``): 0 on the first start."""
    try:
        return int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0"))
    except ValueError:
        return 0


@dataclass(frozen=True)
class DistContext:
    """This process's place in the run: ``rank`` of ``world_size`` (one process: 0 of 1, and every method is a
    no-op)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""
    owns_group: bool = False  # we joined the group, so we leave it (a caller's own group is left alone)
    device: torch.device = torch.device("cpu")  # where the backend's tensors live (NCCL: the rank's GPU)

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.enabled:
            torch.distributed.barrier()

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """``t`` summed over the processes (a new tensor on ``t``'s device; ``t`` itself where one process)."""
        if not self.enabled:
            return t
        out = t.detach().to(self.device, copy=True)
        torch.distributed.all_reduce(out, op=torch.distributed.ReduceOp.SUM)
        return out.to(t.device)

    def broadcast_buffers(self, module: nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm statistics, which each rank updates on its own batches)."""
        if not self.enabled:
            return
        for b in module.buffers():
            if b.numel():
                tmp = b.detach().to(self.device, copy=True)
                torch.distributed.broadcast(tmp, src=0)
                b.copy_(tmp)

    def on_main(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on rank 0 only and hand its (picklable) result to every rank; where it fails, every rank
        raises, naming rank 0's error (no rank is left waiting for the others)."""
        if not self.enabled:
            return fn()
        result: Any = None
        error: BaseException | None = None
        if self.is_main:
            try:
                result = fn()
            except Exception as e:  # every rank must hear of it before rank 0 raises
                error = e
        box = [(result, None if error is None else (type(error).__name__, first_line(error)))]
        torch.distributed.broadcast_object_list(box, src=0)
        if error is not None:
            raise error
        result, failed = box[0]
        if failed is not None:
            raise error_class(failed[0])(f"{failed[1]} (on rank 0)")
        return result

    def close(self) -> None:
        """Leave the process group, if this context joined it."""
        if self.owns_group and torch.distributed.is_initialized():
            torch.distributed.destroy_process_group()


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def error_class(name: str) -> type[ImgclsError]:
    """The imgcls error class of that name (the base class for anything else, e.g. an OSError)."""
    cls = getattr(errors, name, None)
    return cls if isinstance(cls, type) and issubclass(cls, ImgclsError) else DistributedError


def setup(device: torch.device) -> tuple[DistContext, torch.device]:
    """Join the process group torchrun described in the environment; returns the context and the device this
    process trains on (on CUDA, the GPU of its local rank). Without torchrun (``WORLD_SIZE`` unset or 1) and
    without a group the caller made: one process, nothing changes."""
    dist = torch.distributed
    if dist.is_available() and dist.is_initialized():  # the caller's own group
        world, rank = dist.get_world_size(), dist.get_rank()
        local = int(os.environ.get("LOCAL_RANK", rank))
        owns = False
    else:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1:
            return DistContext(), device
        if not dist.is_available():
            raise ConfigError("this PyTorch build has no torch.distributed: run one process (drop --nproc)")
        rank, local = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
        owns = True
    if world <= 1:
        return DistContext(), device
    if device.type == "cuda":
        device = torch.device("cuda", local % max(torch.cuda.device_count(), 1))
        torch.cuda.set_device(device)
        backend = "nccl"
    elif device.type == "cpu":
        backend = "gloo"
    else:
        raise ConfigError(
            f"distributed training runs on CPUs (gloo) or CUDA GPUs (NCCL), not on {device.type}: "
            "pass --device cpu or cuda"
        )
    if owns:
        try:
            dist.init_process_group(backend, device_id=device if backend == "nccl" else None)
        except (RuntimeError, ValueError) as e:
            raise DistributedError(
                f"process {rank} of {world} could not join the others ({first_line(e)}): check that every "
                "process was started with the same torchrun rendezvous (--rdzv-endpoint, --nnodes)"
            ) from None
    else:
        backend = dist.get_backend()
    log.debug("process %d of %d (local %d), %s on %s", rank, world, local, backend, device)
    comm = device if backend == "nccl" else torch.device("cpu")
    return DistContext(rank, world, local, backend, owns, comm), device

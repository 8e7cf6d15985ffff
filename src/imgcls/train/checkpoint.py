"""The run directory: everything needed to rebuild, resume, evaluate and ship a trained model.

Layout of ``runs/NAME/``::

    config.yaml        the resolved TrainConfig
    model.json         model name and arguments, classes, input size, normalisation: rebuilds the model
    last.safetensors   weights after the latest epoch (the EMA weights when EMA is on)
    best.safetensors   weights of the epoch with the best test accuracy
    state.pt           optimizer, schedule, EMA, RNG and history: what --resume needs
    metrics.csv        one row per epoch
    curves.png         loss and accuracy curves
    result.json        final metrics
    .lock              held by the process training in the directory, gone when it ends (see claim_run_dir)

Every file is written atomically (temporary file, fsync, rename), so a crash or kill never leaves a broken one;
a killed write leaves a hidden ``.NAME.*.tmp``, removed when the run starts or resumes. Nothing here runs code
from a file it reads: weights are safetensors, ``state.pt`` is loaded with ``torch.load(weights_only=True)``
(tensors and plain values only), ``model.json`` is checked field by field before anything is built from it.
Identical weights give identical ``.safetensors`` bytes (the header's keys are sorted).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

try:
    import fcntl
except ImportError:  # Windows: the lock file alone, without the kernel's lock
    fcntl = None  # type: ignore[assignment]

import torch
from torch import nn

from imgcls.errors import CheckpointError, ImgclsError
from imgcls.models import create_model
from imgcls.models.pretrained import load_pretrained, load_state_dict_file, torch_load_safely
from imgcls.utils.files import atomic_path, atomic_write_json

__all__ = [
    "LoadedRun",
    "RunClaim",
    "RunInUseError",
    "claim_run_dir",
    "load_run",
    "load_training_state",
    "read_model_info",
    "save_training_state",
    "save_weights",
]

log = logging.getLogger(__name__)

WEIGHTS_LAST = "last.safetensors"
WEIGHTS_BEST = "best.safetensors"
STATE = "state.pt"
MODEL_INFO = "model.json"
LOCK = ".lock"
# Keys every state.pt holds (written by the trainer's _save).
STATE_KEYS = ("epoch", "step", "best_acc", "history", "model", "optimizer", "schedule", "rng_cpu")


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    """Write ``model``'s state dict as safetensors, atomically; identical weights give identical bytes."""
    from safetensors.torch import save_file

    # safetensors wants contiguous, unshared tensors; channels_last parameters are made contiguous here.
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)
        _sort_header(tmp)


def _sort_header(path: Path) -> None:
    """Rewrite the JSON header of the safetensors file ``path`` in place with its keys sorted.

    safetensors writes ``__metadata__`` in hash-map order, which changes from process to process. The sorted
    header holds the same entries in the same compact JSON, so it has the same length (padded with spaces, as
    safetensors pads, should it be shorter); the tensor data is not touched.
    """
    with open(path, "r+b") as f:
        size = int.from_bytes(f.read(8), "little")
        header = json.loads(f.read(size))
        sorted_ = json.dumps(header, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode()
        if len(sorted_) <= size:
            f.seek(8)
            f.write(sorted_.ljust(size))


def strip_module_prefix(state: dict[str, Any]) -> dict[str, Any]:
    """A state dict without the ``module.`` prefix DistributedDataParallel (or DataParallel) puts on every key,
    so that the weights of a wrapped model load into the plain one; other state dicts are returned as they are."""
    if state and all(isinstance(k, str) and k.startswith("module.") for k in state):
        return {k[len("module.") :]: v for k, v in state.items()}
    return state


def save_model_info(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_json(run_dir / MODEL_INFO, info)


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    """Write what ``--resume`` needs: tensors and plain values only (what ``weights_only`` loading allows)."""
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: str | Path) -> dict[str, Any]:
    """Read a ``state.pt`` without running code: ``weights_only=True`` admits tensors and plain values only."""
    state = torch_load_safely(path, "training state", "the run cannot be resumed")
    missing = [k for k in STATE_KEYS if not isinstance(state, dict) or k not in state]
    if missing:
        raise CheckpointError(
            f"training state '{path}' lacks {', '.join(missing)}: it is damaged; the run cannot be resumed"
        )
    return state


def read_model_info(run_dir: Path) -> dict[str, Any]:
    """Read and check ``model.json``: every field a loader builds from, one line naming a bad one."""
    path = run_dir / MODEL_INFO
    if not path.is_file():
        raise CheckpointError(
            f"'{run_dir}' has no {MODEL_INFO}: give an imgcls run directory or a weights file in one"
        )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        reason = e.msg if isinstance(e, json.JSONDecodeError) else "not UTF-8"
        raise CheckpointError(
            f"'{path}' is not valid JSON ({reason}); the run directory is damaged"
        ) from None
    except OSError as e:
        raise CheckpointError(f"cannot read '{path}': {e.strerror or e}") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"'{path}' holds no JSON object; the run directory is damaged")
    _check_model_info(info, path)
    return info


# Bounds of a model.json a loader will build from: far beyond any real run, far below an attack's numbers.
_MAX_CLASSES = 100_000
_MAX_CHANNELS = 64
_MAX_IMAGE_SIZE = 4096
_MAX_PARAMETERS = 2_000_000_000  # 8 GB of float32; the largest registered model, ViT-L/32, has 307 M


def _check_model_info(info: dict[str, Any], path: Path) -> None:
    for key in ("model", "num_classes", "in_chans", "image_size", "mean", "std"):
        if key not in info:
            raise CheckpointError(f"'{path}' lacks '{key}'; the run directory is damaged")

    def bad(key: str, want: str) -> CheckpointError:
        got = repr(info[key])
        got = got if len(got) <= 40 else got[:37] + "..."
        return CheckpointError(
            f"'{path}': {key} must be {want}, got {got}; fix {key} in {MODEL_INFO} or train the run again"
        )

    if not isinstance(info["model"], str):
        raise bad("model", "a model name")
    for key, top in (
        ("num_classes", _MAX_CLASSES),
        ("in_chans", _MAX_CHANNELS),
        ("image_size", _MAX_IMAGE_SIZE),
    ):
        if not _is_int(info[key]) or not 1 <= info[key] <= top:
            raise bad(key, f"a whole number from 1 to {top}")
    classes = info.get("classes")
    if classes is not None and (
        not isinstance(classes, list)
        or len(classes) != info["num_classes"]
        or not all(isinstance(c, str) for c in classes)
    ):
        raise bad("classes", f"a list of {info['num_classes']} names (num_classes)")
    for key in ("mean", "std"):
        values = info[key]
        if (
            not isinstance(values, list)
            or len(values) != info["in_chans"]
            or not all(map(_is_finite, values))
        ):
            raise bad(key, f"a list of {info['in_chans']} finite numbers (in_chans)")
    if not all(v > 0 for v in info["std"]):
        raise bad("std", "positive (images are divided by it)")
    if not isinstance(info.get("model_kwargs", {}), dict):
        raise bad("model_kwargs", "a JSON object of keyword arguments")
    if not isinstance(info.get("model_config", {}), (dict, type(None))):
        raise bad("model_config", "a JSON object (the model's resolved config)")
    if not isinstance(info.get("dataset", ""), str):
        raise bad("dataset", "a dataset name")
    if not isinstance(info.get("tta_flip", False), bool):
        raise bad("tta_flip", "true or false")


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


@dataclass
class LoadedRun:
    """A trained model in eval mode with what is needed to feed it (``info``: classes, mean, std, image_size...)."""

    model: nn.Module
    info: dict[str, Any]
    weights: Path

    @property
    def classes(self) -> list[str]:
        return list(self.info.get("classes") or [str(i) for i in range(self.info["num_classes"])])


def build_model_from_info(info: dict[str, Any]) -> nn.Module:
    return create_model(
        info["model"],
        num_classes=info["num_classes"],
        in_chans=info["in_chans"],
        image_size=info.get("image_size"),
        **info.get("model_kwargs", {}),
    )


def _build_checked(info: dict[str, Any], run_dir: Path) -> nn.Module:
    """Build the model ``model.json`` describes, first on the meta device, where it costs no memory.

    ``model_kwargs`` that do not build the model, or a model far beyond any real run's size, are refused
    before anything is allocated.
    """
    path = run_dir / MODEL_INFO
    try:
        with torch.device("meta"):
            meta = build_model_from_info(info)
    except ImgclsError:
        raise
    except Exception as e:
        reason = str(e).splitlines()[0] if str(e) else ""
        raise CheckpointError(
            f"'{path}' does not build {info['model']} ({type(e).__name__}: {reason}); "
            f"fix model_kwargs in {MODEL_INFO} or train the run again"
        ) from None
    size = sum(t.numel() for t in meta.state_dict().values())
    if size > _MAX_PARAMETERS:
        raise CheckpointError(
            f"'{path}' describes a model of {size:,} values, beyond any imgcls run; the run directory is damaged"
        )
    return build_model_from_info(info)


def model_config(model: nn.Module) -> dict[str, Any] | None:
    """The resolved config of a model built from a config dataclass (``model.cfg``), as JSON values; else None.

    Saved with a run (``model.json``, ``model_config``): a registry name can change its definition between
    versions (``quicknet_s`` got a stride-2 stem) while keeping every weight shape, so loading by name alone
    could silently compute something else.
    """
    cfg = getattr(model, "cfg", None)
    if not dataclasses.is_dataclass(cfg) or isinstance(cfg, type):
        return None
    try:
        return json.loads(json.dumps(dataclasses.asdict(cfg)))  # tuples -> lists, as the file holds them
    except (TypeError, ValueError):
        return None


def check_model_config(model: nn.Module, info: dict[str, Any], run_dir: Path) -> None:
    """Refuse a rebuilt model whose config differs from the one the run was trained with."""
    saved, now = info.get("model_config"), model_config(model)
    if saved is None or now is None or saved == now:
        return
    diff = {k: saved.get(k) for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)}
    raise CheckpointError(
        f"'{run_dir}' was trained with another definition of {info['model']} (differs in "
        + ", ".join(f"{k}: {saved.get(k)!r} saved, {now.get(k)!r} now" for k in diff)
        + f"); add {json.dumps(diff)} to model_kwargs in {run_dir / MODEL_INFO} to rebuild it as trained"
    )


def load_run(path: str | Path, device: str | torch.device = "cpu", which: str = "best") -> LoadedRun:
    """Rebuild and load a trained model from a run directory (``which``: best | last) or a weights file in one."""
    path = Path(path)
    if path.is_dir():
        run_dir = path
        weights = run_dir / (WEIGHTS_BEST if which == "best" else WEIGHTS_LAST)
        if not weights.is_file():
            weights = run_dir / WEIGHTS_LAST
    elif path.is_file():
        run_dir, weights = path.parent, path
    else:
        raise CheckpointError(
            f"'{path}' does not exist: give a run directory (runs/NAME) or a .safetensors file"
        )
    info = read_model_info(run_dir)
    if not weights.is_file():
        raise CheckpointError(
            f"'{run_dir}' holds no weights yet ({WEIGHTS_LAST}); did the first epoch finish?"
        )
    model = _build_checked(info, run_dir)
    check_model_config(model, info, run_dir)
    load_pretrained(model, load_state_dict_file(weights))
    model.to(device).eval()
    return LoadedRun(model=model, info=info, weights=weights)


class RunInUseError(ImgclsError):
    """Another process is training in the run directory."""


class RunClaim:
    """This process's claim on a run directory: the open, locked ``.lock`` file holding its PID.

    The kernel's lock (``flock``) goes with the process: the claim of a process that died, even by kill -9,
    is free to take over; its ``.lock`` file stays behind until then. :meth:`release` removes the file.
    """

    def __init__(self, path: Path, fd: int) -> None:
        self.path = path
        self._fd: int | None = fd

    def release(self) -> None:
        if self._fd is None:
            return
        fd, self._fd = self._fd, None
        if fcntl is None:  # Windows cannot remove an open file
            os.close(fd)
            self.path.unlink(missing_ok=True)
        else:  # removed before it is unlocked: a process that opened it meanwhile sees it is gone
            self.path.unlink(missing_ok=True)
            os.close(fd)

    def __enter__(self) -> RunClaim:
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def claim_run_dir(run_dir: Path) -> RunClaim:
    """Claim ``run_dir`` (which must exist) for this process, or raise :class:`RunInUseError` naming the owner.

    Two runs writing one directory would mix their files, so every run (new or resumed) claims its directory
    before writing to it and holds the claim until it ends.
    """
    path = run_dir / LOCK
    fd = _open_locked(path) if fcntl is not None else _create_exclusive(path)
    if fd is None:
        owner = _read_pid(path)
        hint = "" if fcntl is not None else f" (if that process is gone, delete {path})"
        raise RunInUseError(
            f"run directory '{run_dir}' is in use by {f'process {owner}' if owner else 'another process'}: "
            f"wait for it to end, or pass another --name{hint}"
        )
    os.ftruncate(fd, 0)
    os.write(fd, f"{os.getpid()}\n".encode())
    return RunClaim(path, fd)


def _open_locked(path: Path) -> int | None:
    """Open ``path`` and take its exclusive ``flock``; None while another open file holds it."""
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            return None
        try:
            if os.path.samestat(os.fstat(fd), os.stat(path)):
                return fd
        except FileNotFoundError:
            pass
        os.close(fd)  # its owner released and removed it between our open and our lock: open the new one


def _create_exclusive(path: Path) -> int | None:
    """Without ``flock`` (Windows) the file's existence is the lock; a dead owner's file is deleted by hand."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o666)
    except FileExistsError:
        return None


def _read_pid(path: Path) -> int | None:
    try:
        with open(path, "rb") as f:
            text = f.read(32).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None

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

Every file is written atomically (temporary file, fsync, rename), so a crash or kill never leaves a broken one.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.errors import CheckpointError
from imgcls.models import create_model
from imgcls.models.pretrained import load_pretrained, load_state_dict_file
from imgcls.utils.files import atomic_path, atomic_write_json

__all__ = ["LoadedRun", "load_run", "read_model_info", "save_training_state", "save_weights"]

log = logging.getLogger(__name__)

WEIGHTS_LAST = "last.safetensors"
WEIGHTS_BEST = "best.safetensors"
STATE = "state.pt"
MODEL_INFO = "model.json"


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> None:
    from safetensors.torch import save_file

    # safetensors wants contiguous, unshared tensors; channels_last parameters are made contiguous here.
    state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata=metadata)


def save_model_info(run_dir: Path, info: dict[str, Any]) -> None:
    atomic_write_json(run_dir / MODEL_INFO, info)


def save_training_state(path: str | Path, state: dict[str, Any]) -> None:
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_training_state(path: str | Path) -> dict[str, Any]:
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as e:
        raise CheckpointError(
            f"cannot read training state '{path}': {type(e).__name__}; the run cannot be resumed"
        ) from None


def read_model_info(run_dir: Path) -> dict[str, Any]:
    path = run_dir / MODEL_INFO
    if not path.is_file():
        raise CheckpointError(
            f"'{run_dir}' has no {MODEL_INFO}: give an imgcls run directory or a weights file in one"
        )
    try:
        info = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise CheckpointError(f"'{path}' is not valid JSON ({e.msg}); the run directory is damaged") from None
    for key in ("model", "num_classes", "in_chans"):
        if key not in info:
            raise CheckpointError(f"'{path}' lacks '{key}'; the run directory is damaged")
    return info


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
    model = build_model_from_info(info)
    check_model_config(model, info, run_dir)
    load_pretrained(model, load_state_dict_file(weights))
    model.to(device).eval()
    return LoadedRun(model=model, info=info, weights=weights)

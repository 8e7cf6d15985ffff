"""``imgcls train``: every TrainConfig field is a flag; ``--config FILE.yaml`` overlays; ``--preset`` picks a start."""

from __future__ import annotations

import argparse
import json
import logging
import os
import typing
from dataclasses import MISSING, fields
from typing import Any

from imgcls.errors import ConfigError
from imgcls.train.config import PRESETS, TrainConfig, resolve_config

__all__ = ["add_parser", "run"]

log = logging.getLogger(__name__)

_HELP = {
    "model": "registered model name (imgcls models)",
    "model_kwargs": "model arguments as key=value[,key=value] or JSON, e.g. drop_path_rate=0.1",
    "dataset": "fashion-mnist, mnist, cifar10, cifar100, digits or folder:PATH",
    "preset": f"named settings: {', '.join(PRESETS)} (fast is what plain 'imgcls train' does)",
    "resume": "continue the run in this directory",
    "amp": "mixed precision: auto (bf16 where fast), off, bf16, fp16 (GPU)",
    "optimizer": "auto (muon from batches of 256 on, sgd below), muon (its weight matrices; sgd for the rest), "
    "sgd (Nesterov momentum), adamw",
    "lr": "peak learning rate (auto: follows the batch size); with muon, that of the parameters SGD trains",
    "muon_lr": "with --optimizer muon: the peak learning rate of the convolutions' and linear layers' weights",
    "prune_easy": "InfoBatch: in the epochs between the first and the last, leave out each image whose last loss "
    "was below the mean with this probability, the kept ones weighing more (0, the default: every image)",
    "augment": "augmentation: auto (mirror; padded crops too on small data), none, flip, light, standard, strong",
    "epochs": "number of epochs (fractions allowed)",
    "device": "auto, cpu, cuda, cuda:N or mps",
    "progress": "a progress bar while stderr is a terminal (elsewhere: plain log lines, see --log-every)",
    "pretrained": "weights to start from: a torchvision-layout .pth, a .safetensors file or an imgcls run "
    "directory; the stem that fits it is used, the input layer adapted to the data's channels and the "
    "classifier replaced for its class count",
    "freeze_backbone": "train only the head (what the model's reset_classifier replaces)",
    "unfreeze_after": "with --freeze-backbone: train every parameter from epoch N+1 on",
    "head_lr_mult": "the head's learning rate is --lr times this (e.g. 10 with a small --lr)",
    "sync_bn": "distributed runs on CUDA: synchronise BatchNorm statistics over the processes (not on CPUs)",
    "filter_rms_limit": "after each optimizer step, rescale every conv filter whose RMS exceeds this (Zeiler & "
    "Fergus 2013, sec. 3); zfnet already caps at 0.1, the paper's radius",
    "log_every": "without a progress bar (stderr not a terminal, or --no-progress): log loss, accuracy, lr and "
    "img/s every N optimizer steps; 0: only the per-epoch line",
}


def _parse_kwargs(text: str) -> dict[str, Any]:
    """``a=1,b=x`` or a JSON object -> dict, values parsed as JSON where they parse."""
    text = text.strip()
    if text.startswith("{"):
        try:
            value = json.loads(text)
        except json.JSONDecodeError as e:
            raise argparse.ArgumentTypeError(f"not valid JSON: {e.msg}") from None
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError("expected a JSON object")
        return value
    out: dict[str, Any] = {}
    for item in filter(None, text.split(",")):
        if "=" not in item:
            raise argparse.ArgumentTypeError(f"'{item}' is not key=value")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = json.loads(v)
        except json.JSONDecodeError:
            out[k.strip()] = v
    return out


def _add_field(p: argparse.ArgumentParser, name: str, typ: Any, default: Any) -> None:
    flag = "--" + name.replace("_", "-")
    args, origin = typing.get_args(typ), typing.get_origin(typ)
    if args and type(None) in args and origin is not typing.Literal:
        typ = next(a for a in args if a is not type(None))
        origin, args = typing.get_origin(typ), typing.get_args(typ)
    help_text = _HELP.get(name, "")
    shown = f"(default: {default})" if default not in (None, MISSING, {}, []) else ""
    kw: dict[str, Any] = {"dest": name, "default": argparse.SUPPRESS, "help": f"{help_text} {shown}".strip()}
    if typ is bool:
        p.add_argument(flag, action=argparse.BooleanOptionalAction, **kw)
    elif origin is typing.Literal:
        p.add_argument(flag, choices=list(args), **kw)
    elif origin is dict:
        p.add_argument(flag, type=_parse_kwargs, metavar="K=V,...", **kw)
    elif origin is list:
        p.add_argument(flag, type=float, nargs="+", **kw)
    elif typ in (int, float, str):
        p.add_argument(flag, type=typ, **kw)
    else:  # pragma: no cover - a new field type needs a rule here
        raise TypeError(f"no CLI rule for field {name}: {typ}")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "train",
        help="train a model (no arguments: the fast preset on Fashion-MNIST)",
        description="Train a model. Settings: defaults < --preset < --config files < flags.",
    )
    p.add_argument(
        "--config", action="append", default=[], metavar="FILE.yaml", help="YAML settings (repeatable)"
    )
    p.add_argument("--json", action="store_true", help="print the final result as JSON")
    p.add_argument(
        "--nproc",
        type=int,
        default=1,
        metavar="N",
        help="train on N processes of this machine with DistributedDataParallel, started by torchrun's "
        "machinery (gloo on CPUs, NCCL on GPUs; --batch-size is the global batch). For several machines run "
        "torchrun --nnodes ... -m imgcls train instead (default: 1)",
    )
    hints = typing.get_type_hints(TrainConfig)
    for f in fields(TrainConfig):
        default = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        _add_field(p, f.name, hints[f.name], default)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imgcls.train import train
    from imgcls.train.distributed import in_launched_process
    from imgcls.train.launch import launch_training

    overrides = {f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    if "dataset" in overrides:
        overrides.setdefault("fallback_dataset", None)  # a dataset asked for by name is never swapped
    if "resume" in overrides and args.config:
        raise ConfigError("--resume takes the run's own config.yaml; drop --config")
    cfg = resolve_config(args.config, overrides)
    nproc = getattr(args, "nproc", 1)
    if nproc < 1:
        raise ConfigError(f"--nproc must be 1 or more, got {nproc}")
    if nproc > 1 and in_launched_process():
        log.warning(
            "note: --nproc is ignored in a process torchrun started (torchrun's --nproc-per-node counts)"
        )
        nproc = 1
    result = launch_training(cfg, nproc) if nproc > 1 else train(cfg)
    if nproc == 1 and os.environ.get("RANK", "0") != "0":  # a process of a torchrun job: rank 0 reports
        return 0
    if args.json:
        print(
            json.dumps(
                {
                    "run_dir": str(result.run_dir),
                    "test_acc": result.test_acc,
                    "test_top5": result.test_top5,
                    "val_acc": result.val_acc,
                    "best_epoch": result.best_epoch,
                    "weights": result.weights,
                    "epochs": result.epochs,
                    "train_seconds": result.train_seconds,
                    "total_seconds": result.total_seconds,
                    "images_per_sec": result.images_per_sec,
                },
                indent=2,
            )
        )
    else:
        chosen = (
            f"best of validation: epoch {result.best_epoch}, {100 * result.val_acc:.2f}%"
            if result.val_acc is not None
            else "last epoch, no validation split"
        )
        print(
            f"test accuracy {100 * result.test_acc:.2f}% (top-5 {100 * result.test_top5:.2f}%) of the "
            f"{result.weights} weights ({chosen}); {result.epochs} epochs in {result.train_seconds:.1f} s "
            f"({result.images_per_sec:.0f} img/s); run saved in {result.run_dir}"
        )
    return 0

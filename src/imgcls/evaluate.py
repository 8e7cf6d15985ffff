"""Evaluating a trained run on a dataset: ``imgcls eval RUN`` and :func:`evaluate_run`.

The figures and report files are :mod:`imgcls.metrics`; this module finds the run's weights and settings,
reads the dataset as the run saw it (its channels, size, statistics and class order) and writes the report.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch
import yaml

from imgcls.data import InMemoryDataset, load_dataset, make_loader
from imgcls.data.info import match_classes
from imgcls.errors import CheckpointError, ConfigError
from imgcls.metrics import EvalResult, evaluate
from imgcls.train.checkpoint import load_run
from imgcls.utils.device import inference_amp, resolve_device

__all__ = ["default_split", "eval_dataset", "evaluate_run"]

log = logging.getLogger(__name__)


def _same_dataset(name: str, trained_on: str | None) -> bool:
    """Whether dataset ``name`` is the one a run was trained on (folders compared by resolved path)."""
    if not trained_on:
        return False
    if name.startswith("folder:") and trained_on.startswith("folder:"):
        return Path(name[7:]).expanduser().resolve() == Path(trained_on[7:]).expanduser().resolve()
    return name.lower() == trained_on.lower()


def default_split(name: str, trained_on: str | None) -> str:
    """The split ``imgcls eval`` scores when none is given: the run's own test split; on a folder of images
    the run never saw, all of it (or its test/ where it has a train/ beside it)."""
    if name.startswith("folder:") and not _same_dataset(name, trained_on):
        root = Path(name[7:]).expanduser()
        return "test" if (root / "train").is_dir() else "all"
    return "test"


def _run_val_fraction(run_dir: Path) -> float:
    """The validation share a run held out of its training images (0 for runs from before validation)."""
    try:
        saved = yaml.safe_load((run_dir / "config.yaml").read_text(encoding="utf-8")) or {}
        value = saved.get("val_fraction", 0.0) if isinstance(saved, dict) else 0.0
        return float(value) if isinstance(value, (int, float)) and 0 <= value < 1 else 0.0
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return 0.0


def evaluate_run(
    run: str | Path,
    *,
    dataset: str | None = None,
    split: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 500,
    device: str = "auto",
    tta_flip: bool | None = None,
    which: str = "best",
    out_dir: Path | None = None,
    save: bool = True,
    skip_bad: bool = False,
) -> tuple[EvalResult, Path]:
    """Evaluate a trained run on ``dataset`` (default: the one it was trained on); writes the reports.

    ``split`` defaults to the run's own test split, or to every image of a folder the run was not trained on
    (see :func:`default_split`). The dataset's classes must be the run's, by name (the same names in another
    order are remapped, with a note). The images are converted to the run's channels and size and normalised
    with the run's own statistics. The result's ``source`` names the run, weights, model, dataset and split;
    the report (see :meth:`EvalResult.save`) goes to ``out_dir`` (default ``RUN/eval-DATASET-SPLIT``).
    """

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}: pass --batch-size 1 or more")
    dev = resolve_device(device)
    loaded = load_run(run, dev, which=which)
    info = loaded.info
    run_dir = loaded.weights.parent
    name = dataset or info.get("dataset")
    if not name:
        raise CheckpointError(f"'{run}' does not say which dataset it was trained on: pass --dataset")
    split = split or default_split(name, info.get("dataset"))
    ds = eval_dataset(info, loaded.classes, run_dir, name, split, data_dir=data_dir, skip_bad=skip_bad)
    loader = make_loader(ds, batch_size, train=False, device=dev)
    flip = info.get("tta_flip", False) if tta_flip is None else tta_flip
    result = evaluate(
        loaded.model,
        loader,
        info["num_classes"],
        classes=loaded.classes,
        amp_dtype=inference_amp(loaded.model, dev, (batch_size, info["in_chans"], *[info["image_size"]] * 2)),
        tta_flip=flip,
    )
    result.source = {
        "run": run_dir.name,
        "weights": loaded.weights.name,
        "model": str(info.get("model", "")),
        "dataset": name,
        "split": split,
    }
    if skipped := getattr(ds, "skipped", ()):
        result.source["skipped"] = [str(p) for p in skipped]
    out = out_dir or run_dir / f"eval-{name.replace(':', '_').replace('/', '_')}-{split}"
    if save:
        result.save(out)
    return result, out


def eval_dataset(
    info: dict[str, Any],
    classes: Sequence[str],
    run_dir: Path,
    name: str,
    split: str,
    *,
    data_dir: str | None = None,
    skip_bad: bool = False,
) -> Any:
    """Dataset ``name``'s ``split`` as a run described by ``info`` (its model.json) sees it: converted to its
    channels and size, labels matched to its ``classes`` by name, normalised with its statistics."""
    ds = load_dataset(
        name,
        split,
        data_dir=data_dir,
        image_size=info["image_size"],
        channels=info["in_chans"],
        val_fraction=_run_val_fraction(run_dir) if _same_dataset(name, info.get("dataset")) else 0.0,
        skip_bad=skip_bad,
    )
    if info.get("classes") is None:  # a run from before class names were stored: counts are all there is
        if ds.info.num_classes != info["num_classes"]:
            raise CheckpointError(
                f"the model has {info['num_classes']} classes but dataset '{name}' has {ds.info.num_classes}: "
                "evaluate on a dataset with the same classes"
            )
        log.warning("'%s' stores no class names: the dataset's labels are taken in their own order", run_dir)
        remap = None
    else:
        remap = match_classes(classes, ds.info.classes, name)
    if remap is not None:
        log.info(
            "dataset '%s' lists the run's classes in another order: its labels are remapped by name", name
        )
        ds = _relabel(ds, remap)
    ds.info = replace(ds.info, mean=tuple(info["mean"]), std=tuple(info["std"]), classes=tuple(classes))
    return ds


def _relabel(ds: Any, remap: list[int]) -> Any:
    """A dataset whose label ``l`` reads ``remap[l]`` (in memory: a new tensor; streaming: a new list)."""
    if hasattr(ds, "images"):
        labels = torch.tensor(remap, dtype=torch.int64)[ds.labels]
        return InMemoryDataset(ds.images, labels, ds.info, ds.skipped)
    ds.labels = [remap[v] for v in ds.labels]
    return ds

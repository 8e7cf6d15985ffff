"""Prediction: the top-k classes of image files with a trained run (``imgcls predict``)."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from imgcls.data.folder import decode_image, image_extensions
from imgcls.errors import ConfigError, DataError
from imgcls.evaluate import predict_logits
from imgcls.train.checkpoint import LoadedRun, load_run
from imgcls.utils.device import autocast, resolve_amp, resolve_device

__all__ = ["Prediction", "collect_images", "predict"]

log = logging.getLogger(__name__)


@dataclass
class Prediction:
    path: str
    top: list[tuple[str, float]]  # (class name, probability), most probable first

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "top": [{"class": c, "prob": p} for c, p in self.top]}


def collect_images(inputs: Iterable[str | Path]) -> list[Path]:
    """Expand files and folders (recursively) into a sorted list of image files."""
    exts = image_extensions()
    files: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.rglob("*") if f.is_file() and f.suffix.lower() in exts)
            if not found:
                log.warning("no images in folder '%s'", p)
            files.extend(found)
        elif p.is_file():
            files.append(p)
        else:
            raise DataError(f"'{p}' does not exist: give image files or folders")
    if not files:
        raise DataError("no images to classify: give image files or folders that contain some")
    return files


@torch.no_grad()
def predict(
    run: str | Path | LoadedRun,
    inputs: Sequence[str | Path],
    *,
    top_k: int = 5,
    device: str = "auto",
    tta_flip: bool | None = None,
    which: str = "best",
    batch_size: int = 64,
) -> list[Prediction]:
    """Classify image files: each is converted to the run's channels and size and normalised as in training."""
    if top_k < 1:
        raise ConfigError(f"top_k must be >= 1, got {top_k}: pass -k 1 or more")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}: pass --batch-size 1 or more")
    dev = resolve_device(device)
    loaded = run if isinstance(run, LoadedRun) else load_run(run, dev, which=which)
    model, info = loaded.model.to(dev).eval(), loaded.info
    classes = loaded.classes
    k = min(top_k, len(classes))
    size = (info["image_size"], info["image_size"])
    mean = torch.tensor(info["mean"], device=dev).view(1, -1, 1, 1)
    std = torch.tensor(info["std"], device=dev).view(1, -1, 1, 1)
    flip = info.get("tta_flip", False) if tta_flip is None else tta_flip
    amp = resolve_amp("auto", dev)
    files = collect_images(inputs)
    out: list[Prediction] = []
    for i in range(0, len(files), batch_size):
        chunk = files[i : i + batch_size]
        arrays = [torch.from_numpy(decode_image(f, info["in_chans"], size)) for f in chunk]
        x = torch.stack(arrays).to(dev).float().div_(255).sub_(mean).div_(std)  # (B, C, H, W)
        with autocast(dev, amp):
            logits = predict_logits(model, x, flip)
        probs = logits.float().softmax(1)
        p, idx = probs.topk(k, dim=1)
        for f, pr, ix in zip(chunk, p.tolist(), idx.tolist()):
            out.append(Prediction(str(f), [(classes[j], q) for j, q in zip(ix, pr)]))
    return out

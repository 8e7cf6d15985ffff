"""Evaluation as the field reports it: top-1 / top-5 accuracy and error, per-class accuracy, confusion matrix.

Optional flip test-time augmentation averages the logits of each image and its mirror (used since
Krizhevsky et al. 2012, who averaged ten crops and their reflections).
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import CheckpointError, ConfigError, DataError, StorageError, describe_os_error
from imgcls.utils.device import autocast
from imgcls.utils.files import atomic_path, atomic_write_json

__all__ = ["EvalResult", "evaluate", "predict_logits", "save_confusion_png"]

log = logging.getLogger(__name__)


@dataclass
class EvalResult:
    n: int
    loss: float
    top1: float  # accuracy in [0, 1]
    top5: float
    per_class: list[float]  # accuracy of each class (NaN where the class has no sample)
    confusion: list[list[int]]  # confusion[true][pred]
    classes: list[str] = field(default_factory=list)

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1

    @property
    def top5_error(self) -> float:
        return 1.0 - self.top5

    def to_dict(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "loss": self.loss,
            "top1": self.top1,
            "top5": self.top5,
            "top1_error": self.top1_error,
            "top5_error": self.top5_error,
            "per_class": dict(zip(self.classes, self.per_class)),
            "confusion": self.confusion,
            "classes": self.classes,
        }

    def table(self) -> str:
        """A plain-text report: the headline figures, then per-class accuracy."""
        lines = [
            f"images       {self.n}",
            f"top-1 acc    {100 * self.top1:6.2f}%   (error {100 * self.top1_error:.2f}%)",
            f"top-5 acc    {100 * self.top5:6.2f}%   (error {100 * self.top5_error:.2f}%)",
            f"loss         {self.loss:.4f}",
            "",
            "per-class accuracy:",
        ]
        width = max((len(c) for c in self.classes), default=5)
        for name, acc in zip(self.classes, self.per_class):
            lines.append(f"  {name:<{width}}  {100 * acc:6.2f}%")
        return "\n".join(lines)

    def save(self, out_dir: str | Path) -> None:
        """Write metrics.json, confusion.csv and confusion.png into ``out_dir``; StorageError where it cannot."""
        out = Path(out_dir)
        try:
            self._write(out)
        except OSError as e:
            line = describe_os_error(e, out, "pass another --out")
            raise StorageError(f"the evaluation report could not be written: {line}") from e

    def _write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / "metrics.json", self.to_dict())
        with atomic_path(out / "confusion.csv") as tmp, open(tmp, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["true\\pred", *self.classes])
            for name, row in zip(self.classes, self.confusion):
                w.writerow([name, *row])
        save_confusion_png(self.confusion, self.classes, out / "confusion.png")


def predict_logits(model: nn.Module, x: torch.Tensor, tta_flip: bool = False) -> torch.Tensor:
    """Logits of a batch, averaged with those of the horizontally mirrored batch when ``tta_flip``."""
    logits = model(x)
    if tta_flip:
        logits = 0.5 * (logits + model(x.flip(-1)))
    return logits


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    *,
    classes: Sequence[str] | None = None,
    amp_dtype: torch.dtype | None = None,
    tta_flip: bool = False,
) -> EvalResult:
    """Evaluate ``model`` (switched to eval mode) over ``batches`` of (images, int labels) already on its device."""
    model.eval()
    confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
    loss_sum = torch.zeros((), dtype=torch.float64)
    top5_hits = torch.zeros((), dtype=torch.long)
    n = 0
    k = min(5, num_classes)
    for x, y in batches:
        device = x.device
        if n == 0:  # accumulate on the batches' device: no per-batch synchronisation
            confusion, loss_sum, top5_hits = confusion.to(device), loss_sum.to(device), top5_hits.to(device)
        with autocast(device, amp_dtype):
            logits = predict_logits(model, x, tta_flip)
        logits = logits.float()
        loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        pred = logits.argmax(1)
        confusion += torch.bincount(y * num_classes + pred, minlength=num_classes**2).view(
            num_classes, num_classes
        )
        top5_hits += (logits.topk(k, dim=1).indices == y[:, None]).any(1).sum()
        n += y.numel()
    if n == 0:
        raise DataError("nothing to evaluate: the dataset is empty; give one that holds images")
    conf = confusion.cpu()
    correct = conf.diag()
    support = conf.sum(1)
    per_class = torch.where(support > 0, correct.double() / support.clamp(min=1), torch.tensor(float("nan")))
    return EvalResult(
        n=n,
        loss=float(loss_sum) / n,
        top1=float(correct.sum()) / n,
        top5=float(top5_hits) / n,
        per_class=per_class.tolist(),
        confusion=conf.tolist(),
        classes=list(classes) if classes is not None else [str(i) for i in range(num_classes)],
    )


def save_confusion_png(confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path) -> None:
    """A row-normalised confusion matrix heat map with counts."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    conf = torch.tensor(confusion, dtype=torch.float64)
    norm = conf / conf.sum(1, keepdim=True).clamp(min=1)
    k = len(classes)
    size = max(4.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)
    if k <= 30:
        ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        for i in range(k):
            for j in range(k):
                if conf[i, j] > 0:
                    ax.text(
                        j,
                        i,
                        int(conf[i, j]),
                        ha="center",
                        va="center",
                        fontsize=6,
                        color="white" if norm[i, j] > 0.5 else "black",
                    )
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (row-normalised)")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)


def evaluate_run(
    run: str | Path,
    *,
    dataset: str | None = None,
    split: str = "test",
    data_dir: str | None = None,
    batch_size: int = 500,
    device: str = "auto",
    tta_flip: bool | None = None,
    which: str = "best",
    out_dir: Path | None = None,
    save: bool = True,
) -> tuple[EvalResult, Path]:
    """Evaluate a trained run on ``dataset`` (default: the one it was trained on); writes the reports.

    The images are converted to the run's channels and size and normalised with the run's own statistics,
    so a model trained on one dataset can be evaluated on another with the same classes.
    """
    from dataclasses import replace

    from imgcls.data import load_dataset, make_loader
    from imgcls.train.checkpoint import load_run
    from imgcls.utils.device import resolve_amp, resolve_device

    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}: pass --batch-size 1 or more")
    dev = resolve_device(device)
    loaded = load_run(run, dev, which=which)
    info = loaded.info
    name = dataset or info.get("dataset")
    if not name:
        raise CheckpointError(f"'{run}' does not say which dataset it was trained on: pass --dataset")
    ds = load_dataset(
        name, split, data_dir=data_dir, image_size=info["image_size"], channels=info["in_chans"]
    )
    if ds.info.num_classes != info["num_classes"]:
        raise CheckpointError(
            f"the model has {info['num_classes']} classes but dataset '{name}' has {ds.info.num_classes}: "
            "evaluate on a dataset with the same classes"
        )
    ds.info = replace(ds.info, mean=tuple(info["mean"]), std=tuple(info["std"]))  # the run's normalisation
    loader = make_loader(ds, batch_size, train=False, device=dev)
    flip = info.get("tta_flip", False) if tta_flip is None else tta_flip
    result = evaluate(
        loaded.model,
        loader,
        info["num_classes"],
        classes=loaded.classes,
        amp_dtype=resolve_amp("auto", dev),
        tta_flip=flip,
    )
    run_dir = loaded.weights.parent
    out = out_dir or run_dir / f"eval-{name.replace(':', '_').replace('/', '_')}-{split}"
    if save:
        result.save(out)
    return result, out

"""Evaluation as the field reports it: top-1 / top-5 accuracy and error, per-class accuracy, precision, recall
and F1, confusion matrix; the loop that counts them over batches, and the report files.

Optional flip test-time augmentation averages the logits of each image and its mirror (used since
Krizhevsky et al. 2012, who averaged ten crops and their reflections).

Per-class figures follow the usual definitions from the confusion counts (tp, fp, fn of each class):
precision = tp / (tp + fp), recall = tp / (tp + fn) (equal to the per-class accuracy), F1 = 2 tp / (2 tp + fp + fn).
A figure whose denominator is zero is undefined and reported as ``None`` (``null`` in JSON), never NaN: precision
of a class the model never predicts, recall of a class with no sample, F1 of a class neither present nor
predicted. Macro averages are the unweighted means over the classes that have samples; there an undefined
precision counts as 0 (as scikit-learn's ``zero_division=0``), so never predicting a class is not rewarded.

The report files say what they hold: ``confusion_counts.csv`` (integer counts, rows are true classes) and
``confusion_row_normalised.csv`` / ``.png`` (each true class's row divided by its count, so a row sums to 1).

This module sits below training (the trainer scores its validation and test sets with :func:`evaluate`);
evaluating a saved run on a dataset is :func:`imgcls.evaluate.evaluate_run`, above it.
"""

from __future__ import annotations

import csv
import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from imgcls.errors import DataError, StorageError, describe_os_error
from imgcls.utils.device import autocast
from imgcls.utils.files import atomic_path, atomic_write_json

__all__ = [
    "CONFUSION_COUNTS_CSV",
    "CONFUSION_NORMALISED_CSV",
    "CONFUSION_NORMALISED_PNG",
    "METRICS_JSON",
    "EvalResult",
    "Tally",
    "class_metrics",
    "evaluate",
    "predict_logits",
    "row_normalise",
    "save_confusion_png",
]

log = logging.getLogger(__name__)

METRICS_JSON = "metrics.json"
CONFUSION_COUNTS_CSV = "confusion_counts.csv"
CONFUSION_NORMALISED_CSV = "confusion_row_normalised.csv"
CONFUSION_NORMALISED_PNG = "confusion_row_normalised.png"
NORMALISED_TITLE = "confusion matrix (row-normalised: each true class sums to 1)"


def _ratio(num: int, den: int) -> float | None:
    return num / den if den > 0 else None


def class_metrics(confusion: Sequence[Sequence[int]]) -> dict[str, list[Any]]:
    """Per-class ``support``, ``precision``, ``recall`` and ``f1`` of a count matrix ``confusion[true][pred]``.

    Undefined figures (a zero denominator) are ``None``: see the module docstring.
    """
    k = len(confusion)
    tp = [int(confusion[i][i]) for i in range(k)]
    support = [int(sum(confusion[i])) for i in range(k)]  # tp + fn
    predicted = [int(sum(confusion[i][j] for i in range(k))) for j in range(k)]  # tp + fp
    return {
        "support": support,
        "precision": [_ratio(tp[j], predicted[j]) for j in range(k)],
        "recall": [_ratio(tp[j], support[j]) for j in range(k)],
        "f1": [_ratio(2 * tp[j], support[j] + predicted[j]) for j in range(k)],
    }


def row_normalise(confusion: Sequence[Sequence[int]]) -> list[list[float | None]]:
    """Each row divided by its sum (the true class's count), so it sums to 1; ``None`` for a row with no sample."""
    return [[c / sum(row) for c in row] if sum(row) > 0 else [None] * len(row) for row in confusion]


@dataclass
class EvalResult:
    n: int
    loss: float
    top1: float  # accuracy in [0, 1]
    top5: float
    per_class: list[float]  # accuracy (= recall) of each class (NaN where the class has no sample)
    confusion: list[list[int]]  # counts: confusion[true][pred]
    classes: list[str] = field(default_factory=list)
    # What was evaluated, for titles and reports (set by evaluate_run): run, model, dataset, split, weights.
    source: dict[str, str] = field(default_factory=dict)

    @property
    def top1_error(self) -> float:
        return 1.0 - self.top1

    @property
    def top5_error(self) -> float:
        return 1.0 - self.top5

    @property
    def metrics(self) -> dict[str, list[Any]]:
        """Per-class support, precision, recall and F1 (``None`` where undefined), in class order."""
        return class_metrics(self.confusion)

    @property
    def macro(self) -> dict[str, float | None]:
        """Macro precision, recall and F1 over the classes with samples (undefined precision counts as 0)."""
        m = self.metrics
        present = [i for i, s in enumerate(m["support"]) if s > 0]
        if not present:
            return {"precision": None, "recall": None, "f1": None}
        return {
            key: sum(m[key][i] or 0.0 for i in present) / len(present)
            for key in ("precision", "recall", "f1")
        }

    def to_dict(self) -> dict[str, Any]:
        """The metrics as JSON-ready values; NaN and undefined figures are ``None`` once written (see files.py)."""
        m = self.metrics
        return {
            **({"source": self.source} if self.source else {}),
            "n": self.n,
            "loss": self.loss,
            "top1": self.top1,
            "top5": self.top5,
            "top1_error": self.top1_error,
            "top5_error": self.top5_error,
            "per_class": dict(zip(self.classes, self.per_class)),  # accuracy of each class
            "per_class_metrics": {
                name: {
                    "accuracy": self.per_class[i],
                    "precision": m["precision"][i],
                    "recall": m["recall"][i],
                    "f1": m["f1"][i],
                    "support": m["support"][i],
                }
                for i, name in enumerate(self.classes)
            },
            "macro": self.macro,
            "confusion_counts": self.confusion,  # [true][pred]
            "classes": self.classes,
        }

    def table(self) -> str:
        """A plain-text report: the headline figures, then per-class accuracy, precision, recall and F1."""

        def pct(v: float | None) -> str:
            return "     -" if v is None or v != v else f"{100 * v:6.2f}"

        m, macro = self.metrics, self.macro
        lines = [
            f"images       {self.n}",
            f"top-1 acc    {100 * self.top1:6.2f}%   (error {100 * self.top1_error:.2f}%)",
            f"top-5 acc    {100 * self.top5:6.2f}%   (error {100 * self.top5_error:.2f}%)",
            f"loss         {self.loss:.4f}",
            f"macro        precision {pct(macro['precision'])}%  recall {pct(macro['recall'])}%  "
            f"F1 {pct(macro['f1'])}%",
            "",
            "per-class accuracy, precision, recall, F1 (%; - where undefined):",
        ]
        width = max([len("class"), *(len(c) for c in self.classes)])
        lines.append(f"  {'class':<{width}}  {'acc':>6}  {'prec':>6}  {'recall':>6}  {'F1':>6}  {'n':>6}")
        for i, name in enumerate(self.classes):
            lines.append(
                f"  {name:<{width}}  {pct(self.per_class[i])}  {pct(m['precision'][i])}  "
                f"{pct(m['recall'][i])}  {pct(m['f1'][i])}  {m['support'][i]:>6}"
            )
        return "\n".join(lines)

    def title(self) -> str:
        """What was evaluated, in one line: run, model, dataset and split (those known)."""
        src = self.source
        parts = [
            f"run {src['run']}" if src.get("run") else "",
            f"model {src['model']}" if src.get("model") else "",
        ]
        data = " ".join(src[k] for k in ("dataset", "split") if src.get(k))
        return " · ".join(p for p in [*parts, data] if p)

    def save(self, out_dir: str | Path) -> None:
        """Write metrics.json, confusion_counts.csv, confusion_row_normalised.csv and .png into ``out_dir``.

        Raises StorageError where it cannot.
        """
        out = Path(out_dir)
        try:
            self._write(out)
        except OSError as e:
            line = describe_os_error(e, out, "pass another --out")
            raise StorageError(f"the evaluation report could not be written: {line}") from e

    def _write(self, out: Path) -> None:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_json(out / METRICS_JSON, self.to_dict())
        _write_matrix_csv(out / CONFUSION_COUNTS_CSV, "counts: true\\pred", self.classes, self.confusion)
        normalised = [
            [("" if v is None else f"{v:.6g}") for v in row] for row in row_normalise(self.confusion)
        ]
        _write_matrix_csv(
            out / CONFUSION_NORMALISED_CSV, "row-normalised: true\\pred", self.classes, normalised
        )
        save_confusion_png(
            self.confusion, self.classes, out / CONFUSION_NORMALISED_PNG, subtitle=self.title()
        )


def _write_matrix_csv(path: Path, corner: str, classes: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow([corner, *classes])
        for name, row in zip(classes, rows):
            w.writerow([name, *row])


def predict_logits(model: nn.Module, x: torch.Tensor, tta_flip: bool = False) -> torch.Tensor:
    """Logits of a batch, averaged with those of the horizontally mirrored batch when ``tta_flip``."""
    logits = model(x)
    if tta_flip:
        logits = 0.5 * (logits + model(x.flip(-1)))
    return logits


class Tally:
    """Running counts of an evaluation: feed it logits and labels batch by batch, read an :class:`EvalResult`.

    The counts stay on the batches' device (no per-batch synchronisation); :func:`evaluate` and the ensemble's
    one-pass evaluation (several models, one tally each) share it.
    """

    def __init__(self, num_classes: int) -> None:
        self.num_classes = num_classes
        self.confusion = torch.zeros(num_classes, num_classes, dtype=torch.long)
        self.loss_sum = torch.zeros((), dtype=torch.float64)
        self.top5_hits = torch.zeros((), dtype=torch.long)
        self.n = 0

    def add(self, logits: torch.Tensor, y: torch.Tensor) -> None:
        """Count a batch: ``logits`` (B, K), ``y`` int labels (B,)."""
        k = self.num_classes
        if self.n == 0:  # accumulate on the batches' device
            dev = logits.device
            self.confusion, self.loss_sum, self.top5_hits = (
                self.confusion.to(dev),
                self.loss_sum.to(dev),
                self.top5_hits.to(dev),
            )
        logits = logits.float()
        self.loss_sum += F.cross_entropy(logits, y, reduction="sum").double()
        pred = logits.argmax(1)
        self.confusion += torch.bincount(y * k + pred, minlength=k**2).view(k, k)
        self.top5_hits += (logits.topk(min(5, k), dim=1).indices == y[:, None]).any(1).sum()
        self.n += y.numel()

    def result(
        self,
        classes: Sequence[str] | None = None,
        reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
    ) -> EvalResult:
        """The figures of what was counted; ``reduce`` first sums the counts over the processes of a
        distributed run (see :func:`evaluate`)."""
        k = self.num_classes
        confusion, top5_hits, loss_sum, n = self.confusion, self.top5_hits, self.loss_sum, self.n
        if reduce is not None:
            extra = torch.tensor([n], device=confusion.device)
            counts = reduce(torch.cat([confusion.flatten(), top5_hits.view(1), extra]))
            confusion, top5_hits, n = counts[:-2].view(k, k), counts[-2], int(counts[-1])
            loss_sum = reduce(loss_sum.view(1))[0]
        if n == 0:
            raise DataError("nothing to evaluate: the dataset is empty; give one that holds images")
        conf = confusion.cpu()
        correct = conf.diag()
        support = conf.sum(1)
        per_class = torch.where(
            support > 0, correct.double() / support.clamp(min=1), torch.tensor(float("nan"))
        )
        return EvalResult(
            n=n,
            loss=float(loss_sum) / n,
            top1=float(correct.sum()) / n,
            top5=float(top5_hits) / n,
            per_class=per_class.tolist(),
            confusion=conf.tolist(),
            classes=list(classes) if classes is not None else [str(i) for i in range(k)],
        )


@torch.no_grad()
def evaluate(
    model: nn.Module,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    *,
    classes: Sequence[str] | None = None,
    amp_dtype: torch.dtype | None = None,
    tta_flip: bool = False,
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> EvalResult:
    """Evaluate ``model`` (switched to eval mode) over ``batches`` of (images, int labels) already on its device.

    ``reduce`` sums a tensor over the processes of a distributed run, each of which evaluated its own share
    of the data: the counts are summed before any figure is computed, so every image counts once.
    """
    model.eval()
    tally = Tally(num_classes)
    for x, y in batches:
        with autocast(x.device, amp_dtype):
            logits = predict_logits(model, x, tta_flip)
        tally.add(logits, y)
    return tally.result(classes, reduce)


def save_confusion_png(
    confusion: Sequence[Sequence[int]], classes: Sequence[str], path: str | Path, *, subtitle: str = ""
) -> None:
    """A heat map of the row-normalised confusion matrix (each true class's row sums to 1), values printed.

    ``confusion`` holds counts; the title says the picture is row-normalised and names ``subtitle`` (run, model,
    dataset). The title is also stored in the PNG's ``Title`` text chunk. Rows without samples are left blank.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    norm = torch.tensor(
        [[float("nan") if v is None else v for v in row] for row in row_normalise(confusion)],
        dtype=torch.float64,
    ).view(len(classes), len(classes))
    k = len(classes)
    size = max(4.0, 0.45 * k + 2)
    fig, ax = plt.subplots(figsize=(size, size))
    ax.imshow(norm.numpy(), cmap="Blues", vmin=0, vmax=1)  # NaN rows (no sample) are drawn blank
    if k <= 30:
        ax.set_xticks(range(k), classes, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(k), classes, fontsize=8)
        for i in range(k):
            for j in range(k):
                v = float(norm[i, j])
                if v > 0:  # False for NaN
                    color = "white" if v > 0.5 else "black"
                    ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6, color=color)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    title = NORMALISED_TITLE + (f"\n{subtitle}" if subtitle else "")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=100, metadata={"Title": title.replace("\n", " - ")})
    plt.close(fig)

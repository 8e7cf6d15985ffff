"""Ensembles: several trained runs classifying together.

Krizhevsky, Sutskever and Hinton (2012, "ImageNet Classification with Deep Convolutional Neural Networks",
sec. 6) averaged the predictions of five similar CNNs, taking ILSVRC-2012's top-5 error from 18.2% (one
CNN) to 16.4%; every ILSVRC winner since reported an ensemble. :class:`Ensemble` is an ``nn.Module`` that
combines its members' outputs, so it evaluates, predicts and exports as one model does.

Ways to combine (``combine``):

- ``mean-logits``: the mean of the members' logits (what the ensemble outputs are logits of);
- ``mean-probs``: the mean of the members' softmax probabilities (AlexNet's "averaging the predictions");
  the output is their logarithm, so a softmax of it gives the mean probabilities back;
- ``vote``: each member votes for its top class; the output is the log of each class's share of the votes,
  ties broken by the mean probability (a class without votes ranks by its mean probability too).

Members must agree on the classes (names, in order) and on the input form (channels and size); they may be
of different architectures and may have been normalised differently: each member converts the ensemble's
input (normalised with the first member's mean and std) to its own normalisation, an affine map per channel.
:func:`evaluate_ensemble` scores the ensemble and every member in one pass over the data.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from imgcls.data import make_loader
from imgcls.errors import CheckpointError, ConfigError
from imgcls.evaluate import default_split, eval_dataset
from imgcls.metrics import EvalResult, Tally
from imgcls.train.checkpoint import LoadedRun, load_run
from imgcls.utils.device import autocast, inference_amp, resolve_device

__all__ = [
    "COMBINE",
    "Ensemble",
    "EnsembleEval",
    "Member",
    "evaluate_ensemble",
    "evaluate_ensemble_runs",
    "load_ensemble",
]

log = logging.getLogger(__name__)

COMBINE = ("mean-logits", "mean-probs", "vote")
_VOTE_TIE_BREAK = (
    1e-3  # a mean probability (<= 1) times this never outweighs one vote of fewer than 1000 members
)


class Member(nn.Module):
    """One model as an ensemble feeds it: the ensemble's input renormalised to the model's own statistics
    (``x * scale + shift`` per channel), and the logits averaged with those of the mirrored image when
    ``tta_flip``."""

    def __init__(
        self,
        model: nn.Module,
        *,
        scale: Sequence[float] | None = None,
        shift: Sequence[float] | None = None,
        tta_flip: bool = False,
    ) -> None:
        super().__init__()
        self.model = model
        self.tta_flip = tta_flip
        self.renormalise = scale is not None
        c = len(scale) if scale is not None else 1
        self.register_buffer(
            "scale", torch.tensor(list(scale or [1.0]), dtype=torch.float32).view(1, c, 1, 1)
        )
        self.register_buffer(
            "shift", torch.tensor(list(shift or [0.0]), dtype=torch.float32).view(1, c, 1, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.renormalise:
            x = x * self.scale + self.shift
        logits = self.model(x)
        if self.tta_flip:
            logits = 0.5 * (logits + self.model(x.flip(-1)))
        return logits


class Ensemble(nn.Module):
    """Models whose outputs are combined (see the module docstring): ``(B, C, H, W) -> (B, num_classes)``.

    ``members`` are ``nn.Module``s of the same classes and input (each wrapped in a :class:`Member` where it
    needs its own normalisation or test-time flip).
    """

    def __init__(self, members: Sequence[nn.Module], combine: str = "mean-logits") -> None:
        super().__init__()
        if not members:
            raise ConfigError("an ensemble needs at least one model: give one or more runs")
        if combine not in COMBINE:
            raise ConfigError(f"combine must be one of {', '.join(COMBINE)}, got {combine!r}")
        self.members = nn.ModuleList(members)
        self.combine = combine

    def member_logits(self, x: torch.Tensor) -> torch.Tensor:
        """Every member's logits: ``(M, B, num_classes)``."""
        return torch.stack([m(x).float() for m in self.members])

    def combine_logits(self, logits: torch.Tensor) -> torch.Tensor:
        """``(M, B, K)`` member logits -> ``(B, K)`` ensemble output (logits, or log-probabilities)."""
        if self.combine == "mean-logits":
            return logits.mean(0)
        probs = logits.softmax(-1).mean(0)  # (B, K)
        if self.combine == "mean-probs":
            return probs.clamp_min(1e-12).log()
        k = logits.shape[-1]
        votes = nn.functional.one_hot(logits.argmax(-1), k).sum(0).float() / logits.shape[0]  # (B, K) shares
        scores = votes + _VOTE_TIE_BREAK * probs
        return (scores / scores.sum(-1, keepdim=True)).log()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.combine_logits(self.member_logits(x))


def _describe(run: LoadedRun) -> str:
    return f"'{run.weights.parent}' ({run.info.get('model', '?')})"


def _check_members(runs: Sequence[LoadedRun]) -> None:
    """Refuse members that do not classify the same classes from the same input, naming the first that differs."""
    first = runs[0]
    for other in runs[1:]:
        if other.classes != first.classes:
            raise CheckpointError(
                f"the runs of an ensemble must have the same classes: {_describe(first)} has "
                f"{_show(first.classes)}, {_describe(other)} has {_show(other.classes)}; combine runs trained "
                "on the same classes"
            )
        a = (first.info["in_chans"], first.info["image_size"])
        b = (other.info["in_chans"], other.info["image_size"])
        if a != b:
            raise CheckpointError(
                f"the runs of an ensemble must take the same input: {_describe(first)} takes {a[0]}x{a[1]}x{a[1]} "
                f"images, {_describe(other)} {b[0]}x{b[1]}x{b[1]}; combine runs trained on the same image form"
            )


def _show(names: Sequence[str]) -> str:
    names = list(names)
    return ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")


def load_ensemble(
    runs: Sequence[str | Path | LoadedRun],
    *,
    combine: str = "mean-logits",
    device: str | torch.device = "cpu",
    which: str = "best",
    tta_flip: bool | None = None,
) -> tuple[Ensemble, list[LoadedRun]]:
    """Load runs (directories or weights files) as one :class:`Ensemble` in eval mode; also returns the loaded
    runs. The ensemble's input is normalised as the first run's; each run keeps its own test-time flip unless
    ``tta_flip`` says otherwise for all."""
    if not runs:
        raise ConfigError("an ensemble needs at least one run: give one or more run directories")
    if combine not in COMBINE:
        raise ConfigError(f"combine must be one of {', '.join(COMBINE)}, got {combine!r}")
    loaded = [r if isinstance(r, LoadedRun) else load_run(r, device, which=which) for r in runs]
    _check_members(loaded)
    mean0, std0 = loaded[0].info["mean"], loaded[0].info["std"]
    members = []
    for run in loaded:
        mean, std = run.info["mean"], run.info["std"]
        scale = shift = None
        if (list(mean), list(std)) != (list(mean0), list(std0)):  # x_own = (x * s0 + m0 - m) / s
            scale = [s0 / s for s0, s in zip(std0, std)]
            shift = [(m0 - m) / s for m0, m, s in zip(mean0, mean, std)]
        flip = run.info.get("tta_flip", False) if tta_flip is None else tta_flip
        members.append(Member(run.model, scale=scale, shift=shift, tta_flip=flip))
    ensemble = Ensemble(members, combine).to(device).eval()
    return ensemble, loaded


@dataclass
class EnsembleEval:
    """The ensemble's evaluation and each member's, from the same pass over the same images."""

    ensemble: EvalResult
    members: list[EvalResult]
    combine: str
    names: list[str] = field(default_factory=list)  # each member's run and weights

    def table(self) -> str:
        """Each member's and the ensemble's top-1 and top-5 accuracy, one line each."""
        width = max([len("member"), *(len(n) for n in self.names), len(f"ensemble ({self.combine})")])
        lines = [f"{'member':<{width}}  {'top-1':>7}  {'top-5':>7}"]
        for name, r in zip(self.names, self.members):
            lines.append(f"{name:<{width}}  {100 * r.top1:6.2f}%  {100 * r.top5:6.2f}%")
        e = self.ensemble
        lines.append(f"{f'ensemble ({self.combine})':<{width}}  {100 * e.top1:6.2f}%  {100 * e.top5:6.2f}%")
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        return {
            "combine": self.combine,
            "members": [
                {"run": n, "n": r.n, "top1": r.top1, "top5": r.top5, "loss": r.loss}
                for n, r in zip(self.names, self.members)
            ],
            "ensemble": self.ensemble.to_dict(),
        }


@torch.no_grad()
def evaluate_ensemble(
    ensemble: Ensemble,
    batches: Iterable[tuple[torch.Tensor, torch.Tensor]],
    num_classes: int,
    *,
    classes: Sequence[str] | None = None,
    amp_dtype: torch.dtype | None = None,
) -> tuple[EvalResult, list[EvalResult]]:
    """The ensemble's and each member's evaluation over ``batches``: every model sees each batch once."""
    ensemble.eval()
    tallies = [Tally(num_classes) for _ in range(len(ensemble.members) + 1)]
    for x, y in batches:
        with autocast(x.device, amp_dtype):
            logits = ensemble.member_logits(x)  # (M, B, K)
        for tally, member in zip(tallies, logits):
            tally.add(member, y)
        tallies[-1].add(ensemble.combine_logits(logits), y)
    results = [t.result(classes) for t in tallies]
    return results[-1], results[:-1]


def evaluate_ensemble_runs(
    runs: Sequence[str | Path],
    *,
    combine: str = "mean-logits",
    dataset: str | None = None,
    split: str | None = None,
    data_dir: str | None = None,
    batch_size: int = 500,
    device: str = "auto",
    tta_flip: bool | None = None,
    which: str = "best",
    skip_bad: bool = False,
) -> EnsembleEval:
    """Evaluate the ensemble of ``runs`` and each of them on ``dataset`` (default: the first run's) in one
    pass; the data is read as the first run reads it (see :func:`imgcls.evaluate.evaluate_run`)."""
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}: pass --batch-size 1 or more")
    dev = resolve_device(device)
    ensemble, loaded = load_ensemble(runs, combine=combine, device=dev, which=which, tta_flip=tta_flip)
    first = loaded[0]
    info, run_dir = first.info, first.weights.parent
    name = dataset or info.get("dataset")
    if not name:
        raise CheckpointError(f"'{run_dir}' does not say which dataset it was trained on: pass --dataset")
    split = split or default_split(name, info.get("dataset"))
    ds = eval_dataset(info, first.classes, run_dir, name, split, data_dir=data_dir, skip_bad=skip_bad)
    loader = make_loader(ds, batch_size, train=False, device=dev)
    amp = inference_amp(ensemble, dev, (batch_size, info["in_chans"], *[info["image_size"]] * 2))
    result, members = evaluate_ensemble(
        ensemble, loader, info["num_classes"], classes=first.classes, amp_dtype=amp
    )
    result.source = {
        "run": f"ensemble of {len(loaded)} ({combine})",
        "model": ", ".join(str(r.info.get("model", "")) for r in loaded),
        "dataset": name,
        "split": split,
    }
    names = [f"{r.weights.parent.name}/{r.weights.name}" for r in loaded]
    return EnsembleEval(ensemble=result, members=members, combine=combine, names=names)

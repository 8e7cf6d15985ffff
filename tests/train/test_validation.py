"""Honest numbers: choices (best epoch, early stopping) on the validation split, the test split scored once."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from imgcls.errors import ConfigError
from imgcls.metrics import EvalResult
from imgcls.train import TrainConfig, train
from imgcls.train import trainer as trainer_mod


def _cfg(data: Path, out: Path, **kw: Any) -> TrainConfig:
    base = dict(
        dataset="fashion-mnist",
        data_dir=str(data),
        out_dir=str(out),
        name="run",
        epochs=4,
        batch_size=16,
        lr=0.05,
        schedule="cosine",
        warmup_epochs=0.0,
        progress=False,
        fallback_dataset=None,
        augment="none",
        amp="off",
        tta_flip=False,
    )
    return TrainConfig(**(base | kw))


class _Scripted:
    """Wraps the trainer's ``evaluate``: validation accuracies follow a script, every call is recorded."""

    def __init__(self, val_accs: list[float]) -> None:
        self.val_accs = list(val_accs)
        self.calls: list[tuple[str, dict[str, torch.Tensor]]] = []
        self.real = trainer_mod.evaluate

    def __call__(self, model: torch.nn.Module, loader: Any, *args: Any, **kwargs: Any) -> EvalResult:
        result = self.real(model, loader, *args, **kwargs)
        split = "val" if len(loader.dataset) == 16 else "test"  # tiny_fmnist: 16 held out, 80 test images
        self.calls.append((split, {k: v.clone() for k, v in model.state_dict().items()}))
        if split == "val":
            result = dataclasses.replace(result, top1=self.val_accs.pop(0))
        return result


def test_best_is_chosen_on_validation_and_the_test_split_is_scored_once(
    tiny_fmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The best validation accuracy comes first, while the model is still learning (it would not be the best
    # on the test split): the run must report epoch 1's weights anyway, and score them once on test.
    script = _Scripted([0.9, 0.5, 0.6, 0.7])
    monkeypatch.setattr(trainer_mod, "evaluate", script)
    r = train(_cfg(tiny_fmnist, tmp_path))
    assert [split for split, _ in script.calls] == ["val"] * 4 + ["test"]
    assert (r.weights, r.best_epoch, r.val_acc) == ("best", 1, 0.9)
    with safe_open(str(r.run_dir / "best.safetensors"), "pt") as f:
        assert f.metadata()["epoch"] == "1"
    best = load_file(r.run_dir / "best.safetensors")
    tested = script.calls[-1][1]
    assert all(torch.equal(tested[k], best[k]) for k in best)  # the test saw the best weights
    last = load_file(r.run_dir / "last.safetensors")
    assert any(not torch.equal(last[k], best[k]) for k in best)
    assert all("test_acc" not in row and "val_acc" in row for row in r.history)
    saved = json.loads((r.run_dir / "result.json").read_text())
    assert saved["weights"] == "best" and saved["best_epoch"] == 1 and saved["test_acc"] == r.test_acc


def test_without_validation_the_last_weights_are_reported(
    tiny_fmnist: Path, tmp_path: Path, monkeypatch
) -> None:
    script = _Scripted([])
    monkeypatch.setattr(trainer_mod, "evaluate", script)
    r = train(_cfg(tiny_fmnist, tmp_path, epochs=2, val_fraction=0.0))
    assert [split for split, _ in script.calls] == [
        "test"
    ]  # nothing chosen, nothing looked at before the end
    assert (r.weights, r.best_epoch, r.val_acc) == ("last", None, None)
    assert not (r.run_dir / "best.safetensors").exists()
    assert len(r.history) == 2 and all("val_acc" not in row for row in r.history)


def test_early_stop_counts_validations_without_improvement(
    tiny_fmnist: Path, tmp_path: Path, monkeypatch
) -> None:
    script = _Scripted([0.5, 0.7, 0.7, 0.4, 0.9, 0.9])  # epoch 2 is best; 3 (a tie) and 4 do not improve
    monkeypatch.setattr(trainer_mod, "evaluate", script)
    r = train(_cfg(tiny_fmnist, tmp_path, epochs=6, early_stop=2))
    # stopped after epoch 4; the weights kept are epoch 3's, the later of the two equal best
    assert len(r.history) == 4 and (r.best_epoch, r.val_acc) == (3, 0.7)
    assert [split for split, _ in script.calls] == ["val"] * 4 + ["test"]
    with pytest.raises(
        ConfigError, match="no validation split: set --val-fraction above 0 or drop --early-stop"
    ):
        train(_cfg(tiny_fmnist, tmp_path, name="novalid", val_fraction=0.0, early_stop=2))


def test_auto_class_weights_balance_an_imbalanced_training_set(tmp_path: Path) -> None:
    from PIL import Image

    from tests.conftest import pattern_images

    x, y = pattern_images(120, 3, 12, 1, 0)
    keep = [i for i in range(120) if y[i] != 2 or i % 4 == 0]  # class "c" keeps a quarter of its images
    for i in keep:
        d = tmp_path / "data" / "abc"[y[i]]
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(x[i, 0]).save(d / f"{i}.png")
    trainer = trainer_mod._Trainer(
        TrainConfig(
            dataset=f"folder:{tmp_path / 'data'}",
            out_dir=str(tmp_path / "runs"),
            epochs=1,
            batch_size=16,
            class_weights="auto",
            val_fraction=0.0,
            progress=False,
            amp="off",
        )
    )
    trainer._setup_runtime()
    trainer._load_data()
    counts = torch.bincount(trainer.train_set.labels, minlength=3).double()
    expected = len(trainer.train_set) / (3 * counts)
    assert counts[2] < counts[0] / 3 and torch.allclose(trainer.class_weight.double(), expected)
    # a rare class's images weigh more, and every class weighs as much in all
    assert torch.allclose(
        trainer.class_weight.double() * counts,
        torch.full((3,), len(trainer.train_set) / 3, dtype=torch.float64),
    )
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    loss, _ = trainer._loss(logits, labels)
    weighted = torch.nn.functional.cross_entropy(
        logits, labels, weight=trainer.class_weight, label_smoothing=trainer.cfg.label_smoothing
    )
    assert torch.allclose(loss, weighted)  # the loss the optimizer sees is the weighted one


def test_a_run_from_before_validation_resumes_and_reports_its_last_weights(
    tiny_fmnist: Path, tmp_path: Path
) -> None:
    first = train(_cfg(tiny_fmnist, tmp_path, epochs=1, val_fraction=0.0))
    state_path = first.run_dir / "state.pt"
    state = torch.load(state_path, weights_only=True)
    for row in state["history"]:  # what such a run's history held: test metrics every few epochs
        row.update(test_loss=1.0, test_acc=0.5, test_top5=0.9)
    torch.save(state, state_path)
    r = train(TrainConfig(resume=str(first.run_dir), epochs=2, progress=False))  # one epoch more
    assert len(r.history) == 2 and (r.weights, r.best_epoch, r.val_acc) == ("last", None, None)


def test_a_later_epoch_within_two_standard_errors_of_the_best_is_kept(
    tiny_fmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On 16 validation images the best, 14/16 at epoch 2, is known only to +-2 sqrt(p (1 - p) / 16) = 0.165:
    epoch 3's 12/16 is within that, epoch 4's 9/16 is not."""
    script = _Scripted([8 / 16, 14 / 16, 12 / 16, 9 / 16])
    monkeypatch.setattr(trainer_mod, "evaluate", script)
    r = train(_cfg(tiny_fmnist, tmp_path))
    assert (r.weights, r.best_epoch, r.val_acc) == ("best", 3, 12 / 16)
    with safe_open(str(r.run_dir / "best.safetensors"), "pt") as f:
        assert f.metadata()["epoch"] == "3"
    assert [row["val_images"] for row in r.history] == [16] * 4
    tested = script.calls[-1][1]
    assert all(torch.equal(tested[k], v) for k, v in load_file(r.run_dir / "best.safetensors").items())


def test_a_large_validation_split_still_picks_a_clearly_better_earlier_epoch() -> None:
    rows = [
        {"epoch": e, "val_acc": a, "val_images": 6000}
        for e, a in ((1, 0.90), (2, 0.935), (3, 0.933), (4, 0.928))
    ]
    # two standard errors at 93.5% of 6,000 images: 0.64 points; epoch 3 is within them, epoch 4 is not
    assert trainer_mod._best_row(rows)["epoch"] == 3
    assert trainer_mod._best_row(rows[:2] + rows[3:])["epoch"] == 2
    old = [{k: v for k, v in r.items() if k != "val_images"} for r in rows]  # a run from before: the highest
    assert trainer_mod._best_row(old)["epoch"] == 2

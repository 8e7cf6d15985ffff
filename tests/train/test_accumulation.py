"""Gradient accumulation with a number of batches per epoch that accum_steps does not divide."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from imgcls.train import TrainConfig, train
from imgcls.train import trainer as trainer_mod


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    # 144 training images (160 less the 10% validation) in batches of 16: 9 batches, so accum_steps=2 leaves
    # one batch over each epoch. A constant schedule: a 1-epoch run is the first epoch of a 2-epoch run.
    base = dict(
        dataset="fashion-mnist",
        data_dir=str(data),
        out_dir=str(out),
        name="run",
        epochs=2,
        batch_size=16,
        lr=0.05,
        schedule="constant",
        warmup_epochs=0.0,
        accum_steps=2,
        progress=False,
        deterministic=True,
        fallback_dataset=None,
        augment="none",
        amp="off",
    )
    return TrainConfig(**(base | kw))


def test_leftover_batches_do_not_leak_into_the_next_epoch(tiny_fmnist: Path, tmp_path: Path) -> None:
    """An epoch ends with no gradients pending: the second epoch of an uninterrupted run is the same as the
    first epoch of a resumed one (which starts from fresh gradients), and each epoch makes 4 steps."""
    ref = train(_cfg(tiny_fmnist, tmp_path / "a"))
    assert [r["step"] for r in ref.history] == [4, 8]

    train(_cfg(tiny_fmnist, tmp_path / "b", epochs=1))
    run_b = tmp_path / "b" / "run"
    train(TrainConfig(resume=str(run_b), epochs=2, progress=False))
    a, b = load_file(ref.run_dir / "last.safetensors"), load_file(run_b / "last.safetensors")
    for k in a:
        assert torch.equal(a[k], b[k]), k


def test_every_epoch_starts_with_clean_gradients(tiny_fmnist: Path, tmp_path: Path, monkeypatch) -> None:
    seen: list[bool] = []
    original = trainer_mod._Trainer._loss
    first = {"epoch": -1}

    def loss(self, out, y):
        epoch = self.train_loader.epoch  # already moved on to the next epoch while this one is drawn
        if epoch != first["epoch"]:
            first["epoch"] = epoch
            seen.append(all(p.grad is None or not p.grad.any() for p in self.model.parameters()))
        return original(self, out, y)

    monkeypatch.setattr(trainer_mod._Trainer, "_loss", loss)
    train(_cfg(tiny_fmnist, tmp_path, epochs=3))
    assert seen == [True, True, True]


@pytest.mark.parametrize("accum", [1, 3])
def test_steps_per_epoch_with_and_without_accumulation(tiny_fmnist: Path, tmp_path: Path, accum: int) -> None:
    r = train(_cfg(tiny_fmnist, tmp_path, epochs=1, accum_steps=accum))
    assert r.steps == 9 // accum
    assert r.history[0]["images"] == 9 // accum * accum * 16  # the leftover batches are not drawn

"""Progressive resizing (``train_sizes``): early epochs train on downscaled batches, evaluation at full size."""

from __future__ import annotations

from pathlib import Path

import pytest

from imgcls.errors import ConfigError
from imgcls.train import TrainConfig, train
from imgcls.train import trainer as trainer_mod
from imgcls.train.config import validate


def test_each_epoch_trains_at_its_size_and_evaluates_at_the_data_size(
    tiny_fmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[bool, int]] = []  # (training?, input size) of every forward
    build = trainer_mod._Trainer._build_model

    def spy(self: trainer_mod._Trainer) -> None:
        build(self)
        self.model.register_forward_pre_hook(lambda m, args: seen.append((m.training, args[0].shape[-1])))

    monkeypatch.setattr(trainer_mod._Trainer, "_build_model", spy)
    cfg = TrainConfig(
        dataset="fashion-mnist", data_dir=str(tiny_fmnist), out_dir=str(tmp_path), name="run", epochs=3,
        batch_size=32, lr=0.05, progress=False, fallback_dataset=None, amp="off", eval_every=1,
        train_sizes=[16, 20],
    )  # fmt: skip
    r = train(cfg)
    train_sizes = [size for training, size in seen if training]
    per_epoch = len(train_sizes) // 3
    assert train_sizes == [16] * per_epoch + [20] * (2 * per_epoch)  # the last size repeats
    assert {size for training, size in seen if not training} == {28}
    assert 0 < r.test_acc <= 1


@pytest.mark.parametrize("sizes", [[0], [16, -2], [100000]])
def test_bad_train_sizes_are_refused(sizes: list[int]) -> None:
    with pytest.raises(ConfigError, match="train_sizes"):
        validate(TrainConfig(train_sizes=sizes))

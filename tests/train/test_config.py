from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from imgcls.errors import ConfigError, UnknownNameError
from imgcls.train.config import PRESETS, TrainConfig, auto_settings, resolve_config


def test_defaults_and_overrides() -> None:
    cfg = resolve_config(overrides={"epochs": 3, "lr": "0.05", "flip": "false"})
    assert cfg.epochs == 3 and cfg.lr == 0.05 and cfg.flip is False
    assert cfg.model == TrainConfig().model


def test_order_defaults_preset_yaml_flags(tmp_path: Path) -> None:
    a = tmp_path / "a.yaml"
    a.write_text("preset: accurate\nepochs: 2\nbatch_size: 64\n")
    b = tmp_path / "b.yaml"
    b.write_text("batch_size: 32\n")
    cfg = resolve_config([a, b], {"epochs": 5})
    assert cfg.model == PRESETS["accurate"]["model"]  # from the preset
    assert cfg.batch_size == 32  # the later YAML wins
    assert cfg.epochs == 5  # flags win over YAML


def test_unknown_setting_names_file_and_suggests(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("learning_rate: 0.1\n")
    with pytest.raises(UnknownNameError, match="c.yaml"):
        resolve_config([f])
    with pytest.raises(UnknownNameError, match="did you mean epochs"):
        resolve_config(overrides={"epoch": 3})


@pytest.mark.parametrize(
    "overrides, match",
    [
        ({"epochs": 0}, "epochs"),
        ({"optimizer": "lbfgs"}, "optimizer"),
        ({"batch_size": "many"}, "batch_size"),
        ({"label_smoothing": 1.0}, "label_smoothing"),
        ({"preset": "turbo"}, "preset"),
        ({"warmup_epochs": 20, "epochs": 10}, "warmup"),
    ],
)
def test_bad_values_are_clear(overrides: dict, match: str) -> None:
    with pytest.raises((ConfigError, UnknownNameError), match=match):
        resolve_config(overrides=overrides)


def test_bad_yaml(tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text("epochs: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        resolve_config([f])
    f.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="mapping"):
        resolve_config([f])
    with pytest.raises(ConfigError, match="does not exist"):
        resolve_config([tmp_path / "missing.yaml"])


def test_fast_preset_is_what_plain_train_runs_on_fashion_mnist() -> None:
    """On Fashion-MNIST's 54,000 training images (60,000 less validation) auto comes to the fast preset."""
    plain, fast = resolve_config(), resolve_config(overrides={"preset": "fast"})
    plain = dataclasses.replace(plain, **auto_settings(plain, 54_000))
    fast = dataclasses.replace(fast, **auto_settings(fast, 54_000))
    assert {k: v for k, v in plain.to_dict().items() if k != "preset"} == {
        k: v for k, v in fast.to_dict().items() if k != "preset"
    }
    assert (plain.batch_size, plain.lr, plain.epochs, plain.optimizer) == (512, 0.4, 6, "muon")


@pytest.mark.parametrize(
    ("n", "batch", "lr", "epochs"),
    [
        (1_620, 32, 0.1, 30),  # 2,000 images less test and validation: 50 steps an epoch
        (415, 16, 0.0707, 30),  # tiny: the smallest batch, still 25 steps
        (10_000, 128, 0.2, 18),  # 78 steps an epoch, 7 x 25,600 / 10,000 = 17.9 epochs
        (25_600, 512, 0.4, 7),  # from here on, the fast preset's batch and lr (and Muon)
        (30_000, 512, 0.4, 6),  # and from 29,867 on its 6 epochs
        (1_000_000, 512, 0.4, 6),
    ],
)
def test_auto_settings_keep_steps_per_epoch_and_scale_lr(n: int, batch: int, lr: float, epochs: int) -> None:
    values = auto_settings(TrainConfig(), n)
    assert (values["batch_size"], values["epochs"]) == (batch, epochs)
    assert values["lr"] == pytest.approx(lr, rel=1e-3)  # 0.4 x sqrt(batch / 512)
    assert n // batch >= min(50, n // 16)  # at least 50 optimizer steps an epoch where the data allows
    adamw = auto_settings(TrainConfig(optimizer="adamw"), n)["lr"]
    assert adamw == pytest.approx(2e-3 * (batch / 512) ** 0.5)  # AdamW: the same rule from its own 2e-3


@pytest.mark.parametrize(
    ("n", "optimizer"), [(1_620, "sgd"), (12_799, "sgd"), (12_800, "muon"), (54_000, "muon")]
)
def test_auto_optimizer_is_muon_from_batches_of_256(n: int, optimizer: str) -> None:
    """Muon's fixed cost a step pays on large batches; the small folders' batches of 16-128 keep SGD."""
    assert auto_settings(TrainConfig(), n)["optimizer"] == optimizer
    for chosen in ("sgd", "adamw", "muon"):  # a named optimizer is never replaced
        assert "optimizer" not in auto_settings(TrainConfig(optimizer=chosen), n)


def test_explicit_settings_always_win_over_auto() -> None:
    cfg = TrainConfig(batch_size=512, epochs=3, augment="flip")
    # the lr and the optimizer follow the batch given
    assert auto_settings(cfg, 1_620, 28) == {"lr": pytest.approx(0.4), "optimizer": "muon"}
    explicit = TrainConfig(batch_size=64, lr=0.5, epochs=3, augment="none", optimizer="sgd")
    assert auto_settings(explicit, 10, 28) == {}
    explicit_pad = auto_settings(TrainConfig(crop_padding=3), 1_620, 28)
    assert explicit_pad["augment"] == "light" and "crop_padding" not in explicit_pad


@pytest.mark.parametrize(
    ("n", "side", "augment", "padding"),
    [
        (1_620, 28, "light", 2),  # small data: mirror images and crops padded by a fourteenth of the side
        (1_215, 64, "light", 4),
        (1_455, 8, "flip", None),  # under 14 px: no crops
        (1_455, 14, "light", 1),
        (25_599, 28, "light", 2),
        (25_600, 28, "flip", None),  # from the fast preset's size on: its mirror images only
        (54_000, 28, "flip", None),
    ],
)
def test_auto_augmentation_adds_crops_on_small_data(
    n: int, side: int, augment: str, padding: int | None
) -> None:
    values = auto_settings(TrainConfig(), n, side)
    assert values["augment"] == augment and values.get("crop_padding") == padding

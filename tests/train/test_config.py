from __future__ import annotations

from pathlib import Path

import pytest

from imgcls.errors import ConfigError, UnknownNameError
from imgcls.train.config import PRESETS, TrainConfig, resolve_config


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


def test_fast_preset_is_what_plain_train_runs() -> None:
    plain, fast = resolve_config(), resolve_config(overrides={"preset": "fast"})
    assert {k: v for k, v in plain.to_dict().items() if k != "preset"} == {
        k: v for k, v in fast.to_dict().items() if k != "preset"
    }

"""Every setting is checked once, in the config: finite, in range, of its own type (issue 16, item 4)."""

from __future__ import annotations

import math
import typing
from dataclasses import fields
from pathlib import Path

import pytest

from imgcls.errors import ConfigError
from imgcls.train.config import CHOICES, RANGES, TrainConfig, overlay, resolve_config, validate

NAN, INF = float("nan"), float("inf")


def _numeric(typ: typing.Any) -> bool:
    """Whether a field's type is a number, an optional number or a list of numbers."""
    args = [a for a in typing.get_args(typ) if a is not type(None)]
    return typ in (int, float) or any(_numeric(a) for a in args)


def test_every_numeric_field_has_a_range() -> None:
    hints = typing.get_type_hints(TrainConfig)
    numeric = {f.name for f in fields(TrainConfig) if _numeric(hints[f.name])}
    assert numeric == set(RANGES) | set(CHOICES)


def test_the_defaults_and_the_ranges_edges_are_valid() -> None:
    validate(TrainConfig())
    edges = dict(momentum=0.0, min_lr_ratio=1.0, batch_size=2, image_size=8, threads=1, max_steps=1)
    cfg = resolve_config(overrides=edges | dict(label_smoothing=0.0, ema_decay=0.5, erasing=1.0, seed=0))
    assert cfg.batch_size == 2 and cfg.min_lr_ratio == 1.0


@pytest.mark.parametrize(
    "name, value",
    [
        ("momentum", NAN),  # trained to NaN and exited 0
        ("min_lr_ratio", NAN),  # logged "lr nan"
        ("lr", NAN),
        ("epochs", INF),  # OverflowError traceback
        ("epochs", "1e400"),  # how YAML reads 1e400: a string that floats to inf
        ("momentum", -5),  # ValueError traceback from the optimizer
        ("momentum", 1.0),
        ("threads", -1),  # RuntimeError traceback from torch.set_num_threads
        ("batch_size", 1),  # BatchNorm's "Expected more than 1 value per channel" traceback
        ("image_size", 100_000),  # tried to allocate 14 TB
        ("image_size", 4),
        ("max_steps", 0),  # exited 0 without weights
        ("min_lr_ratio", 1.5),
        ("weight_decay", -1e-4),
        ("warmup_epochs", -1),
        ("grad_clip", 0),
        ("accum_steps", 0),
        ("eval_every", 0),
        ("ema_decay", 1.0),
        ("step_gamma", 0),
        ("step_epochs", [10, NAN]),
        ("erasing", 1.5),
        ("mixup", -1),
        ("seed", -1),
        ("seed", 2**64),
        ("channels", 2),
        ("crop_padding", -2),
    ],
)
def test_out_of_range_values_are_refused_naming_the_setting(name: str, value: object) -> None:
    with pytest.raises(ConfigError, match=name) as caught:
        resolve_config(overrides={name: value})
    assert "\n" not in str(caught.value)


def test_several_problems_are_reported_together_on_one_line() -> None:
    with pytest.raises(ConfigError) as caught:
        resolve_config(overrides={"momentum": NAN, "threads": -1, "max_steps": 0})
    message = str(caught.value)
    assert "\n" not in message
    assert "momentum must be in [0, 1), got nan" in message
    assert "threads must be" in message and "max_steps must be >= 1, got 0" in message


def test_a_config_built_in_python_is_checked_too() -> None:
    with pytest.raises(ConfigError, match="momentum"):
        validate(TrainConfig(momentum=NAN))
    with pytest.raises(ConfigError, match="batch_size"):
        validate(TrainConfig(batch_size="64"))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "text, name",
    [
        ("batch_size: true\n", "batch_size"),  # became batches of 1
        ("epochs: yes\n", "epochs"),
        ("lr: false\n", "lr"),
        ("model: true\n", "model"),
        ("flip: 2\n", "flip"),
        ("epochs: 1e400\n", "epochs"),  # crashed with OverflowError
        ("epochs: .inf\n", "epochs"),
        ("momentum: .nan\n", "momentum"),
        ("batch_size: 1e400\n", "batch_size"),
        pytest.param("epochs: 1" + "0" * 400 + "\n", "epochs", id="epochs-10**400"),
        ("model: [1, 2]\n", "model"),
        ("1: 2\n", "setting names"),
    ],
)
def test_yaml_values_of_the_wrong_kind_are_refused(text: str, name: str, tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(text)
    with pytest.raises(ConfigError, match=name) as caught:
        resolve_config([f])
    assert "\n" not in str(caught.value) and len(str(caught.value)) < 300


def test_a_yaml_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "latin1.yaml"
    f.write_bytes("name: café\n".encode("latin-1"))  # crashed with UnicodeDecodeError
    with pytest.raises(ConfigError, match="not UTF-8 text"):
        resolve_config([f])


def test_bools_and_numbers_still_convert_where_they_should() -> None:
    cfg = resolve_config(
        overrides={"flip": "no", "tta_flip": 1, "epochs": 2, "batch_size": 64.0, "lr": "0.1"}
    )
    assert cfg.flip is False and cfg.tta_flip is True and cfg.batch_size == 64 and math.isclose(cfg.lr, 0.1)


def test_overlay_refuses_settings_that_are_no_mapping() -> None:
    # what a resumed run's damaged config.yaml gives: the text "garbage" (was AttributeError: no 'items')
    with pytest.raises(ConfigError, match="runs/x/config.yaml must hold a mapping"):
        overlay(TrainConfig(), "garbage", "runs/x/config.yaml")  # type: ignore[arg-type]

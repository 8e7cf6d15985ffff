"""Training logs: a progress bar on a terminal, plain step lines everywhere else (a file, a pipe, CI)."""

from __future__ import annotations

import io
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

from imgcls.errors import ConfigError
from imgcls.train import TrainConfig, train
from imgcls.train import trainer as trainer_mod
from imgcls.train.config import resolve_config

STEP_LINE = re.compile(r"epoch \d+/\d+ step \d+/\d+: train loss [\d.]+ acc [\d.]+% \| lr \S+ \| \d+ img/s")
EPOCH_LINE = re.compile(r"epoch \d+/\d+: train loss")


def _cfg(data: Path, out: Path, **kw) -> TrainConfig:
    base = dict(
        dataset="fashion-mnist",
        data_dir=str(data),
        out_dir=str(out),
        name="run",
        epochs=2,
        batch_size=16,  # 160 images: 10 steps an epoch
        val_fraction=0.0,
        lr=0.05,
        schedule="cosine",
        warmup_epochs=0.0,
        fallback_dataset=None,
        augment="none",
        amp="off",
        tta_flip=False,
        eval_every=2,
    )
    return TrainConfig(**(base | kw))


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


class _File(io.StringIO):
    def isatty(self) -> bool:
        return False


def _messages(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == trainer_mod.__name__]


def test_cli_log_in_a_file_has_step_lines_and_no_carriage_returns(tiny_fmnist: Path, tmp_path: Path) -> None:
    log_file = tmp_path / "train.log"
    cmd = [sys.executable, "-m", "imgcls.cli.main", "train", "--dataset", "fashion-mnist"]
    cmd += ["--data-dir", str(tiny_fmnist), "--out-dir", str(tmp_path / "runs"), "--name", "run"]
    cmd += ["--epochs", "2", "--batch-size", "16", "--lr", "0.05", "--threads", "1", "--amp", "off"]
    cmd += ["--log-every", "3"]  # --progress is on (the default): stderr, a file, decides
    with open(log_file, "w") as stderr:
        proc = subprocess.run(cmd, stderr=stderr, stdout=subprocess.PIPE, text=True, timeout=300)
    text = log_file.read_text()
    assert proc.returncode == 0, text
    assert "\r" not in text
    steps = [line for line in text.splitlines() if STEP_LINE.search(line)]
    assert [int(re.search(r"step (\d+)/", s)[1]) for s in steps] == [3, 6, 9, 12, 15, 18]
    assert "epoch 1/2 step 3/18" in steps[0]  # 160 images less 16 for validation: 9 batches of 16
    assert len([line for line in text.splitlines() if EPOCH_LINE.match(line)]) == 2


def test_no_terminal_gives_step_lines_every_n_steps(
    tiny_fmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    err = _File()
    monkeypatch.setattr(sys, "stderr", err)
    caplog.set_level(logging.INFO, logger="imgcls")
    train(_cfg(tiny_fmnist, tmp_path, log_every=4, progress=True))
    assert "\r" not in err.getvalue() and "batch" not in err.getvalue()  # no bar frames
    messages = _messages(caplog)
    steps = [m for m in messages if STEP_LINE.match(m)]
    assert [m.split(":")[0] for m in steps] == [
        "epoch 1/2 step 4/20",
        "epoch 1/2 step 8/20",
        "epoch 2/2 step 12/20",
        "epoch 2/2 step 16/20",
        "epoch 2/2 step 20/20",
    ]
    assert len([m for m in messages if EPOCH_LINE.match(m)]) == 2


def test_log_every_counts_optimizer_steps_and_zero_keeps_only_epoch_lines(
    tiny_fmnist: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="imgcls")
    train(_cfg(tiny_fmnist, tmp_path, epochs=1, accum_steps=2, log_every=2, progress=False))
    steps = [m.split(":")[0] for m in _messages(caplog) if STEP_LINE.match(m)]
    assert steps == ["epoch 1/1 step 2/5", "epoch 1/1 step 4/5"]  # 10 batches, 5 optimizer steps

    caplog.clear()
    train(_cfg(tiny_fmnist, tmp_path, name="run0", epochs=1, log_every=0, progress=False))
    messages = _messages(caplog)
    assert not [m for m in messages if STEP_LINE.match(m)]
    assert len([m for m in messages if EPOCH_LINE.match(m)]) == 1


def test_a_terminal_keeps_the_progress_bar(
    tiny_fmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    caplog.set_level(logging.INFO, logger="imgcls")
    train(_cfg(tiny_fmnist, tmp_path, epochs=1, log_every=1, progress=True))
    drawn = term.getvalue()
    assert "\r" in drawn and "epoch 1/1" in drawn and "batch" in drawn  # tqdm frames
    assert not [m for m in _messages(caplog) if STEP_LINE.match(m)]  # lines would break the bar


def test_no_progress_on_a_terminal_draws_no_bar(
    tiny_fmnist: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    term = _Terminal()
    monkeypatch.setattr(sys, "stderr", term)
    caplog.set_level(logging.INFO, logger="imgcls")
    train(_cfg(tiny_fmnist, tmp_path, epochs=1, log_every=5, progress=False))
    assert term.getvalue() == ""
    assert len([m for m in _messages(caplog) if STEP_LINE.match(m)]) == 2


def test_bar_displays_on_terminals_and_notebooks_only(monkeypatch: pytest.MonkeyPatch) -> None:
    from tqdm import tqdm

    monkeypatch.setattr(sys, "stderr", _Terminal())
    assert trainer_mod._bar_displays(tqdm)
    monkeypatch.setattr(sys, "stderr", _File())
    assert not trainer_mod._bar_displays(tqdm)
    monkeypatch.setattr(sys, "stderr", None)  # pythonw: no stderr at all
    assert not trainer_mod._bar_displays(tqdm)
    notebook_bar = type("tqdm_notebook", (tqdm,), {"__module__": "tqdm.notebook"})
    assert trainer_mod._bar_displays(type("auto", (notebook_bar,), {}))  # Jupyter's widget draws in place


def test_log_every_is_a_checked_flag(capsys: pytest.CaptureFixture[str]) -> None:
    from imgcls.cli.main import main

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    assert "--log-every" in capsys.readouterr().out
    assert resolve_config(overrides={"log_every": 7}).log_every == 7
    assert TrainConfig().log_every == 50
    with pytest.raises(ConfigError, match=r"log_every must be >= 0, got -1"):
        resolve_config(overrides={"log_every": -1})

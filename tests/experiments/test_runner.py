"""The shared experiment runner: the cache of finished runs, resuming, temporary models, bad names, the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import imgcls.train
from imgcls.cli.main import main
from imgcls.errors import ConfigError, UnknownNameError
from imgcls.experiments import get_experiment, list_experiments, run_experiment
from imgcls.experiments.nets import conv_stack_net
from imgcls.experiments.runner import RECORD, Run, compare_means, execute_runs, run_key, untrained
from imgcls.models import get_model_spec

# Two optimizer steps of the smallest zoo model on 8x8 digits: a real training run in well under a second.
SMOKE = {
    "model": "linear_softmax",
    "dataset": "digits",
    "epochs": 1,
    "max_steps": 2,
    "batch_size": 32,
    "val_fraction": 0.0,
    "augment": "none",
    "tta_flip": False,
}


def test_unknown_experiment_lists_every_valid_name() -> None:
    with pytest.raises(UnknownNameError) as info:
        get_experiment("degredation")
    for name in list_experiments():
        assert name in str(info.value)


def test_unknown_scale_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="tiny, quick, full"):
        run_experiment("degradation", "huge", tmp_path / "out", tmp_path / "cache")  # type: ignore[arg-type]


def test_finished_runs_are_reused_from_the_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [Run("a", SMOKE)]
    first = execute_runs(runs, tmp_path)["a"]
    assert not first["cached"] and 0.0 <= first["test_acc"] <= 1.0 and first["params"] == 28 * 28 * 10 + 10

    def no_training(cfg: object) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(imgcls.train, "train", no_training)
    again = execute_runs(runs, tmp_path)["a"]
    assert again["cached"] and again["test_acc"] == first["test_acc"] and again["key"] == first["key"]


def test_the_cache_key_follows_every_setting_that_changes_the_result() -> None:
    base = Run("a", SMOKE)
    assert run_key(base) == run_key(Run("renamed", SMOKE))  # the label only names the directory
    assert run_key(base) != run_key(Run("a", SMOKE | {"seed": 1}))
    assert run_key(base) != run_key(Run("a", SMOKE, model_id="v2"))
    assert run_key(base) != run_key(base, {"features": "another"})
    assert run_key(base) == run_key(Run("a", SMOKE | {"progress": True, "threads": 1}))  # display only


def test_an_interrupted_run_resumes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    runs = [Run("a", SMOKE)]
    first = execute_runs(runs, tmp_path)["a"]
    run_dir = Path(first["run_dir"])
    (run_dir / RECORD).unlink()  # the process died after training, before recording the result
    seen = []
    real_train = imgcls.train.train

    def spy(cfg: imgcls.train.TrainConfig) -> imgcls.train.TrainResult:
        seen.append(cfg.resume)
        return real_train(cfg)

    monkeypatch.setattr(imgcls.train, "train", spy)
    again = execute_runs(runs, tmp_path)["a"]
    assert seen == [str(run_dir)]
    assert not again["cached"] and (run_dir / RECORD).is_file()
    assert json.loads((run_dir / "result.json").read_text())["test_acc"] == again["test_acc"]  # the trainer's
    assert again["history"][0]["train_loss"] == first["history"][0]["train_loss"]


def test_an_experiment_model_is_registered_only_while_it_trains(tmp_path: Path) -> None:
    params = SMOKE | {"model": "experiment_test_stack"}
    run = Run("stack", params, model=lambda **kw: conv_stack_net(3, 1, width=4, **kw), model_id="test")
    record = execute_runs([run], tmp_path)["stack"]
    assert record["model"] == "experiment_test_stack" and record["params"] > 0
    with pytest.raises(UnknownNameError):
        get_model_spec("experiment_test_stack")


def test_an_experiment_model_may_not_shadow_the_zoo(tmp_path: Path) -> None:
    run = Run("x", SMOKE | {"model": "cifar_resnet20"}, model=lambda **kw: conv_stack_net(3, 1, **kw))
    with pytest.raises(ConfigError, match="clashes"):
        execute_runs([run], tmp_path)
    assert get_model_spec("cifar_resnet20").family == "resnet_cifar"


def test_duplicate_labels_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unique"):
        execute_runs([Run("a", SMOKE), Run("a", SMOKE | {"seed": 1})], tmp_path)


def test_runs_left_near_chance_are_named() -> None:
    records = {
        "stuck": {"kind": "train", "num_classes": 10, "test_acc": 0.12},
        "fine": {"kind": "train", "num_classes": 10, "test_acc": 0.80},
        "knn": {"kind": "baseline", "test_acc": 0.05},
    }
    assert untrained(records) == ["stuck"]


def test_compare_means_states_the_direction_and_the_noise() -> None:
    up = compare_means("q", [0.9, 0.92], [0.8, 0.82], expect_a_greater=True, expected="> 0", paper="-")
    assert up.held and not up.within_noise and up.ours.startswith("+10.00 points")
    noisy = compare_means("q", [0.80, 0.86], [0.84, 0.85], expect_a_greater=True, expected="> 0", paper="-")
    assert not noisy.held and noisy.within_noise
    down = compare_means("q", [0.8], [0.9], expect_a_greater=False, expected="< 0", paper="-")
    assert down.held and not down.within_noise  # one seed: no spread to compare with


def test_cli_list_shows_every_experiment(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "list"]) == 0
    out = capsys.readouterr().out
    for name in list_experiments():
        assert name in out
        assert get_experiment(name).source in out


def test_cli_unknown_experiment_is_one_line_and_status_2(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["experiment", "run", "nope", "--scale", "tiny"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "unknown experiment 'nope'" in err and "degradation" in err


def test_cli_run_writes_the_report_and_says_whether_the_claim_held(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out, cache = tmp_path / "out", tmp_path / "cache"
    argv = ["experiment", "run", "bottleneck", "--scale", "tiny", "--out", str(out), "--cache", str(cache)]
    assert main([*argv, "--no-progress"]) == 0
    printed = capsys.readouterr().out
    results = json.loads((out / "results.json").read_text())
    assert printed.splitlines()[0] == results["verdict"]
    assert ("held" in printed) and "Inception (3a) multiply-adds" in printed
    assert results["runs"] and all(not r["cached"] for r in results["runs"].values())
    assert main([*argv, "--no-progress"]) == 0  # the second time every run comes from the cache
    again = json.loads((out / "results.json").read_text())
    assert all(r["cached"] for r in again["runs"].values())

"""``imgcls baseline``: every method end to end on a tiny Fashion-MNIST written as IDX files, and bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgcls.cli.main import main
from tests.classic import ENJOY_SPORT
from tests.cli import run_cli


@pytest.fixture(scope="module")
def linear_run(tiny_fmnist: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    code = main(
        ["-q", "baseline", "linear", "--data-dir", str(tiny_fmnist), "--epochs", "3", "--batch-size", "32",
         "--out-dir", str(out), "--device", "cpu"]
    )  # fmt: skip
    assert code == 0
    (run,) = out.iterdir()
    return run


def test_knn_reports_top1_top5_and_time(tiny_fmnist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(
        capsys, "baseline", "knn", "--data-dir", str(tiny_fmnist), "--k", "3", "--metric", "l1"
    )
    assert code == 0
    assert "knn (k=3, l1, uniform) on fashion-mnist pixels: 160 train, 80 test, 784 features" in out
    assert "top-1 accuracy" in out and "top-5 accuracy" in out and "time: fit" in out


def test_json_output(tiny_fmnist: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for method in ("knn", "nb"):
        code, out, _ = run_cli(capsys, "baseline", method, "--data-dir", str(tiny_fmnist), "--json")
        result = json.loads(out)
        assert code == 0 and result["method"] == method and result["n_test"] == 80
        assert result["top1"] > 0.8  # the pattern images are easy
        assert result["top1_error"] == pytest.approx(1 - result["top1"])


def test_linear_trains_with_the_trainer_and_its_run_gives_features(
    linear_run: Path, tiny_fmnist: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert (linear_run / "config.yaml").is_file()
    assert "input_size" in (linear_run / "config.yaml").read_text()
    code, out, _ = run_cli(
        capsys, "baseline", "knn", "--data-dir", str(tiny_fmnist), "--features", str(linear_run), "--json"
    )
    result = json.loads(out)
    assert code == 0 and result["num_features"] == 784  # the linear model's pre-logits are its pixels
    code, out, _ = run_cli(
        capsys, "baseline", "nb", "--data-dir", str(tiny_fmnist), "--features", "quicknet_s", "--json"
    )
    assert code == 0 and json.loads(out)["num_features"] == 128  # a model name: random-weight features


def test_rule_learners(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    csv = tmp_path / "enjoysport.csv"
    csv.write_text(ENJOY_SPORT)
    code, out, _ = run_cli(capsys, "baseline", "candidate-elimination", "--csv", str(csv))
    assert code == 0
    assert "S = {<Sunny, Warm, ?, Strong, ?, ?>}" in out
    assert "G = {<Sunny, ?, ?, ?, ?, ?>, <?, Warm, ?, ?, ?, ?>}" in out
    code, out, _ = run_cli(capsys, "baseline", "find-s", "--csv", str(csv), "--json")
    assert code == 0 and json.loads(out)["specific"] == ["<Sunny, Warm, ?, Strong, ?, ?>"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["knn", "--k", "0"], "k must be a positive integer"),
        (["knn", "--k", "161"], "k=161 is larger than the training set (160 samples)"),
        (["knn", "--memory-budget-mb", "0.0001"], "memory budget"),
        (["find-s"], "give --csv FILE"),
        (["knn", "--csv", "x.csv"], "--csv is for find-s and candidate-elimination"),
        (["nb", "--pretrained", "w.pth"], "--pretrained needs --features MODEL"),
        (["knn", "--features", "no_such_model"], "unknown model 'no_such_model'"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(
    tiny_fmnist: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run_cli(capsys, "baseline", *args, "--data-dir", str(tiny_fmnist))
    assert code == 2 and out == ""
    assert err.startswith("imgcls baseline: error: ") and message in err and err.count("\n") == 1


def test_inconsistent_or_numeric_tables_are_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text(ENJOY_SPORT + "Sunny,Warm,Normal,Strong,Warm,Same,No\n")
    code, _, err = run_cli(capsys, "baseline", "candidate-elimination", "--csv", str(bad))
    assert code == 2 and "collapses at example 5 (bad.csv line 6" in err
    num = tmp_path / "num.csv"
    num.write_text("Sky,Temp,Play\nSunny,71.5,yes\nRainy,65.2,no\n")
    code, _, err = run_cli(capsys, "baseline", "find-s", "--csv", str(num))
    assert code == 2 and "discretise" in err

"""What ``imgcls predict`` and ``imgcls eval`` print and write: CSV, strict JSON (null, never NaN), named reports."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from imgcls.predict import Prediction
from tests.cli import run_cli
from tests.test_eval_report import strict_loads


def test_predict_csv_has_one_row_per_top_k_entry(digits_run: Path, images: Path, capsys) -> None:
    code, out, err = run_cli(capsys, "predict", str(digits_run), str(images), "-k", "3", "--csv")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    assert out.splitlines()[0] == "input,rank,class,probability"
    assert len(rows) == 3 * 3  # three images, top 3 each
    code, out, _ = run_cli(capsys, "predict", str(digits_run), str(images), "-k", "3", "--json")
    as_json = json.loads(out)
    for i, pred in enumerate(as_json):
        mine = rows[3 * i : 3 * i + 3]
        assert {r["input"] for r in mine} == {pred["input"]} and pred["input"].endswith(f"{i}.png")
        assert [int(r["rank"]) for r in mine] == [1, 2, 3]
        assert [r["class"] for r in mine] == [t["class"] for t in pred["top"]]
        assert [float(r["probability"]) for r in mine] == pytest.approx([t["prob"] for t in pred["top"]])


def test_predict_json_and_csv_are_exclusive(digits_run: Path, images: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_info:  # argparse's usage error
        run_cli(capsys, "predict", str(digits_run), str(images), "--json", "--csv")
    out, err = capsys.readouterr()
    assert exit_info.value.code == 2 and out == "" and "--csv: not allowed with argument --json" in err


def test_predict_never_prints_nan(monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    # a diverged model gives NaN probabilities: JSON says null, CSV leaves the cell empty
    nan = float("nan")
    monkeypatch.setattr("imgcls.predict.predict", lambda *a, **k: [Prediction("<image 0>", [("a", nan)])])
    code, out, _ = run_cli(capsys, "predict", "RUN", "x.png", "--json")
    assert code == 0 and strict_loads(out) == [{"input": "<image 0>", "top": [{"class": "a", "prob": None}]}]
    code, out, _ = run_cli(capsys, "predict", "RUN", "x.png", "--csv")
    assert code == 0 and out.splitlines()[1] == "<image 0>,1,a,"


def test_eval_json_and_report_carry_precision_recall_f1(digits_run: Path, tmp_path: Path, capsys) -> None:
    report = tmp_path / "report"
    code, out, err = run_cli(capsys, "eval", str(digits_run), "--json", "--out", str(report))
    assert code == 0, err
    printed = strict_loads(out)  # fails on NaN / Infinity
    saved = strict_loads((report / "metrics.json").read_text())
    assert printed["out_dir"] == str(report) and {k: v for k, v in printed.items() if k != "out_dir"} == saved
    assert saved["source"] == {
        "run": "d",
        "weights": saved["source"]["weights"],
        "model": json.loads((digits_run / "model.json").read_text())["model"],
        "dataset": "digits",
        "split": "test",
    }
    counts = saved["confusion_counts"]
    for j, m in enumerate(saved["per_class_metrics"].values()):
        predicted = sum(row[j] for row in counts)
        assert m["support"] == sum(counts[j])
        if predicted == 0:
            assert m["precision"] is None  # undefined, not NaN
        else:
            assert m["precision"] == pytest.approx(counts[j][j] / predicted)
        assert m["recall"] == pytest.approx(counts[j][j] / m["support"]) == pytest.approx(m["accuracy"])
    assert set(saved["macro"]) == {"precision", "recall", "f1"}
    with Image.open(report / "confusion_row_normalised.png") as png:
        title = png.text["Title"]
    assert "row-normalised" in title and "run d" in title and "digits test" in title
    assert (report / "confusion_counts.csv").read_text().startswith("counts: true\\pred,")
    code, out, _ = run_cli(capsys, "eval", str(digits_run), "--out", str(report))
    assert code == 0 and "macro        precision" in out and "counts, row-normalised" in out

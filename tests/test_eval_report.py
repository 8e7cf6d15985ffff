"""Evaluation reports a person reads: precision, recall, F1, strict JSON (null, never NaN), self-describing
confusion matrix files."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch
from PIL import Image

from imgcls.metrics import EvalResult, evaluate
from imgcls.utils.files import atomic_write_json, dumps_json, finite_json

from .fixed_model import FixedLogits


def strict_loads(text: str) -> Any:
    """json.loads that fails on NaN / Infinity, as JSON parsers outside Python do."""

    def refuse(name: str) -> None:
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def result() -> EvalResult:
    # Predictions (argmax): 0, 1, 1, 3, 0, 5; labels: 0, 1, 2, 3, 4, 4. Class f (5) has no sample; classes c (2)
    # and e (4) are never predicted.
    logits = torch.full((6, 6), -10.0)
    for i, p in enumerate([0, 1, 1, 3, 0, 5]):
        logits[i, p] = 5.0
    x = torch.arange(6.0).view(6, 1, 1, 1)
    r = evaluate(FixedLogits(logits), [(x, torch.tensor([0, 1, 2, 3, 4, 4]))], 6, classes=list("abcdef"))
    r.source = {"run": "myrun", "model": "quicknet_s", "dataset": "digits", "split": "test"}
    return r


def test_finite_json_turns_non_finite_floats_into_null(tmp_path: Path) -> None:
    nan, inf = float("nan"), float("inf")
    obj = {"a": [nan, inf, 1.5], "b": {"c": -inf, "d": (nan, 2)}, "e": "NaN", "f": None, "g": 3}
    expected = {"a": [None, None, 1.5], "b": {"c": None, "d": [None, 2]}, "e": "NaN", "f": None, "g": 3}
    assert finite_json(obj) == expected
    assert strict_loads(dumps_json(obj)) == expected
    atomic_write_json(tmp_path / "m.json", obj)
    text = (tmp_path / "m.json").read_text()
    assert "NaN" not in text.replace('"NaN"', "") and "Infinity" not in text
    assert strict_loads(text) == expected


def test_precision_recall_f1_against_hand_computed_values(result: EvalResult) -> None:
    m = result.metrics
    assert m["support"] == [1, 1, 1, 1, 2, 0]
    # a, b: predicted twice, right once; c, e: never predicted -> undefined; d: right; f: predicted once, wrong
    assert m["precision"] == [0.5, 0.5, None, 1.0, None, 0.0]
    assert m["recall"] == [1.0, 1.0, 0.0, 1.0, 0.0, None]  # f has no sample
    assert m["f1"] == pytest.approx([2 / 3, 2 / 3, 0.0, 1.0, 0.0, 0.0])  # 2tp / (2tp + fp + fn)
    # recall is the per-class accuracy
    assert m["recall"][:5] == result.per_class[:5]
    # macro over the five classes with samples; a never-predicted class counts precision 0
    assert result.macro == pytest.approx({"precision": 0.4, "recall": 0.6, "f1": 7 / 15})


def test_macro_figures_match_scikit_learn(result: EvalResult) -> None:
    metrics = pytest.importorskip("sklearn.metrics")
    y_true, y_pred = [0, 1, 2, 3, 4, 4], [0, 1, 1, 3, 0, 5]
    p, r, f, _ = metrics.precision_recall_fscore_support(
        y_true, y_pred, labels=[0, 1, 2, 3, 4], average="macro", zero_division=0
    )
    assert result.macro == pytest.approx({"precision": p, "recall": r, "f1": f})


def test_metrics_json_has_per_class_figures_and_no_nan(result: EvalResult, tmp_path: Path) -> None:
    printed = strict_loads(dumps_json(result.to_dict()))
    result.save(tmp_path)
    saved = strict_loads((tmp_path / "metrics.json").read_text())
    assert printed == saved
    assert saved["source"]["run"] == "myrun"
    per = saved["per_class_metrics"]
    assert per["c"] == {"accuracy": 0.0, "precision": None, "recall": 0.0, "f1": 0.0, "support": 1}
    assert per["f"]["accuracy"] is None and per["f"]["recall"] is None and per["f"]["precision"] == 0.0
    assert per["a"]["precision"] == 0.5 and per["a"]["f1"] == pytest.approx(2 / 3)
    assert saved["per_class"]["f"] is None  # was NaN
    assert saved["macro"]["recall"] == pytest.approx(0.6)
    assert saved["confusion_counts"][4] == [1, 0, 0, 0, 0, 1]


def test_table_shows_precision_recall_f1_and_dashes_where_undefined(result: EvalResult) -> None:
    table = result.table()
    assert "macro        precision  40.00%  recall  60.00%  F1  46.67%" in table
    row_c = next(line for line in table.splitlines() if line.startswith("  c "))
    assert row_c.split() == ["c", "0.00", "-", "0.00", "0.00", "1"]
    assert "nan" not in table.lower()


def test_confusion_files_say_what_they_hold_and_are_so(result: EvalResult, tmp_path: Path) -> None:
    result.save(tmp_path)
    with open(tmp_path / "confusion_counts.csv", newline="") as f:
        counts = list(csv.reader(f))
    assert counts[0] == ["counts: true\\pred", *"abcdef"]
    assert counts[5] == ["e", "1", "0", "0", "0", "0", "1"]  # integers: counts
    with open(tmp_path / "confusion_row_normalised.csv", newline="") as f:
        norm = list(csv.reader(f))
    assert norm[0] == ["row-normalised: true\\pred", *"abcdef"]
    for row in norm[1:6]:  # each true class with samples sums to 1
        assert math.isclose(sum(float(v) for v in row[1:]), 1.0)
    assert [float(v) for v in norm[5][1:]] == [0.5, 0, 0, 0, 0, 0.5]
    assert norm[6] == ["f", "", "", "", "", "", ""]  # no sample: undefined, not 0 and not NaN
    with Image.open(tmp_path / "confusion_row_normalised.png") as png:
        title = png.text["Title"]
    assert "row-normalised: each true class sums to 1" in title
    assert "myrun" in title and "quicknet_s" in title and "digits test" in title
    assert not (tmp_path / "confusion.csv").exists()  # no file whose content must be guessed

"""``imgcls summary``: registry names and run directories, table, JSON and CSV, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from imgcls.cli.main import main


def test_summary_of_a_registered_model_as_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "vgg16", "--depth", "2", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["input_size"] == [3, 224, 224] and d["totals"]["params"] == 138_357_544
    pool5 = next(r for r in d["rows"] if r["name"] == "features.30")
    assert pool5["field"] == [212, 212] and pool5["jump"] == [32, 32]
    assert d["totals"]["flops"] == 2 * d["totals"]["macs"] == 2 * sum(r["macs"] for r in d["rows"])


def test_summary_table_and_csv(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["summary", "resnet18", "--input", "3x64x64", "--depth", "1"]) == 0
    table = capsys.readouterr().out
    assert (
        table.startswith("resnet18 at 3x64x64") and "MACs" in table and "FLOPs" in table and "layer4" in table
    )
    assert main(["summary", "resnet18", "--input", "96x96", "--depth", "0", "--csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("name,type,depth,output_shape") and lines[1].startswith(",ResNet,0,1x1000,")


def test_summary_of_a_run_directory(digits_run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    info = json.loads((digits_run / "model.json").read_text())
    assert main(["summary", str(digits_run), "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["input_size"] == [info["in_chans"], info["image_size"], info["image_size"]]
    assert d["output_shape"] == [1, info["num_classes"]] and d["model"].startswith(info["model"])


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["summary", "resnet_nope"], "unknown model"),
        (["summary", "resnet18", "--input", "3x2x"], "--input must look like"),
        (["summary", "resnet18", "--input", "3x0x9"], "sides 1.."),
        (["summary", "resnet18", "--depth", "-1"], "--depth"),
        (["summary", "vit_base_patch16_224", "--input", "3x100x100"], "does not run on a 3x100x100 input"),
    ],
)
def test_summary_errors_are_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_summary_of_a_damaged_run(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "model.json").write_text("{not json")
    assert main(["summary", str(tmp_path)]) == 2
    assert "not valid JSON" in capsys.readouterr().err

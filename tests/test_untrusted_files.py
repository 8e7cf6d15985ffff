"""Untrusted files: no loader runs code from a file, and a damaged or hostile one is refused in one line.

A malicious pickle (an object whose ``__reduce__`` creates a marker file) is planted wherever imgcls reads a
checkpoint: ``state.pt`` for ``--resume``, a ``.pth`` for ``--pretrained`` / ``load_pretrained``, weights for
``eval``, ``predict`` and ``baseline --features``. The marker must never appear. Each planted file is first
checked to be live: ``torch.load(weights_only=False)`` does create the marker.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from imgcls.errors import CheckpointError, ImgclsError
from imgcls.models import create_model, load_pretrained
from imgcls.train import TrainConfig, load_run, train
from tests.cli import run_cli


class _Payload:
    """Pickles as a call to ``open(marker, "w")``: loading it with full pickle creates the marker file."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __reduce__(self) -> tuple:
        return (open, (self.marker, "w"))


def plant(path: Path, marker: Path, wrap: dict | None = None) -> Path:
    """Write a torch file at ``path`` that creates ``marker`` when fully unpickled; check that it does."""
    torch.save((wrap or {}) | {"payload": _Payload(marker)}, path)
    torch.load(path, weights_only=False)  # the payload is live ...
    assert marker.exists()
    marker.unlink()  # ... and the test starts without its marker
    return path


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("runs")
    cfg = TrainConfig(
        dataset="digits", epochs=1, max_steps=2, batch_size=64, out_dir=str(out), name="r", progress=False
    )
    return train(cfg).run_dir


@pytest.fixture
def run_copy(digits_run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(digits_run, tmp_path / "run"))


def _assert_refused(code: int, err: str, marker: Path) -> None:
    assert not marker.exists(), "the planted pickle ran"
    assert code == 2, err
    line = err.strip()
    assert "\n" not in line and "could run code (refused)" in line and "Traceback" not in line, err


def test_resume_refuses_a_malicious_state_pt(run_copy: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    genuine = torch.load(run_copy / "state.pt", weights_only=True)  # a real state loads without pickle code
    plant(run_copy / "state.pt", marker, wrap=genuine)
    code, _, err = run_cli(capsys, "train", "--resume", str(run_copy), "--no-progress")
    _assert_refused(code, err, marker)
    with pytest.raises(CheckpointError, match=r"cannot read training state .*could run code \(refused\)"):
        train(TrainConfig(resume=str(run_copy), progress=False))
    assert not marker.exists()


def test_pretrained_refuses_a_malicious_pth(digits_run: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    evil = plant(tmp_path / "evil.pth", marker)
    argv = ["train", "--dataset", "digits", "--pretrained", str(evil), "--max-steps", "1"]
    code, _, err = run_cli(capsys, *argv, "--out-dir", str(tmp_path / "runs"), "--no-progress")
    _assert_refused(code, err, marker)
    model = create_model("quicknet_s", num_classes=10, in_chans=1, image_size=8)
    with pytest.raises(CheckpointError, match=r"could run code \(refused\)"):
        load_pretrained(model, evil)
    assert not marker.exists()


def test_eval_predict_and_features_refuse_malicious_weights(run_copy: Path, tmp_path: Path, capsys) -> None:
    marker = tmp_path / "pwned"
    evil = plant(run_copy / "evil.pth", marker)
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(image)
    for argv in (
        ["eval", str(evil)],
        ["predict", str(evil), str(image)],
        ["baseline", "knn", "--dataset", "digits", "--features", str(evil)],
        ["baseline", "knn", "--dataset", "digits", "--features", "quicknet_s", "--pretrained", str(evil)],
    ):
        code, _, err = run_cli(capsys, *argv)
        _assert_refused(code, err, marker)
    with pytest.raises(CheckpointError, match=r"could run code \(refused\)"):
        load_run(evil)
    assert not marker.exists()


# ------------------------------------------------------------------------------------------ model.json
@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"classes": ["a", "b"]}, "classes"),  # 2 names for 10 classes
        ({"num_classes": 1e12}, "num_classes"),
        ({"num_classes": "ten"}, "num_classes"),
        ({"num_classes": -3}, "num_classes"),
        ({"num_classes": True}, "num_classes"),
        ({"in_chans": 0}, "in_chans"),
        ({"in_chans": 3}, "mean"),  # the run's one-channel mean no longer fits
        ({"mean": [0.1, 0.2]}, "mean"),
        ({"std": []}, "std"),
        ({"std": [0]}, "std"),
        ({"std": [float("nan")]}, "std"),
        ({"mean": ["x"]}, "mean"),
        ({"image_size": 100000}, "image_size"),
        ({"image_size": None}, "image_size"),
        ({"model": 7}, "model"),
        ({"model_kwargs": [1]}, "model_kwargs"),
        ({"model_config": [1, 2]}, "model_config"),
        ({"dataset": 5}, "dataset"),
        ({"tta_flip": "yes"}, "tta_flip"),
    ],
)
def test_hostile_model_json_is_one_line_naming_the_field(
    run_copy: Path, change: dict, field: str, capsys
) -> None:
    path = run_copy / "model.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | change))
    with pytest.raises(CheckpointError, match=rf"{field} must be .*; fix {field} in model.json") as err:
        load_run(run_copy)
    assert "\n" not in str(err.value)
    code, _, stderr = run_cli(capsys, "eval", str(run_copy))
    assert code == 2 and f"{field} must be" in stderr and "Traceback" not in stderr


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"stem_stride": "x"}, r"does not build quicknet_s \(TypeError"),
        ({"bogus": 1}, "has no argument 'bogus': its config fields are stem, widths"),
        ({"widths": [100_000]}, r"a model of [\d,]+ values, beyond any imgcls run"),  # never allocated
    ],
)
def test_model_kwargs_that_do_not_build_the_model_are_one_line(
    run_copy: Path, kwargs: dict, message: str
) -> None:
    path = run_copy / "model.json"
    path.write_text(json.dumps(json.loads(path.read_text()) | {"model_kwargs": kwargs, "model_config": None}))
    with pytest.raises(ImgclsError, match=message) as err:
        load_run(run_copy)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("content", ["[1, 2]", "\xff\xfe not text", '{"model": "quicknet_s"}'])
def test_damaged_model_json_is_one_line(run_copy: Path, content: str) -> None:
    (run_copy / "model.json").write_bytes(content.encode("latin-1"))
    with pytest.raises(CheckpointError, match="damaged") as err:
        load_run(run_copy)
    assert "\n" not in str(err.value)

"""Fixtures of the export tests: one small trained run (digits, quicknet_s) and its ONNX export.

The tests need onnx, onnxscript and onnxruntime (``pip install 'imgcls[export]'``) and skip, saying so, where
onnxruntime is not importable.
"""

from __future__ import annotations

from pathlib import Path

import pytest

pytest.importorskip("onnxruntime", reason="onnxruntime is not installed: pip install 'imgcls[export]'")

from imgcls.cli.main import main  # noqa: E402


@pytest.fixture(scope="package")
def digits_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """quicknet_s after 30 steps on digits: far enough from chance that accuracy comparisons mean something."""
    out = tmp_path_factory.mktemp("runs")
    argv = ["-q", "train", "--dataset", "digits", "--max-steps", "30", "--out-dir", str(out), "--name", "d"]
    assert main([*argv, "--no-progress"]) == 0
    return out / "d"


@pytest.fixture(scope="package")
def onnx_file(digits_run: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from imgcls.export import export_onnx

    return export_onnx(digits_run, tmp_path_factory.mktemp("onnx") / "model.onnx").path

"""int8 quantisation: a smaller QDQ ONNX file that keeps the metadata, predicts like fp32, and is reported on."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from imgcls.cli.main import main
from imgcls.errors import ConfigError
from imgcls.export import OnnxClassifier
from imgcls.export.quantize import latencies_ms, quantization_report, quantize_run, report_table

from .test_onnx import debug_annotations


@pytest.fixture(scope="module")
def quantized(digits_run: Path, tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("int8")
    return quantize_run(digits_run, out / "m.int8.onnx", calib=64, fp32_out=out / "m.onnx")


def test_int8_file_is_quantised_per_channel_and_keeps_metadata(quantized) -> None:
    import onnx

    model = onnx.load(str(quantized.path))
    ops = {n.op_type for n in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    int8_weights = [t for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8]
    assert int8_weights, "no int8 weights"
    per_channel = [t for t in model.graph.initializer if t.name.endswith("_scale") and len(t.dims) == 1]
    assert per_channel, "weights are not quantised per channel"
    assert quantized.calib_images == 64
    assert debug_annotations(quantized.path) == []  # no stack traces, as in the fp32 file
    # Biases stay float in the file (no int32 copy with a scale and zero point per channel) ...
    assert not [t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT32]
    assert quantized.path.stat().st_size < 0.35 * quantized.fp32_path.stat().st_size
    fp32, int8 = OnnxClassifier(quantized.fp32_path), OnnxClassifier(quantized.path)
    assert int8.meta == fp32.meta
    pixels = np.random.default_rng(0).integers(0, 256, (32, 1, 8, 8), dtype=np.uint8)
    a, b = fp32.logits(pixels), int8.logits(pixels)
    assert (a.argmax(1) == b.argmax(1)).mean() >= 0.8  # int8 rounding may flip a few close calls, not most
    assert not np.allclose(a, b, rtol=1e-6, atol=1e-6)  # and it is really another computation


def test_onnxruntime_runs_every_convolution_in_int8(quantized, tmp_path: Path) -> None:
    """... and onnxruntime still fuses each quantised Conv, float bias and all, into one int8 kernel."""
    import onnx
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.optimized_model_filepath = str(tmp_path / "optimised.onnx")
    ort.InferenceSession(str(quantized.path), opts, providers=["CPUExecutionProvider"])
    ops = [n.op_type for n in onnx.load(opts.optimized_model_filepath).graph.node]
    convs = [n for n in onnx.load(str(quantized.path)).graph.node if n.op_type == "Conv"]
    assert ops.count("QLinearConv") == len(convs) > 0 and "Conv" not in ops, ops


def test_report_compares_accuracy_size_and_latency(quantized, tmp_path: Path) -> None:
    report = quantization_report(quantized, repeats_b1=5, repeats_b32=2, save=tmp_path / "r.json")
    fp32, int8 = report["variants"]
    assert fp32["top1"] > 50  # the run is far from chance (10%), so the comparison means something
    assert abs(report["top1_drop_points"]) <= 5.0
    assert report["size_ratio"] == pytest.approx(int8["bytes"] / fp32["bytes"])
    for v in report["variants"]:  # medians inside their quartiles: the spread is reported with them
        for b in (1, 32):
            low, high = v[f"latency_b{b}_iqr_ms"]
            assert 0 < low <= v[f"latency_b{b}_ms"] <= high
    assert json.loads((tmp_path / "r.json").read_text()) == json.loads(json.dumps(report))
    assert "| int8 (`m.int8.onnx`) |" in report_table(report)


def test_latencies_alternate_files_and_keep_to_the_budget(quantized) -> None:
    pair = [OnnxClassifier(quantized.fp32_path), OnnxClassifier(quantized.path)]
    full = latencies_ms(pair, 1, repeats=12, rounds=4, warmup=1)
    assert [len(t) for t in full] == [12, 12] and all(ms > 0 for t in full for ms in t)
    short = latencies_ms(pair, 1, repeats=1000, rounds=100, warmup=1, budget_s=0.0)
    assert [len(t) for t in short] == [10, 10]  # one round of 1000 / 100, for each file, then the budget


def test_cli_quantize_and_bad_settings(digits_run: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "q.int8.onnx"
    assert main(["-q", "quantize", str(digits_run), "--calib", "32", "--out", str(out), "--no-report"]) == 0
    assert out.is_file() and "32 calibration images" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="--calib"):
        quantize_run(digits_run, tmp_path / "x.onnx", calib=0)
    assert main(["quantize", str(digits_run), "--calib", "0"]) == 2
    assert capsys.readouterr().err.startswith("imgcls quantize: error: calib must be >= 1")

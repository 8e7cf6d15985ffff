"""Static post-training int8 quantisation of a trained run, as ONNX (``imgcls quantize RUN``).

Which tool, and why: onnxruntime's static quantisation (``onnxruntime.quantization.quantize_static``) in QDQ
form. ``torch.ao.quantization`` is deprecated in torch 2.13, and its successor, PT2E quantisation in
``torchao``, gives int8 speed on a CPU only through ``torch.compile`` with Inductor's x86 backend (a C++
compiler at run time, and minutes of compilation for a network): the artefact is a torch program, not a file
a non-Python client runs. onnxruntime gives a self-contained ``.onnx`` that any onnxruntime binding runs,
with int8 kernels on AVX2 (``vpmaddubsw``) and AVX-512 VNNI CPUs, and builds on the verified fp32 export.

The recipe: export fp32 ONNX (:func:`imgcls.export.onnx.export_model_onnx`, checked against eager PyTorch),
run onnxruntime's pre-processing (shape inference, and graph optimisation that folds each BatchNorm into its
convolution, so the folded weights are what is quantised), then calibrate on ``calib`` training images (512 by
default, drawn at random with a fixed seed, normalised as in evaluation, never augmented) with min-max
ranges, and quantise: weights to int8 per output channel (symmetric), activations to uint8 per tensor (the
``U8S8`` pair onnxruntime's CPU kernels are fastest at), biases left in float (onnxruntime turns them into the
int32 bias of its fused int8 convolution when it loads the file). The result keeps the fp32 export's
``imgcls`` metadata, so ``imgcls predict --onnx`` runs it as it runs the fp32 file; like the fp32 file, it
carries no debugging annotations (:func:`~imgcls.export.onnx.strip_debug_info`).

:func:`quantization_report` measures what it costs and gains: top-1 of the fp32 and the int8 file on the test
set (both in onnxruntime), file sizes, and the latency (median and quartiles) of a batch of 1 and of 32 on
this CPU, the two files timed in alternating rounds.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from imgcls.errors import CheckpointError, ConfigError
from imgcls.export.onnx import (
    METADATA_KEY,
    OnnxClassifier,
    default_out,
    export_model_onnx,
    load_for_export,
    quiet_exporter,
    require,
    run_metadata,
    strip_debug_info,
)
from imgcls.train.checkpoint import LoadedRun
from imgcls.utils.files import atomic_path, atomic_write_json

__all__ = [
    "FORMATS",
    "QuantizeResult",
    "Variant",
    "latencies_ms",
    "quantization_report",
    "quantize_run",
    "report_table",
]

log = logging.getLogger(__name__)

FORMATS = ("onnx-int8",)
CALIB_BATCH = 32


@dataclass
class Variant:
    """One file of the report: its accuracy on the test set, its size, its latency on this CPU."""

    name: str  # "fp32" or "int8"
    path: str
    bytes: int
    top1: float | None  # percent on the test set; None where not measured
    latency_b1_ms: float | None  # median over the timed runs
    latency_b32_ms: float | None
    latency_b1_iqr_ms: tuple[float, float] | None = None  # first and third quartiles: the spread
    latency_b32_iqr_ms: tuple[float, float] | None = None


@dataclass
class QuantizeResult:
    path: Path  # the int8 file
    fp32_path: Path
    calib_images: int
    report: dict[str, Any] | None = None


def _dataset(info: dict[str, Any], dataset: str | None, split: str, data_dir: str | None) -> Any:
    from dataclasses import replace

    from imgcls.data import load_dataset

    name = dataset or info.get("dataset")
    if not name:
        raise CheckpointError("the run does not say which dataset it was trained on: pass --dataset")
    ds = load_dataset(
        name, split, data_dir=data_dir, image_size=info["image_size"], channels=info["in_chans"]
    )
    if ds.info.num_classes != info["num_classes"]:
        raise CheckpointError(
            f"the model has {info['num_classes']} classes but dataset '{name}' has {ds.info.num_classes}: "
            "pass a --dataset with the same classes"
        )
    ds.info = replace(ds.info, mean=tuple(info["mean"]), std=tuple(info["std"]))  # the run's normalisation
    return ds


def calibration_batches(
    info: dict[str, Any], n: int, *, dataset: str | None = None, data_dir: str | None = None, seed: int = 0
) -> list[np.ndarray]:
    """``n`` training images (fewer where the set is smaller), random but fixed by ``seed``, normalised as in
    evaluation: float32 ``(B, C, H, W)`` batches of at most :data:`CALIB_BATCH`."""
    from imgcls.data import make_loader

    ds = _dataset(info, dataset, "train", data_dir)
    loader = make_loader(ds, min(CALIB_BATCH, n), train=True, augment=None, seed=seed)  # shuffled, no augment
    out, have = [], 0
    for x, _ in loader:
        x = x[: n - have]
        out.append(x.float().numpy())
        have += len(x)
        if have >= n:
            break
    if not out:
        raise ConfigError(
            f"no calibration images: the training set has fewer than {min(CALIB_BATCH, n)} images"
        )
    return out


class _Reader:
    """onnxruntime's ``CalibrationDataReader`` protocol over a list of batches."""

    def __init__(self, batches: list[np.ndarray], input_name: str) -> None:
        self._it: Iterator[np.ndarray] = iter(batches)
        self.input_name = input_name

    def get_next(self) -> dict[str, np.ndarray] | None:
        x = next(self._it, None)
        return None if x is None else {self.input_name: x}


def quantize_run(
    run: str | Path | LoadedRun,
    out: str | Path | None = None,
    *,
    calib: int = 512,
    fmt: str = "onnx-int8",
    dataset: str | None = None,
    data_dir: str | None = None,
    which: str = "best",
    seed: int = 0,
    fp32_out: str | Path | None = None,
) -> QuantizeResult:
    """Quantise a trained run to int8 ONNX (default ``RUN/model.int8.onnx``; fp32 beside it, ``RUN/model.onnx``).

    See the module docstring for the recipe. ``calib`` training images of the run's dataset (or ``dataset``)
    calibrate the activation ranges.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown quantisation format '{fmt}': use {', '.join(FORMATS)}")
    if calib < 1:
        raise ConfigError(f"calib must be >= 1 image, got {calib}: pass --calib 1 or more (default 512)")
    require("onnx")
    q = require("onnxruntime.quantization")
    from onnxruntime.quantization.shape_inference import quant_pre_process

    loaded = load_for_export(run, which)
    info = loaded.info
    model = loaded.model.float().eval()
    shape = (int(info["in_chans"]), int(info["image_size"]), int(info["image_size"]))
    meta = run_metadata(info, loaded.classes, "float32")
    fp32 = Path(fp32_out) if fp32_out is not None else default_out(loaded, ".onnx")
    path = Path(out) if out is not None else default_out(loaded, ".int8.onnx")
    batches = calibration_batches(info, calib, dataset=dataset, data_dir=data_dir, seed=seed)
    export_model_onnx(model, shape, fp32, metadata={METADATA_KEY: meta})
    with tempfile.TemporaryDirectory(prefix="imgcls-quantize-") as tmp, quiet_exporter():
        pre = Path(tmp) / "pre.onnx"
        # ONNX shape inference and onnxruntime's basic graph optimisation (BatchNorm folded into the convolutions);
        # the symbolic shape inference fails on the dynamo exporter's Reshape of a dynamic batch, and is not needed.
        quant_pre_process(str(fp32), str(pre), skip_symbolic_shape=True)
        int8 = Path(tmp) / "int8.onnx"
        q.quantize_static(
            str(pre),
            str(int8),
            _Reader(batches, "image"),
            quant_format=q.QuantFormat.QDQ,
            per_channel=True,
            activation_type=q.QuantType.QUInt8,
            weight_type=q.QuantType.QInt8,
            calibrate_method=q.CalibrationMethod.MinMax,
            # Biases stay float in the file: onnxruntime quantises them to int32 with the input and weight
            # scales when it fuses each DequantizeLinear-Conv-QuantizeLinear group into a QLinearConv, the same
            # int32 the quantiser would have stored (identical logits), without an int32 copy plus a float
            # scale and an int32 zero point per output channel: 3x the bytes of the float bias.
            extra_options={"QuantizeBias": False},
        )
        _set_metadata(int8, {METADATA_KEY: meta})
        with atomic_path(path) as dest:
            dest.write_bytes(int8.read_bytes())
    n = sum(len(b) for b in batches)
    log.info("wrote %s (%.2f MB, calibrated on %d images)", path, path.stat().st_size / 1e6, n)
    return QuantizeResult(path, fp32, n)


def _set_metadata(path: Path, metadata: dict[str, Any]) -> None:
    """Put ``metadata`` (JSON values) into the ONNX file at ``path``, replacing entries of the same key; drop
    debugging annotations (:func:`~imgcls.export.onnx.strip_debug_info`) as the fp32 export does."""
    import json

    import onnx

    model = onnx.load(str(path))
    strip_debug_info(model)
    kept = [p for p in model.metadata_props if p.key not in metadata]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in metadata.items():
        model.metadata_props.add(key=key, value=value if isinstance(value, str) else json.dumps(value))
    onnx.save(model, str(path))


def top1(clf: OnnxClassifier, loader: Any) -> float:
    """Top-1 accuracy (%) of an ONNX classifier over a loader's normalised batches, in the run's TTA setting."""
    hits = total = 0
    flip = bool(clf.meta.get("tta_flip", False))
    for x, y in loader:
        xn = x.float().numpy()
        logits = clf.run(xn)
        if flip:
            logits = 0.5 * (logits + clf.run(np.ascontiguousarray(xn[..., ::-1])))
        hits += int((logits.argmax(1) == y.numpy()).sum())
        total += len(y)
    return 100.0 * hits / max(total, 1)


def latencies_ms(
    classifiers: list[OnnxClassifier],
    batch: int,
    *,
    repeats: int,
    rounds: int = 20,
    warmup: int = 20,
    budget_s: float | None = 30.0,
) -> list[list[float]]:
    """Wall times (ms) of single runs on a batch of ``batch`` random normalised images, for each classifier.

    The classifiers take turns, ``repeats / rounds`` runs each per round (at least one), so a change in the
    machine's load during the measurement weighs on all of them alike, and each is warmed up first (the first
    runs of a session allocate its buffers). A large model stops short of ``repeats`` at the end of the first
    round that finds ``budget_s`` seconds spent.
    """
    meta = classifiers[0].meta
    shape = (batch, meta["in_chans"], meta["image_size"], meta["image_size"])
    x = np.random.default_rng(0).standard_normal(shape, dtype=np.float32)
    for clf in classifiers:
        for _ in range(warmup):
            clf.run(x)
    times: list[list[float]] = [[] for _ in classifiers]
    per_round = max(1, -(-repeats // max(1, rounds)))
    start = time.perf_counter()
    while len(times[0]) < repeats:
        for clf, out in zip(classifiers, times):
            for _ in range(min(per_round, repeats - len(out))):
                t = time.perf_counter()
                clf.run(x)
                out.append(1000 * (time.perf_counter() - t))
        if budget_s is not None and time.perf_counter() - start >= budget_s:
            break
    return times


def _quartiles(values: list[float]) -> tuple[float, float, float]:
    q1, q2, q3 = np.percentile(values, [25, 50, 75])
    return float(q1), float(q2), float(q3)


def quantization_report(
    result: QuantizeResult,
    *,
    dataset: str | None = None,
    data_dir: str | None = None,
    max_test: int | None = None,
    repeats_b1: int = 2000,
    repeats_b32: int = 100,
    threads: int | None = None,
    save: str | Path | None = None,
) -> dict[str, Any]:
    """fp32 against int8: test top-1, file size, batch-1 and batch-32 latency (median); optionally saved as JSON.

    ``max_test`` caps the test images (all by default); ``threads`` is onnxruntime's intra-op threads (default:
    torch's). Both files run in onnxruntime with the same session options, so the comparison is of the
    quantisation, not of the runtimes; their timed runs alternate (:func:`latencies_ms`), and the report gives
    the median and the quartiles of each.
    """
    from imgcls.data import make_loader

    threads = threads or torch.get_num_threads()
    fp32, int8 = OnnxClassifier(result.fp32_path, threads), OnnxClassifier(result.path, threads)
    meta = fp32.meta
    ds = _dataset(
        {**meta, "num_classes": len(meta["classes"]), "dataset": meta.get("dataset")},
        dataset,
        "test",
        data_dir,
    )
    if max_test is not None and max_test < len(ds):
        from imgcls.data import InMemoryDataset

        if isinstance(ds, InMemoryDataset):
            ds = InMemoryDataset(ds.images[:max_test], ds.labels[:max_test], ds.info)
    pair = [fp32, int8]
    b1 = [_quartiles(t) for t in latencies_ms(pair, 1, repeats=repeats_b1)]
    b32 = [_quartiles(t) for t in latencies_ms(pair, 32, repeats=repeats_b32)]
    variants = [
        Variant(
            name=name,
            path=str(clf.path),
            bytes=clf.path.stat().st_size,
            top1=top1(clf, make_loader(ds, 256, train=False)),
            latency_b1_ms=q1[1],
            latency_b32_ms=q32[1],
            latency_b1_iqr_ms=(q1[0], q1[2]),
            latency_b32_iqr_ms=(q32[0], q32[2]),
        )
        for name, clf, q1, q32 in zip(("fp32", "int8"), pair, b1, b32)
    ]
    a, b = variants
    report = {
        "model": meta["model"],
        "dataset": dataset or meta.get("dataset"),
        "test_images": len(ds),
        "calib_images": result.calib_images,
        "threads": threads,
        "variants": [asdict(v) for v in variants],
        "top1_drop_points": (a.top1 or 0) - (b.top1 or 0),
        "size_ratio": b.bytes / a.bytes,
        "latency_b1_ratio": (b.latency_b1_ms or 0) / (a.latency_b1_ms or 1),
        "latency_b32_ratio": (b.latency_b32_ms or 0) / (a.latency_b32_ms or 1),
    }
    result.report = report
    if save is not None:
        atomic_write_json(save, report)
    return report


def report_table(report: dict[str, Any]) -> str:
    """The report as a markdown table, one row per file, and a line of int8/fp32 ratios."""

    def ms(v: dict[str, Any], batch: int) -> str:
        median, iqr = v[f"latency_b{batch}_ms"], v.get(f"latency_b{batch}_iqr_ms")
        return f"{median:.3f}" + (f" ({iqr[0]:.3f}-{iqr[1]:.3f})" if iqr else "")

    lines = [
        "| file | top-1 % | size MB | batch-1 ms (quartiles) | batch-32 ms (quartiles) |",
        "|---|---|---|---|---|",
    ]
    for v in report["variants"]:
        lines.append(
            f"| {v['name']} (`{Path(v['path']).name}`) | {v['top1']:.2f} | {v['bytes'] / 1e6:.3f} | "
            f"{ms(v, 1)} | {ms(v, 32)} |"
        )
    lines.append(
        f"\nint8 vs fp32: top-1 {0.0 - report['top1_drop_points']:+.2f} points, size {report['size_ratio']:.2f}x, "
        f"batch-1 latency {report['latency_b1_ratio']:.2f}x, batch-32 latency {report['latency_b32_ratio']:.2f}x "
        f"({report['test_images']} test images, {report['calib_images']} calibration images, "
        f"{report['threads']} thread{'s' if report['threads'] != 1 else ''})"
    )
    return "\n".join(lines)

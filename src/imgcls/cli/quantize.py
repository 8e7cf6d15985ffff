"""``imgcls quantize RUN``: int8 ONNX by static post-training quantisation, with a report of what it costs.

Writes ``RUN/model.int8.onnx`` (and the fp32 ``RUN/model.onnx`` it is compared with), prints a table of test
top-1, file size and batch-1 / batch-32 latency of both, and saves the report as JSON beside the int8 file
(``model.int8.json``). See :mod:`imgcls.export.quantize` for the recipe.
"""

from __future__ import annotations

import argparse
from pathlib import Path

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "quantize",
        help="int8 ONNX of a run, with an accuracy/size/latency report",
        description="Quantise a trained run to int8 ONNX (onnxruntime static QDQ, per-channel weights).",
    )
    p.add_argument("run", help="run directory (runs/NAME) or a .safetensors file inside one")
    p.add_argument("--calib", type=int, default=512, help="training images to calibrate on (default: 512)")
    p.add_argument("--format", default="onnx-int8", choices=["onnx-int8"])
    p.add_argument("--out", default=None, help="int8 file to write (default: RUN/model.int8.onnx)")
    p.add_argument("--dataset", default=None, help="calibrate and test on this dataset (default: the run's)")
    p.add_argument("--data-dir", default=None)
    p.add_argument("--weights", default="best", choices=["best", "last"])
    p.add_argument(
        "--report", action=argparse.BooleanOptionalAction, default=True, help="measure and print the report"
    )
    p.add_argument(
        "--max-test", type=int, default=None, help="test on the first N test images (default: all)"
    )
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imgcls.errors import ConfigError
    from imgcls.export.quantize import quantization_report, quantize_run, report_table
    from imgcls.utils.files import dumps_json

    if args.max_test is not None and args.max_test < 1:
        raise ConfigError(f"--max-test must be >= 1, got {args.max_test}")
    result = quantize_run(
        args.run,
        args.out,
        calib=args.calib,
        fmt=args.format,
        dataset=args.dataset,
        data_dir=args.data_dir,
        which=args.weights,
    )
    if not args.report:
        print(
            f"{result.path} ({result.path.stat().st_size / 1e6:.2f} MB, {result.calib_images} calibration images)"
        )
        return 0
    save = Path(result.path).with_suffix(".json")
    report = quantization_report(
        result, dataset=args.dataset, data_dir=args.data_dir, max_test=args.max_test, save=save
    )
    if args.json:
        print(dumps_json(report))
    else:
        print(report_table(report))
        print(f"report: {save}")
    return 0

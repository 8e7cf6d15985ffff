"""``imgcls export RUN --format onnx|torch-export``: a file that runs the trained model without imgcls.

The export is checked against eager PyTorch before it is written (batch 1, 3 and 8); the command prints the
file's path and the largest logit difference found. See :mod:`imgcls.export` for what the files hold.
"""

from __future__ import annotations

import argparse

__all__ = ["add_parser", "run"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export",
        help="export a run to ONNX or torch.export",
        description="Export a trained run to ONNX (checked in onnxruntime) or a torch.export .pt2 file.",
    )
    p.add_argument("run", help="run directory (runs/NAME) or a .safetensors file inside one")
    p.add_argument("--format", default="onnx", choices=["onnx", "torch-export"], help="default: onnx")
    p.add_argument("--out", default=None, help="file to write (default: RUN/model.onnx or RUN/model.pt2)")
    p.add_argument("--opset", type=int, default=18, help="ONNX opset (default: 18)")
    p.add_argument(
        "--dynamic-batch",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="a dynamic batch axis (default); --no-dynamic-batch fixes it at 1",
    )
    p.add_argument(
        "--uint8-input",
        action="store_true",
        help="ONNX: take uint8 pixels 0..255 and normalise inside the graph (default: normalised float32)",
    )
    p.add_argument(
        "--dtype",
        default="fp32",
        choices=["fp32", "bf16", "fp16"],
        help="torch-export: weights and arithmetic in this type; refused where this CPU has no fast path",
    )
    p.add_argument("--weights", default="best", choices=["best", "last"])
    p.add_argument("--json", action="store_true", help="print what was written as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from imgcls.errors import ConfigError
    from imgcls.export import export_onnx, export_torch
    from imgcls.utils.files import dumps_json

    if args.format == "onnx":
        if args.dtype != "fp32":
            raise ConfigError(f"--dtype {args.dtype} is for --format torch-export; ONNX exports are fp32")
        result = export_onnx(
            args.run,
            args.out,
            opset=args.opset,
            dynamic_batch=args.dynamic_batch,
            uint8_input=args.uint8_input,
            which=args.weights,
        )
    else:
        if args.uint8_input:
            raise ConfigError("--uint8-input is for --format onnx; a torch-export program takes float32")
        result = export_torch(
            args.run, args.out, dynamic_batch=args.dynamic_batch, dtype=args.dtype, which=args.weights
        )
    if args.json:
        print(dumps_json(result.to_dict()))
        return 0
    worst = max(result.parity, key=lambda p: p.rel_diff, default=None)
    checked = (
        f"matches eager PyTorch at batch {', '.join(str(p.batch) for p in result.parity)} "
        f"(max |logit difference| {worst.max_abs_diff:.2g}, {worst.rel_diff:.2g} of the largest logit)"
        if worst is not None
        else "not checked"
    )
    print(f"{result.path} ({result.format}, {result.path.stat().st_size / 1e6:.2f} MB): {checked}")
    return 0

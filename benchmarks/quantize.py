"""int8 against fp32 ONNX: test top-1, file size, batch-1 and batch-32 latency (``imgcls quantize``'s report).

Trains a short run of each case (or takes the runs you name), quantises it (onnxruntime static QDQ, per-channel
int8 weights, 512 calibration images) and measures both files in onnxruntime on this CPU. The issue's targets
per case: top-1 drop <= 1.0 point, file <= 0.3x fp32, batch-1 latency <= 0.7x fp32.

    python benchmarks/quantize.py                       # quicknet_s on Fashion-MNIST, cifar_resnet20 on digits
    python benchmarks/quantize.py --run runs/NAME ...   # existing runs instead

Writes ``benchmarks/results/quantize_<cpuclass>.md`` and ``.json`` (``--out`` elsewhere), with the machine.
"""

from __future__ import annotations

import os

# Passive OpenMP waiting, as `import imgcls` sets it, must be in place before torch loads (see README).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
from _common import hardware  # noqa: E402

from imgcls.export.quantize import quantization_report, quantize_run, report_table  # noqa: E402
from imgcls.train import resolve_config, train  # noqa: E402
from imgcls.utils.hardware import cpu_class  # noqa: E402

# (model, dataset, training overrides): short runs, enough to be far from chance; the report is about the
# quantisation, not the training.
CASES = [
    ("quicknet_s", "fashion-mnist", {"preset": "fast", "epochs": 2}),
    ("cifar_resnet20", "digits", {"epochs": 15, "batch_size": 128}),
    # the same network on 28x28 images: at 8x8 its batch-1 time is mostly the cost of launching ~50 kernels
    ("cifar_resnet20", "fashion-mnist", {"epochs": 2, "batch_size": 128}),
]

TARGETS = {"top1_drop_points": 1.0, "size_ratio": 0.3, "latency_b1_ratio": 0.7}


def _loadavg() -> str:
    """The load average over 1, 5 and 15 minutes, where the system says (Linux); timings under load are slower."""
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", nargs="*", default=None, help="existing run directories instead of training")
    ap.add_argument("--calib", type=int, default=512)
    ap.add_argument(
        "--threads",
        type=int,
        nargs="+",
        default=sorted({1, torch.get_num_threads()}),
        help="onnxruntime intra-op threads, one report each (default: 1 and all of torch's)",
    )
    ap.add_argument(
        "--out", default=None, help="report file (default: benchmarks/results/quantize_<cpuclass>.md)"
    )
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    machine = hardware()
    load_before = _loadavg()
    out = Path(args.out or Path(__file__).parent / "results" / f"quantize_{cpu_class()}.md")
    sections, reports = [], []
    with tempfile.TemporaryDirectory() as tmp:
        runs: list[tuple[str, Path]] = []
        if args.run:
            runs = [(f"run {r}", Path(r)) for r in args.run]
        else:
            for model, dataset, overrides in CASES:
                cfg = resolve_config(
                    overrides={
                        **overrides,
                        "model": model,
                        "dataset": dataset,
                        "progress": False,
                        "out_dir": tmp,
                    }
                )
                t = time.perf_counter()
                r = train(cfg)
                label = f"`{model}` on {dataset} ({json.dumps(overrides)}, {time.perf_counter() - t:.0f} s)"
                runs.append((label, r.run_dir))
        for label, run_dir in runs:
            result = quantize_run(run_dir, calib=args.calib)
            for threads in args.threads:
                report = quantization_report(result, threads=threads)
                met = {k: report[k] <= v for k, v in TARGETS.items()}
                report["targets_met"] = met
                reports.append({"case": label, **report})
                verdict = ", ".join(
                    f"{k} <= {TARGETS[k]}: {'met' if ok else 'NOT met'}" for k, ok in met.items()
                )
                sections.append(
                    f"### {label}, {threads} thread{'s' if threads > 1 else ''}\n\n{report_table(report)}\n\n"
                    f"Targets: {verdict}.\n"
                )
                print(sections[-1], flush=True)
    text = (
        "# int8 vs fp32 ONNX (onnxruntime static QDQ, per-channel int8 weights, uint8 activations)\n\n"
        f"Command: `{' '.join(['python benchmarks/quantize.py', *sys.argv[1:]])}`; {time.strftime('%Y-%m-%d')}.\n\n"
        f"Machine: {machine}; load average (1, 5, 15 min) {load_before} before, {_loadavg()} after.\n\n"
        "Latency: median and quartiles of 2000 (batch 1) and 100 (batch 32) runs after 20 warm-up runs, the two "
        "files taking turns in 20 rounds, same onnxruntime session options for both (intra-op threads as "
        "below, onnxruntime's defaults otherwise); top-1 on the whole test set, with the run's flip TTA. "
        "Each case is timed on one thread and on all of them, in the same process: on 2 cores the ratio on "
        "2 threads changes from process to process (where the scheduler puts the worker threads), the ratio on "
        "1 thread much less (README, int8). "
        "Both files are written without the exporter's debugging annotations.\n\n" + "\n".join(sections)
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    out.with_suffix(".json").write_text(json.dumps({"machine": machine, "cases": reports}, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()

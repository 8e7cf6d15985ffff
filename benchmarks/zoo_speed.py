"""Training and inference speed of every registered model, as a CSV and a Markdown table.

For each model: images per second for a training step (forward, backward, SGD step) and for inference
(no grad, eval mode) at a chosen input size and batch size, the FLOPs per image, and the achieved FLOP/s as a
share of the machine's matrix-multiply throughput measured in the same run. A low share flags a model that
runs slower than its arithmetic suggests (depthwise / grouped convolutions, LRN, channel shuffles, many small
kernels): the README discusses those.

    python benchmarks/zoo_speed.py --size 32 --batch-size 64            # every model, small-input forms
    python benchmarks/zoo_speed.py --pattern 'resnet*' --size 224 --batch-size 16 --channels 3
"""

from __future__ import annotations

import os

# Passive OpenMP waiting, as `import imgcls` sets it, must be in place before torch loads (see README).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import csv
import logging
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import hardware  # noqa: E402

from imgcls.analysis import count_flops, matmul_throughput  # noqa: E402
from imgcls.models import create_model, list_models  # noqa: E402
from imgcls.models.registry import AuxOutputs  # noqa: E402


def _time(fn, min_seconds: float, min_iters: int = 3) -> list[float]:
    fn()  # warm up
    times: list[float] = []
    end = time.perf_counter() + min_seconds
    while len(times) < min_iters or time.perf_counter() < end:
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
        if len(times) >= 50:
            break
    return times


def bench(name: str, chans: int, size: int, batch: int, seconds: float, channels_last: bool) -> dict:
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, in_chans=chans, image_size=size)
    x = torch.randn(batch, chans, size, size)
    y = torch.randint(0, 10, (batch,))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
        x = x.contiguous(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)

    def train_step() -> None:
        out = model(x)
        logits = out.logits if isinstance(out, AuxOutputs) else out
        torch.nn.functional.cross_entropy(logits, y).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def infer() -> None:
        with torch.no_grad():
            model(x)

    model.train()
    t_train = _time(train_step, seconds)
    model.eval()
    t_inf = _time(infer, seconds)
    fwd_flops = count_flops(model, (chans, size, size), batch_size=1)
    med_train, med_inf = statistics.median(t_train), statistics.median(t_inf)
    return {
        "model": name,
        "params": sum(p.numel() for p in model.parameters()),
        "gflops_fwd": fwd_flops / 1e9,
        "train_img_s": batch / med_train,
        "train_spread": (max(t_train) - min(t_train)) / med_train,
        "infer_img_s": batch / med_inf,
        "infer_spread": (max(t_inf) - min(t_inf)) / med_inf,
        "infer_gflop_s": fwd_flops * batch / med_inf / 1e9,
        "runs": min(len(t_train), len(t_inf)),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pattern", default="*")
    ap.add_argument("--size", type=int, default=32)
    ap.add_argument("--channels", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seconds", type=float, default=1.0, help="minimum timing per model and mode")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--out", default="benchmarks/results/zoo_speed")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    peak = matmul_throughput(torch.float32, size=1024, seconds=2.0) / 1e9
    rows = []
    for name in list_models(args.pattern):
        try:
            r = bench(
                name, args.channels, args.size, args.batch_size, args.seconds, not args.no_channels_last
            )
        except Exception as e:  # report and go on: one broken model must not hide the rest
            print(f"{name}: failed: {type(e).__name__}: {e}", file=sys.stderr)
            continue
        r["share_of_peak"] = r["infer_gflop_s"] / peak
        rows.append(r)
        print(
            f"{name:28s} train {r['train_img_s']:9.1f} img/s  infer {r['infer_img_s']:9.1f} img/s  "
            f"{100 * r['share_of_peak']:5.1f}% of peak",
            flush=True,
        )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out.with_suffix(".csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    md = [
        f"# Zoo speed: {args.channels}x{args.size}x{args.size}, batch {args.batch_size}, fp32, "
        f"{'NCHW' if args.no_channels_last else 'channels_last'}",
        "",
        f"- hardware: {hardware()}; fp32 matmul peak {peak:.0f} GFLOP/s (1024^2, best of 2 s)",
        f"- timing: median of >= {args.seconds:g} s per model and mode (>= 3 runs); spread = (max - min) / median",
        f"- command: python {' '.join(sys.argv)}",
        "",
        "| model | params | GFLOPs/img (fwd) | train img/s | infer img/s | infer GFLOP/s | share of matmul peak |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        md.append(
            f"| {r['model']} | {r['params']:,} | {r['gflops_fwd']:.3f} | {r['train_img_s']:.1f} "
            f"(±{50 * r['train_spread']:.0f}%) | {r['infer_img_s']:.1f} (±{50 * r['infer_spread']:.0f}%) | "
            f"{r['infer_gflop_s']:.1f} | {100 * r['share_of_peak']:.1f}% |"
        )
    out.with_suffix(".md").write_text("\n".join(md) + "\n")
    print(f"wrote {out.with_suffix('.csv')} and {out.with_suffix('.md')}")


if __name__ == "__main__":
    main()

"""Training throughput on 1 and 2 processes (DistributedDataParallel over gloo), 1 thread each.

    python benchmarks/distributed.py [--model quicknet_s] [--steps 60] [--batch-size 256] [--nprocs 1 2]

Trains ``--model`` on Fashion-MNIST (in memory, no augmentation) for ``--steps`` optimizer steps at the same
global batch with 1 process and with N, each process on 1 thread (torchrun's default), and reports training
images/s (the trainer's own count: training steps only, no start-up or evaluation) and the speed-up. The
report names the machine and the load average, which on a shared machine says as much as the numbers.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import hardware  # noqa: E402

from imgcls.train import TrainConfig, train  # noqa: E402
from imgcls.train.launch import launch_training  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="quicknet_s")
    p.add_argument("--dataset", default="fashion-mnist")
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--nprocs", type=int, nargs="+", default=[1, 2])
    p.add_argument("--out", type=Path, help="also write the report (markdown) here")
    args = p.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for n in args.nprocs:
            cfg = TrainConfig(
                model=args.model,
                dataset=args.dataset,
                fallback_dataset=None,
                batch_size=args.batch_size,
                lr=0.2,
                epochs=1,
                max_steps=args.steps,
                val_fraction=0.0,
                augment="none",
                tta_flip=False,
                amp="off",
                threads=1,
                progress=False,
                out_dir=tmp,
                name=f"n{n}",
            )
            load0 = os.getloadavg()[0]
            t0 = time.perf_counter()
            r = launch_training(cfg, n) if n > 1 else train(cfg)
            wall = time.perf_counter() - t0
            rows.append((n, r.images_per_sec, r.train_seconds, wall, load0, os.getloadavg()[0]))
    base = rows[0][1]
    lines = [
        f"# Distributed training throughput: {args.model} on {args.dataset}",
        "",
        f"`python benchmarks/distributed.py --model {args.model} --steps {args.steps} "
        f"--batch-size {args.batch_size} --nprocs {' '.join(map(str, args.nprocs))}`; global batch "
        f"{args.batch_size}, fp32, 1 thread per process, gloo; 1 run each.",
        "",
        f"Machine: {hardware()}",
        "",
        "| processes | train img/s | speed-up | training s | wall s (with start-up, test) | load avg before / after |",
        "|---:|---:|---:|---:|---:|---|",
    ]
    for n, ips, secs, wall, l0, l1 in rows:
        lines.append(
            f"| {n} | {ips:,.0f} | {ips / base:.2f}x | {secs:.1f} | {wall:.1f} | {l0:.2f} / {l1:.2f} |"
        )
    report = "\n".join(lines)
    print(report)
    if args.out:
        args.out.write_text(report + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()

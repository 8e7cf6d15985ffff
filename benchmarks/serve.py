"""Throughput and latency of ``imgcls serve`` at 1, 8 and 64 concurrent clients.

Starts ``imgcls serve`` as its own process on a free loopback port and runs the clients in this process:
each client holds one keep-alive connection and posts the same 28x28 grayscale PNG (a Fashion-MNIST-sized
image) as a multipart upload, one request after another, for ``--seconds`` per level. The clients speak
HTTP/1.1 over asyncio streams with the request prepared once, so the client costs little of the two cores it
shares with the server (it is on the same machine: the numbers are a lower bound for a server on its own).
Reports requests per second, p50 and p99 latency, and the mean batch size the server formed (from /health).

    python benchmarks/serve.py                          # trains a tiny quicknet_s run to serve
    python benchmarks/serve.py --run runs/NAME --batch-size 16 --seconds 10
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import numpy as np

from imgcls.utils.hardware import cpu_class, describe, machine_report

LEVELS = (1, 8, 64)


def make_run(out: Path) -> Path:
    """A quicknet_s run at 28x28 gray (Fashion-MNIST, or digits resized when that is absent); a few steps."""
    from imgcls.cli.main import main

    base = [
        "-q",
        "train",
        "--model",
        "quicknet_s",
        "--max-steps",
        "5",
        "--out-dir",
        str(out),
        "--no-progress",
    ]
    if main([*base, "--dataset", "fashion-mnist", "--name", "fmnist"]) == 0:
        return out / "fmnist"
    if main([*base, "--dataset", "digits", "--image-size", "28", "--name", "digits"]) == 0:
        return out / "digits"
    raise SystemExit("could not train a run to serve")


def request_bytes(host: str, port: int) -> bytes:
    """One POST /predict with a 28x28 gray PNG in the multipart field 'file', ready to send."""
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (28, 28), dtype=np.uint8)).save(buf, "PNG")
    boundary = b"imgclsbench"
    body = (
        b"--" + boundary + b'\r\nContent-Disposition: form-data; name="file"; filename="x.png"\r\n'
        b"Content-Type: image/png\r\n\r\n" + buf.getvalue() + b"\r\n--" + boundary + b"--\r\n"
    )
    head = (
        f"POST /predict HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Type: multipart/form-data; boundary="
        f"{boundary.decode()}\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    return head + body


async def client(host: str, port: int, request: bytes, stop_at: float, latencies: list[float]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.perf_counter() < stop_at:
            t = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(re.search(rb"content-length: (\d+)", head, re.IGNORECASE).group(1))
            body = await reader.readexactly(length)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(f"server answered {head.splitlines()[0]!r}: {body[:200]!r}")
            latencies.append(time.perf_counter() - t)
    finally:
        writer.close()


async def level(host: str, port: int, request: bytes, clients: int, seconds: float) -> list[float]:
    warm: list[float] = []
    await asyncio.gather(
        *(client(host, port, request, time.perf_counter() + 1.0, warm) for _ in range(clients))
    )
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds
    await asyncio.gather(*(client(host, port, request, stop_at, latencies) for _ in range(clients)))
    return latencies


def health(url: str) -> dict:
    with urllib.request.urlopen(f"{url}/health", timeout=30) as r:
        return json.load(r)


def start_server(run: Path, batch_size: int, max_wait_ms: float) -> tuple[subprocess.Popen, str]:
    cmd = [sys.executable, "-m", "imgcls.cli.main", "serve", str(run), "--port", "0", "--no-access-log"]
    cmd += ["--batch-size", str(batch_size), "--max-wait-ms", str(max_wait_ms)]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # type: ignore[union-attr]
        found = re.search(r"(http://127\.0\.0\.1:\d+)/", line)
        if found:
            url = found.group(1)
            threading.Thread(target=lambda: [None for _ in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
            for _ in range(600):
                try:
                    health(url)
                    return proc, url
                except OSError:
                    time.sleep(0.1)
    proc.kill()
    raise SystemExit("the server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", help="run directory to serve (default: train a tiny quicknet_s run)")
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--max-wait-ms", type=float, default=2.0)
    ap.add_argument(
        "--seconds", type=float, default=8.0, help="measured seconds per level (after 1 s warm-up)"
    )
    ap.add_argument("--out", help="report path (default: benchmarks/results/serve_<cpu class>.md)")
    args = ap.parse_args()
    report = machine_report()
    out = Path(args.out or Path(__file__).parent / "results" / f"serve_{cpu_class().lower()}.md")
    with tempfile.TemporaryDirectory() as tmp:
        run = Path(args.run) if args.run else make_run(Path(tmp))
        proc, url = start_server(run, args.batch_size, args.max_wait_ms)
        host, port = "127.0.0.1", int(url.rsplit(":", 1)[1])
        request = request_bytes(host, port)
        rows = []
        try:
            info = health(url)
            for clients in LEVELS:
                before = health(url)
                latencies = asyncio.run(level(host, port, request, clients, args.seconds))
                after = health(url)
                ms = sorted(1000 * x for x in latencies)
                batches = after["batches"] - before["batches"]
                rows.append(
                    (
                        clients,
                        len(latencies) / args.seconds,
                        statistics.median(ms),
                        ms[min(len(ms) - 1, int(0.99 * len(ms)))],
                        (after["images"] - before["images"]) / max(1, batches),
                        len(latencies),
                    )
                )
                print(
                    f"{clients:>3} clients: {rows[-1][1]:8.1f} req/s  p50 {rows[-1][2]:7.2f} ms  "
                    f"p99 {rows[-1][3]:7.2f} ms  mean batch {rows[-1][4]:.1f}",
                    flush=True,
                )
        finally:
            proc.terminate()
            proc.wait(30)
    lines = [
        "# imgcls serve: requests/s and latency",
        "",
        f"Machine: {describe(report)}",
        f"Model: {info['model']} ({info['in_chans']}x{info['image_size']}x{info['image_size']}, "
        f"{info['classes']} classes), `--batch-size {args.batch_size} --max-wait-ms {args.max_wait_ms:g}`.",
        f"Command: `python benchmarks/serve.py{' --run ' + args.run if args.run else ''} --seconds {args.seconds:g}`; "
        f"{args.seconds:g} s measured per level after 1 s of warm-up, one run; clients on the same machine.",
        "Each request: one 28x28 grayscale PNG as multipart field `file`, on a keep-alive connection per client.",
        "",
        "| clients | requests/s | p50 ms | p99 ms | mean batch | requests |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {c} | {rps:.1f} | {p50:.2f} | {p99:.2f} | {b:.1f} | {n} |" for c, rps, p50, p99, b, n in rows
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(lines) + "\n")
    print(f"report: {out}")


if __name__ == "__main__":
    main()

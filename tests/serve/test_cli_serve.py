"""``imgcls serve`` as a user runs it: a real process, a one-line error for each mistake, and a light import."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

import imgcls
from imgcls.cli.main import main

SRC = str(Path(imgcls.__file__).resolve().parents[1])  # the imgcls under test, also in the child process


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}


def test_the_command_serves_until_sigterm(run_dir: Path, images: list[Path], capsys) -> None:
    cmd = [sys.executable, "-m", "imgcls.cli.main", "serve", str(run_dir), "--port", "0", "--no-access-log"]
    proc = subprocess.Popen(cmd, stderr=subprocess.PIPE, text=True, env=_env())
    lines: queue.Queue[str] = queue.Queue()
    threading.Thread(target=lambda: [lines.put(line) for line in proc.stderr], daemon=True).start()  # type: ignore[union-attr]
    try:
        url, seen, deadline = None, [], time.monotonic() + 60
        while url is None and time.monotonic() < deadline and proc.poll() is None:
            try:
                seen.append(lines.get(timeout=1))
            except queue.Empty:
                continue
            found = re.search(r"(http://127\.0\.0\.1:\d+)/", seen[-1])
            url = found.group(1) if found else None
        assert url, f"no address announced; stderr: {seen}"
        for _ in range(100):  # the socket listens before the app has started; wait for the model
            try:
                health = httpx.get(f"{url}/health", timeout=10)
                break
            except httpx.TransportError:
                time.sleep(0.1)
        assert health.status_code == 200 and health.json()["model"] == "quicknet_s"
        r = httpx.post(
            f"{url}/predict", files={"file": (images[2].name, images[2].read_bytes(), "image/png")}
        )
        assert r.status_code == 200
        assert main(["predict", str(run_dir), str(images[2]), "--json"]) == 0
        (cli,) = json.loads(capsys.readouterr().out)
        assert [(p["label"], p["prob"]) for p in r.json()["predictions"]] == [
            (t["class"], t["prob"]) for t in cli["top"]
        ]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 143  # stopped by SIGTERM, as every imgcls command reports it
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_port_in_use_is_one_line(run_dir: Path, capsys) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        assert main(["serve", str(run_dir), "--port", str(port)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and f"cannot listen on 127.0.0.1:{port}" in err and "--port" in err


@pytest.mark.parametrize(
    "args, message",
    [
        (["{tmp}/no-run"], "does not exist"),
        (["{run}", "--batch-size", "0"], "--batch-size must be >= 1"),
        (["{run}", "--max-upload-mb", "0"], "--max-upload-mb must be in"),
        (["{run}", "--port", "70000"], "--port must be in 0..65535"),
    ],
)
def test_mistakes_are_one_line_and_exit_2(run_dir: Path, tmp_path: Path, capsys, args, message) -> None:
    argv = [a.format(tmp=tmp_path, run=run_dir) for a in args]
    assert main(["serve", *argv]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("imgcls serve: error:") and err.count("\n") == 0 and message in err


def test_importing_imgcls_does_not_import_the_server() -> None:
    code = (
        "import sys, imgcls, imgcls.predict, imgcls.serve\n"
        "from imgcls.cli.main import build_parser\n"
        "build_parser()\n"
        "print([m for m in ('fastapi', 'uvicorn', 'starlette', 'multipart') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=_env(), check=True)
    assert out.stdout.strip() == "[]"

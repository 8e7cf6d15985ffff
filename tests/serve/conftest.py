"""Fixtures of the server tests: a tiny trained run, test images, and a real uvicorn server on a free port."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed: pip install -e '.[serve-test]'")
pytest.importorskip("uvicorn", reason="the serve extra is not installed: pip install -e '.[serve-test]'")
pytest.importorskip("multipart", reason="the serve extra is not installed: pip install -e '.[serve-test]'")
pytest.importorskip("httpx", reason="the server tests need httpx: pip install -e '.[serve-test]'")

from imgcls.cli.main import main  # noqa: E402


@pytest.fixture(scope="package")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A digits run (8x8 gray, 10 classes) trained for a few optimizer steps: its answers are not uniform."""
    out = tmp_path_factory.mktemp("runs")
    argv = ["-q", "train", "--dataset", "digits", "--max-steps", "6", "--out-dir", str(out), "--name", "d"]
    assert main([*argv, "--no-progress"]) == 0
    return out / "d"


@pytest.fixture(scope="package")
def images(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Twelve different pictures: PNGs of several sizes and modes, and JPEGs."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("images")
    rng = np.random.default_rng(0)
    paths = []
    for i in range(12):
        size = (8, 8) if i % 3 == 0 else (20 + i, 17)
        pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        img = Image.fromarray(pixels)
        path = folder / (f"{i}.jpg" if i % 4 == 1 else f"{i}.png")
        (img.convert("L") if i % 2 else img).save(path)
        paths.append(path)
    return paths


@dataclass
class Running:
    url: str
    port: int
    app: object  # the FastAPI app


def start_server(run: Path, **options: object) -> tuple[Running, threading.Thread, object]:
    """uvicorn serving ``create_app(run, **options)`` in a thread, on a free loopback port, once it accepts."""
    import uvicorn

    from imgcls.serve.app import bind_socket, create_app

    app = create_app(run, **options)
    sock = bind_socket("127.0.0.1", 0)
    port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, log_config=None, access_log=False, lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    return Running(f"http://127.0.0.1:{port}", port, app), thread, server


@pytest.fixture(scope="package")
def server(run_dir: Path) -> Iterator[Running]:
    """The run served with a 1 MB upload limit and batches of up to 16."""
    running, thread, srv = start_server(run_dir, batch_size=16, max_upload_mb=1.0, max_wait_ms=5.0)
    yield running
    srv.should_exit = True  # type: ignore[attr-defined]
    thread.join(30)

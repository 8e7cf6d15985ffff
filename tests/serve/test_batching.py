"""Micro-batching: the batcher on its own, and 64 concurrent clients against the real server."""

from __future__ import annotations

import asyncio
import threading
import time
from pathlib import Path

import httpx
import pytest

from imgcls.errors import ConfigError
from imgcls.serve.batcher import MicroBatcher

from .conftest import Running


def test_items_submitted_together_share_a_batch_up_to_the_limit() -> None:
    seen: list[list[int]] = []
    gate = threading.Event()

    def double(items: list[int]) -> list[int]:
        gate.wait(5)  # the first batch holds the worker while the rest queue up
        seen.append(items)
        return [2 * i for i in items]

    with MicroBatcher(double, max_batch=4, max_wait_s=0.0) as batcher:
        futures = [batcher.submit(i) for i in range(10)]
        gate.set()
        assert [f.result(5) for f in futures] == [2 * i for i in range(10)]
    assert sorted(i for batch in seen for i in batch) == list(range(10))
    assert max(len(b) for b in seen) == 4 and all(len(b) <= 4 for b in seen)
    assert batcher.stats.items == 10 and batcher.stats.largest == 4


def test_a_lone_item_waits_at_most_the_wait() -> None:
    with MicroBatcher(lambda items: items, max_batch=16, max_wait_s=0.05) as batcher:
        start = time.perf_counter()
        assert batcher.submit("x").result(5) == "x"
        assert time.perf_counter() - start < 1.0


def test_a_failing_batch_fails_its_items_only() -> None:
    def fn(items: list[int]) -> list[int]:
        if -1 in items:
            raise ValueError("bad item")
        return items

    with MicroBatcher(fn, max_batch=1) as batcher:
        bad = batcher.submit(-1)
        with pytest.raises(ValueError, match="bad item"):
            bad.result(5)
        assert batcher.submit(3).result(5) == 3  # the worker lives on


def test_close_finishes_what_was_submitted() -> None:
    batcher = MicroBatcher(lambda items: [i + 1 for i in items], max_batch=2).start()
    futures = [batcher.submit(i) for i in range(5)]
    batcher.close()
    assert [f.result(0) for f in futures] == [1, 2, 3, 4, 5]


def test_bad_settings_are_refused() -> None:
    with pytest.raises(ConfigError, match="batch size"):
        MicroBatcher(lambda x: x, max_batch=0)


async def _ask_concurrently(url: str, jobs: list[tuple[int, bytes]], clients: int) -> list[dict]:
    """``clients`` clients, each on its own connection, working through ``jobs`` at once."""
    answers: list[dict] = [{}] * len(jobs)
    queue: asyncio.Queue = asyncio.Queue()
    for job in enumerate(jobs):
        queue.put_nowait(job)
    start = asyncio.Event()

    async def client() -> None:
        async with httpx.AsyncClient(timeout=60) as http:
            await start.wait()
            while not queue.empty():
                n, (_, data) = queue.get_nowait()
                r = await http.post(f"{url}/predict", files={"file": (f"{n}.png", data, "image/png")})
                assert r.status_code == 200, r.text
                answers[n] = r.json()["predictions"]

    tasks = [asyncio.create_task(client()) for _ in range(clients)]
    await asyncio.sleep(0.05)
    start.set()
    await asyncio.gather(*tasks)
    return answers


def test_64_concurrent_clients_get_the_sequential_answers(server: Running, images: list[Path]) -> None:
    data = [p.read_bytes() for p in images]
    sequential = [
        httpx.post(f"{server.url}/predict", files={"file": ("x", d, "image/png")}).json()["predictions"]
        for d in data
    ]
    jobs = [(i % len(data), data[i % len(data)]) for i in range(192)]  # 3 requests per client
    before = server.app.state.batcher.stats.largest  # type: ignore[attr-defined]
    answers = asyncio.run(_ask_concurrently(server.url, jobs, clients=64))
    for (i, _), answer in zip(jobs, answers):
        # Same classes in the same order; the same probabilities up to the last bits a batch of another size
        # may change (on the AVX-512 BF16 machine they were bit-identical with batches of 1 to 16).
        assert [p["label"] for p in answer] == [p["label"] for p in sequential[i]]
        assert [p["prob"] for p in answer] == pytest.approx(
            [p["prob"] for p in sequential[i]], rel=1e-5, abs=1e-7
        )
    largest = server.app.state.batcher.stats.largest  # type: ignore[attr-defined]
    assert 1 < max(before, largest) <= 16  # the requests were batched, never beyond --batch-size

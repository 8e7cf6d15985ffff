"""Micro-batching: many callers' single items, run through one function a batch at a time.

A server answering one image per request would run the model once per request. :class:`MicroBatcher` queues
the items of concurrent requests and hands them to one worker thread, which takes up to ``max_batch`` of them
at once: the first item waits at most ``max_wait_s`` for company, and items that arrive while a batch runs
form the next one. So a lone client pays at most ``max_wait_s`` of extra latency, and under load the batch
grows by itself to the rate the model can sustain.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Generic, TypeVar

from imgcls.errors import ConfigError

__all__ = ["BatchStats", "MicroBatcher"]

log = logging.getLogger(__name__)

T = TypeVar("T")
R = TypeVar("R")

_STOP = object()


@dataclass
class BatchStats:
    batches: int = 0  # calls of the batch function
    items: int = 0  # items they processed
    largest: int = 0  # the largest batch so far


class MicroBatcher(Generic[T, R]):
    """Run ``fn`` (a list of items -> a list of as many results) on batches of items submitted one by one.

    :meth:`submit` returns a :class:`concurrent.futures.Future` (``asyncio.wrap_future`` makes it awaitable).
    An exception raised by ``fn`` fails every item of that batch and nothing else; the worker keeps serving.
    """

    def __init__(
        self, fn: Callable[[list[T]], Sequence[R]], *, max_batch: int = 16, max_wait_s: float = 0.002
    ):
        if max_batch < 1:
            raise ConfigError(f"the batch size must be >= 1, got {max_batch}: pass --batch-size 1 or more")
        if not 0 <= max_wait_s <= 1:
            raise ConfigError(f"the batching wait must be in [0, 1000] ms, got {max_wait_s * 1000:g} ms")
        self.fn = fn
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.stats = BatchStats()
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def start(self) -> MicroBatcher[T, R]:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name="imgcls-batcher", daemon=True)
                self._thread.start()
        return self

    def close(self, timeout: float | None = 10.0) -> None:
        """Finish the items already submitted, then stop the worker."""
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(_STOP)
            thread.join(timeout)

    def __enter__(self) -> MicroBatcher[T, R]:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def submit(self, item: T) -> Future[R]:
        if self._thread is None:
            raise RuntimeError("MicroBatcher.submit before start()")
        fut: Future[R] = Future()
        self._queue.put((item, fut))
        return fut

    def _collect(self) -> tuple[list[tuple[T, Future[R]]], bool]:
        """Block for one item, then gather more until the batch is full or the wait is over: (batch, stop)."""
        first = self._queue.get()
        if first is _STOP:
            return [], True
        batch = [first]
        deadline = time.monotonic() + self.max_wait_s
        while len(batch) < self.max_batch:
            try:  # what is queued already joins at once; then wait for more until the deadline
                nxt = self._queue.get_nowait()
            except queue.Empty:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                try:
                    nxt = self._queue.get(timeout=left)
                except queue.Empty:
                    break
            if nxt is _STOP:
                return batch, True
            batch.append(nxt)
        return batch, False

    def _work(self) -> None:
        stop = False
        while not stop:
            batch, stop = self._collect()
            batch = [(item, fut) for item, fut in batch if fut.set_running_or_notify_cancel()]
            if not batch:
                continue
            try:
                results = self.fn([item for item, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(
                        f"the batch function gave {len(results)} results for {len(batch)} items"
                    )
            except Exception as e:  # noqa: BLE001 - each caller gets the error; the worker lives on
                log.exception("batch of %d failed", len(batch))
                for _, fut in batch:
                    fut.set_exception(e)
                continue
            self.stats.batches += 1
            self.stats.items += len(batch)
            self.stats.largest = max(self.stats.largest, len(batch))
            for (_, fut), result in zip(batch, results):
                fut.set_result(result)

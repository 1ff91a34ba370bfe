"""Dynamic batching: concurrent requests for images of one size share one model call.

One worker thread owns the model. Requests wait in a bounded queue; the worker takes the
oldest and, until that one has waited ``max_wait_s`` since it arrived, gathers the waiting
requests whose image has the same size (up to ``max_batch``), stacks them and runs the
model once. Requests of other sizes keep their place for the next call, so nothing is
padded: every image is seen by the model exactly as ``isnet predict`` would show it. A
full queue refuses new requests at once (:class:`QueueFullError`, HTTP 503) instead of
letting latency grow without bound.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field

import torch
from torch import Tensor


class QueueFullError(RuntimeError):
    """The batcher already holds ``max_queue`` waiting requests."""


@dataclass(eq=False)  # compared by identity: the queue removes this very request
class _Request:
    image: Tensor  # (3, H, W)
    future: Future = field(default_factory=Future)
    arrived: float = field(default_factory=time.monotonic)


class DynamicBatcher:
    """Runs ``predict`` ((N, 3, H, W) images → (N, H, W) labels) on batches of waiting requests.

    ``submit`` may be called from any thread; :meth:`predict` is its ``asyncio`` form.
    :meth:`close` stops taking requests, finishes those already queued and joins the worker.
    ``batches`` and ``images`` count the model calls and the images they saw; ``running``
    is the size of the batch the model is computing now (0 when idle).
    """

    def __init__(
        self,
        predict: Callable[[Tensor], Tensor],
        *,
        max_batch: int = 8,
        max_wait_s: float = 0.005,
        max_queue: int = 64,
    ) -> None:
        if max_batch < 1 or max_queue < 1 or max_wait_s < 0:
            raise ValueError("max_batch and max_queue must be at least 1 and max_wait_s not negative")
        self._predict = predict
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.max_queue = max_queue
        self._waiting: deque[_Request] = deque()
        self._condition = threading.Condition()
        self._closed = False
        self._thread = threading.Thread(target=self._run, name="isnet-batcher", daemon=True)
        self.batches = 0
        self.images = 0
        self.running = 0

    def start(self) -> DynamicBatcher:
        self._thread.start()
        return self

    @property
    def queued(self) -> int:
        """Requests waiting for the model (not counting the batch it is running)."""
        return len(self._waiting)

    def submit(self, image: Tensor) -> Future:
        """Queue one (3, H, W) image; the future gets its (H, W) labels."""
        request = _Request(image)
        with self._condition:
            if self._closed:
                raise RuntimeError("the batcher is closed")
            if len(self._waiting) >= self.max_queue:
                raise QueueFullError(f"{len(self._waiting)} requests are already waiting (--max-queue {self.max_queue})")
            self._waiting.append(request)
            self._condition.notify()
        return request.future

    async def predict(self, image: Tensor) -> Tensor:
        return await asyncio.wrap_future(self.submit(image))

    def close(self, timeout: float | None = None) -> None:
        """Refuse new requests, answer the queued ones, stop the worker."""
        with self._condition:
            self._closed = True
            self._condition.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _take_batch(self) -> list[_Request] | None:
        """The oldest request and the waiting ones of its size; ``None`` once closed and drained."""
        with self._condition:
            while not self._waiting:
                if self._closed:
                    return None
                self._condition.wait()
            size = self._waiting[0].image.shape
            deadline = self._waiting[0].arrived + self.max_wait_s  # no request waits longer for company
            while True:
                batch = [request for request in self._waiting if request.image.shape == size][: self.max_batch]
                remaining = deadline - time.monotonic()
                if len(batch) == self.max_batch or remaining <= 0 or self._closed:
                    break
                self._condition.wait(remaining)
            for request in batch:
                self._waiting.remove(request)
            return batch

    def _run(self) -> None:
        while (batch := self._take_batch()) is not None:
            live = [request for request in batch if request.future.set_running_or_notify_cancel()]
            if not live:  # every client went away while waiting
                continue
            self.running = len(live)
            try:
                labels = self._predict(torch.stack([request.image for request in live]))
            except Exception as error:  # the requests fail, the server stays up
                for request in live:
                    request.future.set_exception(error)
                continue
            finally:
                self.running = 0
            self.batches += 1
            self.images += len(live)
            for request, label_map in zip(live, labels):
                request.future.set_result(label_map)

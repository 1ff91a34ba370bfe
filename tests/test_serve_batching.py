"""The dynamic batcher in-process: grouping by size, the batch and queue limits, draining, failures."""

from __future__ import annotations

import pytest
import torch

from isnet.apps.serve.batching import DynamicBatcher, QueueFullError


class RecordingModel:
    """Labels = each image's own value (so answers can be told apart); remembers each batch's shape."""

    def __init__(self) -> None:
        self.batches: list[tuple[int, ...]] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        self.batches.append(tuple(images.shape))
        return images[:, 0].to(torch.uint8)


def image(height: int, width: int, value: int) -> torch.Tensor:
    return torch.full((3, height, width), float(value))


def test_waiting_requests_of_the_oldest_size_share_a_call_up_to_max_batch():
    model = RecordingModel()
    batcher = DynamicBatcher(model, max_batch=2, max_wait_s=0, max_queue=8)
    sizes = [(4, 6), (5, 5), (4, 6), (4, 6), (5, 5)]
    futures = [batcher.submit(image(*size, value)) for value, size in enumerate(sizes)]  # all wait before the worker starts
    batcher.start()
    results = [future.result(timeout=30) for future in futures]
    batcher.close(timeout=30)
    assert model.batches == [(2, 3, 4, 6), (2, 3, 5, 5), (1, 3, 4, 6)]  # oldest size first, nothing padded
    assert [int(result[0, 0]) for result in results] == [0, 1, 2, 3, 4]  # each request gets its own labels
    assert (batcher.batches, batcher.images, batcher.queued) == (3, 5, 0)


def test_a_full_queue_refuses_at_once():
    batcher = DynamicBatcher(RecordingModel(), max_queue=2)
    batcher.submit(image(2, 2, 0))
    batcher.submit(image(2, 2, 1))
    with pytest.raises(QueueFullError, match="2 requests are already waiting"):
        batcher.submit(image(2, 2, 2))
    batcher.start()
    batcher.close(timeout=30)


def test_close_answers_what_is_queued_and_refuses_more():
    batcher = DynamicBatcher(RecordingModel(), max_batch=1)
    futures = [batcher.submit(image(3, 3, value)) for value in range(3)]
    batcher.start()
    batcher.close(timeout=30)
    assert all(future.done() and not future.exception() for future in futures)
    with pytest.raises(RuntimeError, match="closed"):
        batcher.submit(image(3, 3, 0))


def test_a_failing_model_call_fails_its_requests_and_the_worker_goes_on():
    calls = []

    def flaky(images: torch.Tensor) -> torch.Tensor:
        calls.append(len(images))
        if len(calls) == 1:
            raise RuntimeError("out of memory")
        return torch.zeros(images.shape[0], *images.shape[2:], dtype=torch.uint8)

    batcher = DynamicBatcher(flaky, max_batch=1, max_wait_s=0)
    first, second = batcher.submit(image(2, 2, 0)), batcher.submit(image(2, 2, 0))
    batcher.start()
    with pytest.raises(RuntimeError, match="out of memory"):
        first.result(timeout=30)
    assert second.result(timeout=30).shape == (2, 2)
    batcher.close(timeout=30)

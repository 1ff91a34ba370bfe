"""Multi-process training under ``torchrun``: process group, SyncBatchNorm, reductions.

``torch.nn.SyncBatchNorm`` runs only on CUDA; :class:`SyncBatchNorm2d` here is a plain
PyTorch version for any device and backend (gloo included), so that multi-process training
behaves the same on CPU: statistics over the global batch, gradients through them.
"""

from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce


@dataclass(frozen=True)
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_distributed(device: str | None = None) -> DistributedContext:
    """Join the process group started by ``torchrun`` (if any) and pick this process's device."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    chosen = torch.device(f"cuda:{local_rank}" if device == "cuda" else device)
    if chosen.type == "cuda":
        torch.cuda.set_device(chosen)
    if world_size > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if chosen.type == "cuda" else "gloo")
        atexit.register(_destroy_process_group)
    return DistributedContext(rank, world_size, local_rank, chosen)


def _destroy_process_group() -> None:
    """Tear the group down while the interpreter is still whole. Left to the interpreter's own
    shutdown, gloo's threads sometimes outlive it and the process ends in SIGABRT ("terminate
    called without an active exception") after its work is done: 2 of 60 two-process runs of
    init, all_reduce, barrier here (PyTorch 2.13), 0 of 120 with this."""
    if dist.is_initialized():
        dist.destroy_process_group()


class SyncBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training statistics are those of the batch across all processes.

    The statistics are computed in at least float32 whatever the input's precision (under
    bf16 / fp16 autocast, as BatchNorm does), and the output has the input's dtype.
    """

    def forward(self, x: Tensor) -> Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1):
            return super().forward(x)
        dims = (0, 2, 3)
        input_dtype = x.dtype
        x = x.to(torch.promote_types(x.dtype, torch.float32))
        count = torch.tensor([x.numel() / x.shape[1]], dtype=x.dtype, device=x.device)
        count = differentiable_all_reduce(count)
        mean = differentiable_all_reduce(x.sum(dims)) / count
        centred = x - mean.view(1, -1, 1, 1)
        var = differentiable_all_reduce(centred.square().sum(dims)) / count
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked += 1
                momentum = self.momentum if self.momentum is not None else 1 / float(self.num_batches_tracked)
                unbiased = var * count / (count - 1).clamp(min=1)
                self.running_mean.lerp_(mean.detach(), momentum)
                self.running_var.lerp_(unbiased.detach(), momentum)
        out = centred * torch.rsqrt(var + self.eps).view(1, -1, 1, 1)
        if self.affine:
            out = out * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)
        return out.to(input_dtype)


def convert_sync_batchnorm(module: nn.Module, device: torch.device) -> nn.Module:
    """Replace every BatchNorm2d by a synchronised one (torch's on CUDA, ours elsewhere)."""
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    if isinstance(module, nn.BatchNorm2d) and not isinstance(module, SyncBatchNorm2d):
        synced = SyncBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine, module.track_running_stats)
        synced.load_state_dict(module.state_dict())
        synced.train(module.training)
        return synced
    for name, child in module.named_children():
        module.add_module(name, convert_sync_batchnorm(child, device))
    return module


def all_reduce_mean(value: Tensor) -> Tensor:
    """Mean of a tensor over processes (for logging)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
        value /= dist.get_world_size()
    return value


def all_reduce_sum(value: Tensor) -> Tensor:
    """Sum of a tensor over processes (itself in a single process)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        value = value.clone()
        dist.all_reduce(value)
    return value


def barrier() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()


def from_first_process(value: Any) -> Any:
    """The first process's ``value`` on every process (a decision all must share, e.g. one each
    measured on its own and could disagree on)."""
    if dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1:
        shared = [value]
        dist.broadcast_object_list(shared, src=0)
        return shared[0]
    return value


class SharedCounter:
    """A count every process of a ``torchrun`` job adds to and the first reads, in O(1) a call: a key
    of a small TCP store the first process serves (where ``MASTER_ADDR`` points, the address every
    process already reaches). Made by every process at once (the port is broadcast)."""

    def __init__(self, context: DistributedContext) -> None:
        from datetime import timedelta

        host = os.environ.get("MASTER_ADDR", "127.0.0.1")
        timeout = timedelta(minutes=5)
        store, port = None, None
        if context.is_main:
            store = dist.TCPStore(host, 0, context.world_size, True, timeout=timeout, wait_for_workers=False)
            port = store.port
        port = from_first_process(port)
        if store is None:
            store = dist.TCPStore(host, port, context.world_size, False, timeout=timeout)
        self._store = store

    def add(self, amount: int = 1) -> int:
        """Add ``amount``; the count after it."""
        return int(self._store.add("count", amount))

    @property
    def value(self) -> int:
        return self.add(0)

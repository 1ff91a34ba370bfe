"""The two sides of every benchmark: the published computation and ours, over the same weights."""

from __future__ import annotations

import copy
from collections.abc import Callable
from contextlib import nullcontext
from functools import partial

import torch
from torch import Tensor, nn

from benchmarks.published import PublishedISNet
from isnet.deploy.runtimes.pytorch import FastSegmentor, use_region_attention
from isnet.training.loop import sgd
from isnet.utils.precision import autocast as precision_autocast


def build_contender(model: nn.Module, name: str, precision: str = "fp32", *, compile: bool = False) -> nn.Module:
    """An object with ``logits(images)``: ``published`` (the baseline, float32 only) or ``ours``."""
    if name == "published":
        if precision != "fp32":
            raise ValueError("the published implementation runs in float32")
        return PublishedISNet(model).eval()
    if name == "ours":
        return FastSegmentor(model, precision=precision, compile=compile)
    raise ValueError(f"unknown contender {name!r}: expected published or ours")


def train_step(
    model: nn.Module, name: str, precision: str, images: Tensor, labels: Tensor, loss_fn: Callable
) -> Callable[[], Tensor]:
    """One SGD step (forward, loss, backward, update) on a copy of ``model``; returns the step.

    ``published``: the baseline forward, float32, contiguous tensors, ``torch.optim.SGD``
    with its defaults (the per-parameter loop on CPU). ``ours``: what ``isnet train`` does
    (region attention in SLCM, channels-last, autocast in ``precision``,
    :func:`isnet.training.loop.sgd`). Both: momentum 0.9, weight decay 5e-4, lr 0.01, the released loss.
    """
    model = copy.deepcopy(model).train()
    options = dict(lr=0.01, momentum=0.9, weight_decay=5e-4)
    if name == "published":
        if precision != "fp32":
            raise ValueError("the published implementation trains in float32")
        network: nn.Module = PublishedISNet(model)
        optimizer = torch.optim.SGD(model.parameters(), **options)
        autocast = nullcontext
    elif name == "ours":
        use_region_attention(model)
        network = model.to(memory_format=torch.channels_last)
        images = images.contiguous(memory_format=torch.channels_last)
        optimizer = sgd(model.parameters(), **options)
        autocast = partial(precision_autocast, precision, images.device)
    else:
        raise ValueError(f"unknown contender {name!r}: expected published or ours")

    def step() -> Tensor:
        optimizer.zero_grad(set_to_none=True)
        with autocast():
            outputs = network(images)
        loss = loss_fn(outputs, labels)["total"]
        loss.backward()
        optimizer.step()
        return loss.detach()

    return step

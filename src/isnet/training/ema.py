"""``--ema DECAY``: an exponential moving average of the weights, the model that is evaluated and saved.

After every optimizer step each floating-point parameter of the average moves toward the
trained one, ``θ̄ ← decay·θ̄ + (1 − decay)·θ``; buffers (BatchNorm's running statistics and
counters) are copied, since an average of running averages is not one. The average starts
as a copy of the model at the first step of the run.
"""

from __future__ import annotations

import copy

import torch
from torch import nn


class WeightAverage:
    """The moving average of ``model``'s weights (a frozen copy of the model, in evaluation mode)."""

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval()
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """One step of the average toward ``model`` (same architecture), buffers copied."""
        averaged, trained = [], []
        for mine, theirs in zip(self.model.parameters(), model.parameters()):
            if mine.is_floating_point():
                averaged.append(mine)
                trained.append(theirs.detach())
        if averaged:
            torch._foreach_lerp_(averaged, trained, 1 - self.decay)
        for mine, theirs in zip(self.model.buffers(), model.buffers()):
            mine.copy_(theirs)

    def state_dict(self) -> dict[str, torch.Tensor]:
        return self.model.state_dict()

    def load_state_dict(self, state: dict[str, torch.Tensor]) -> None:
        self.model.load_state_dict(state, strict=True)

"""The validation loss: mean cross-entropy (negative log-likelihood) of the evaluated probabilities per labelled pixel."""

from __future__ import annotations

import torch
from torch import Tensor

from isnet.inference.engine import InferenceConfig
from isnet.inference.temperature import probabilities


class ValidationLoss:
    """Sum of −log p(label) and the count of labelled pixels, over a dataset (an evaluation observer)."""

    def __init__(self, config: InferenceConfig, ignore_index: int = 255) -> None:
        self.config, self.ignore_index = config, ignore_index
        self.total = torch.zeros((), dtype=torch.float64)
        self.count = torch.zeros((), dtype=torch.float64)

    @torch.no_grad()
    def observe(self, scores: Tensor, predicted: Tensor, labels: Tensor, sample: dict) -> None:
        valid = labels != self.ignore_index
        chosen = probabilities(scores, self.config).gather(1, labels.clamp(0, scores.shape[1] - 1)[:, None].long())[:, 0]
        nll = -chosen[valid].double().clamp(min=1e-12).log()
        self.total += nll.sum().cpu()
        self.count += valid.sum().cpu()

    def all_reduce(self) -> None:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for tensor in (self.total, self.count):
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def value(self) -> float:
        return float(self.total / self.count) if self.count > 0 else float("nan")

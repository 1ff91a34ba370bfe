"""A binary model's decision threshold: the foreground where its probability exceeds t, not 0.5.

For two classes (background 0, foreground 1) p₁ = σ(l₁ − l₀), so p₁ > t exactly when
l₁ − logit(t) > l₀: shifting the foreground's logits by −logit(t) = −log(t / (1 − t)) makes
the argmax, and so every protocol of :mod:`isnet.inference.engine`, label by the threshold.
The shift applies to each view's logits; with multi-scale + flip, where probabilities are
averaged, the average is of the shifted views' probabilities. ``isnet calibrate
--threshold-for f1`` stores an F1-optimal t in the model file (:mod:`isnet.weights.decision_threshold`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch import Tensor, nn


class ForegroundThreshold(nn.Module):
    """``model`` (2 classes) whose labels are the foreground where p(foreground) > ``threshold``."""

    def __init__(self, model, threshold: float) -> None:
        super().__init__()
        if not 0 < threshold < 1:
            raise ValueError(f"a threshold must be between 0 and 1, got {threshold}")
        self.model = model
        self.threshold = float(threshold)
        self.shift = math.log(threshold / (1 - threshold))
        self.config = getattr(model, "config", None)
        self.dataset = getattr(model, "dataset", None)
        self.training = getattr(model, "training", False)

    def logits(self, images: Tensor) -> Tensor:
        logits = self.model.logits(images)
        shift = torch.tensor([0.0, -self.shift], dtype=logits.dtype, device=logits.device).view(1, 2, 1, 1)
        return logits + shift

    def forward(self, images: Tensor) -> Tensor:
        return self.logits(images)

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        return super().parameters(recurse) if isinstance(self.model, nn.Module) else self.model.parameters()

    def train(self, mode: bool = True) -> ForegroundThreshold:
        self.model.train(mode)
        self.training = mode
        return self

    def to(self, *args, **kwargs) -> ForegroundThreshold:
        self.model = self.model.to(*args, **kwargs)
        return self

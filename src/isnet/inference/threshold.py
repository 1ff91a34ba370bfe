"""A binary model's decision threshold: the foreground where its probability exceeds t, not 0.5.

For two classes (background 0, foreground 1) p₁ = σ(l₁ − l₀), so p₁ > t exactly when
l₁ − logit(t) > l₀: shifting the foreground's logits by −logit(t) = −log(t / (1 − t)) makes
the argmax, and so every protocol of :mod:`isnet.inference.engine`, label by the threshold.
The shift applies to each view's logits; with multi-scale + flip, where probabilities are
averaged, the average is of the shifted views' probabilities. A
:class:`~isnet.inference.predictor.Predictor` applies it (``with_threshold``); ``isnet calibrate
--threshold-for f1`` stores an F1-optimal t in the model file (:mod:`isnet.weights.decision_threshold`),
which ``isnet.deploy.load_predictor`` applies.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

ARGMAX = 0.5  # the threshold the plain argmax of two classes labels by


def check_threshold(threshold: float) -> float:
    """``threshold`` as a float strictly between 0 and 1 (``ValueError`` otherwise)."""
    threshold = float(threshold)
    if not (math.isfinite(threshold) and 0 < threshold < 1):
        raise ValueError(f"a threshold must be between 0 and 1, got {threshold}")
    return threshold


def shift_foreground(logits: Tensor, threshold: float) -> Tensor:
    """Two-class logits (N, 2, h, w) whose argmax labels the foreground where p(foreground) > ``threshold``."""
    shift = torch.tensor([0.0, -math.log(threshold / (1 - threshold))], dtype=logits.dtype, device=logits.device)
    return logits + shift.view(1, 2, 1, 1)

"""The F1-optimal decision threshold of a binary model, from held-out pixels."""

from __future__ import annotations

import torch
from torch import Tensor


def f1_optimal_threshold(foreground_probability: Tensor, is_foreground: Tensor) -> tuple[float, float]:
    """(t, F1): the threshold whose labels (foreground where p > t) have the highest foreground F1.

    Every cut of the pixels sorted by decreasing p is tried (the top k labelled foreground);
    t is the midpoint between the k-th and the (k+1)-th probability, so that exactly those k
    exceed it. F1 = 2·TP / (2·TP + FP + FN).
    """
    order = torch.argsort(foreground_probability.double(), descending=True)
    p = foreground_probability.double()[order]
    truth = is_foreground.bool()[order].double()
    true_positives = torch.cumsum(truth, 0)
    predicted = torch.arange(1, len(p) + 1, dtype=torch.float64)
    f1 = 2 * true_positives / (predicted + truth.sum())  # 2TP + FP + FN = predicted + labelled
    distinct = torch.ones_like(p, dtype=torch.bool)
    distinct[:-1] = p[:-1] > p[1:]  # a cut between two equal probabilities cannot be made
    f1 = torch.where(distinct, f1, torch.zeros_like(f1))
    k = int(torch.argmax(f1))
    below = p[k + 1].item() if k + 1 < len(p) else 0.0
    return (p[k].item() + below) / 2, f1[k].item()


def f1_at(foreground_probability: Tensor, is_foreground: Tensor, threshold: float) -> float:
    """The foreground F1 of the labels ``p > threshold``."""
    predicted = foreground_probability > threshold
    truth = is_foreground.bool()
    true_positives = (predicted & truth).sum().item()
    return 2 * true_positives / max(predicted.sum().item() + truth.sum().item(), 1)

"""Probabilities you can trust: temperature scaling and the per-pixel confidence of a prediction.

A network trained with cross-entropy is usually over-confident: its softmax says 0.99 where
it is right 90 % of the time. Temperature scaling (Guo et al., "On Calibration of Modern
Neural Networks", ICML 2017) divides the logits by one number T > 0 fitted on held-out data
(:func:`isnet.evaluation.calibration.fit_temperature`); the argmax, and so the labels of a
single-scale prediction, stay the same, only the probabilities change. A
:class:`~isnet.inference.predictor.Predictor` applies it in ``logits``, so every protocol of
:mod:`isnet.inference.engine` (whole image, sliding window, multi-scale + flip, where
probabilities are averaged) sees calibrated scores.
"""

from __future__ import annotations

import torch
from torch import Tensor

from isnet.inference.engine import InferenceConfig


def probabilities(scores: Tensor, config: InferenceConfig) -> Tensor:
    """Class probabilities (N, K, H, W) of what :func:`~isnet.inference.engine.predict` returned.

    ``predict`` averages probabilities when ``config.probs_before_resize`` (multi-scale, flip)
    and logits otherwise; the softmax of averaged logits is taken here.
    """
    return scores if config.probs_before_resize else scores.softmax(dim=1)


def max_probability(scores: Tensor, config: InferenceConfig) -> Tensor:
    """Per-pixel confidence (N, H, W): the probability of the predicted class (the max over classes)."""
    return probabilities(scores, config).amax(dim=1)


def confidence_uint16(confidence: Tensor) -> Tensor:
    """Confidences in [0, 1] as 16-bit integers, ``round(p · 65535)``: what ``_confidence.png`` stores."""
    return (confidence.clamp(0, 1) * 65535).round().to(torch.int32)

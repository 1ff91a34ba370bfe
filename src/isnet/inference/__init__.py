"""Test-time protocols: whole image, sliding window, multi-scale and flip."""

from isnet.inference.engine import MS_SCALES, InferenceConfig, predict, predict_labels

__all__ = ["MS_SCALES", "InferenceConfig", "predict", "predict_labels"]

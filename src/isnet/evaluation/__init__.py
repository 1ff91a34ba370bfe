"""Evaluation: confusion-matrix metrics (mIoU, pixel and class accuracy)."""

from isnet.evaluation.metrics import ConfusionMatrix, SegmentationScores

__all__ = ["ConfusionMatrix", "SegmentationScores"]

"""Evaluation: confusion-matrix metrics, scoring a dataset, reports with pictures."""

from isnet.evaluation.evaluate import evaluate
from isnet.evaluation.metrics import ConfusionMatrix, SegmentationScores
from isnet.evaluation.report import write_report

__all__ = ["ConfusionMatrix", "SegmentationScores", "evaluate", "write_report"]

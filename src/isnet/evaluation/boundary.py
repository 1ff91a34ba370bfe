"""Boundary IoU (Cheng et al., CVPR 2021): how well the masks' contours agree, per class.

For a mask G its inner boundary band G_d ∩ G is the pixels of G within distance d of a pixel
outside G (chessboard distance: d erosions by a 3×3 square; outside the image counts as
outside G, as in the authors' code). The boundary IoU of a class is
``|(G_d ∩ G) ∩ (P_d ∩ P)| / |(G_d ∩ G) ∪ (P_d ∩ P)|`` for the ground truth G and prediction
P of that class, with d = 2 % of the image diagonal (rounded, at least 1) by default. Like
mIoU it is accumulated over a dataset: intersections and unions are summed per class over
the images, then divided. Pixels whose label is the ignore value belong to no class, and
they are not counted in either band.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import Tensor

DILATION_RATIO = 0.02  # the band width d as a fraction of the image diagonal


def band_width(height: int, width: int, ratio: float = DILATION_RATIO) -> int:
    """d: ``ratio`` of the image diagonal in pixels, rounded, at least 1."""
    return max(1, round(ratio * math.hypot(height, width)))


def inner_band(mask: np.ndarray, d: int) -> np.ndarray:
    """The pixels of ``mask`` (H, W, bool) within chessboard distance ``d`` of a pixel outside it or of the border."""
    import cv2

    kernel = np.ones((2 * d + 1, 2 * d + 1), np.uint8)  # one erosion by this square = d erosions by 3×3
    eroded = cv2.erode(mask.astype(np.uint8), kernel, borderType=cv2.BORDER_CONSTANT, borderValue=0)
    return mask & (eroded == 0)


class BoundaryIoU:
    """Per-class intersections and unions of the inner boundary bands, summed over images."""

    def __init__(self, num_classes: int, ignore_index: int = 255, ratio: float = DILATION_RATIO) -> None:
        self.num_classes, self.ignore_index, self.ratio = num_classes, ignore_index, ratio
        self.intersection = torch.zeros(num_classes, dtype=torch.float64)
        self.union = torch.zeros(num_classes, dtype=torch.float64)

    @torch.no_grad()
    def update(self, predicted: Tensor, labels: Tensor) -> None:
        """Add a batch of label maps (N, H, W): predictions and ground truth."""
        for prediction, truth in zip(predicted.cpu().numpy(), labels.cpu().numpy()):
            self.add_image(prediction, truth)

    def observe(self, scores: Tensor, predicted: Tensor, labels: Tensor, sample: dict) -> None:
        """The evaluation loop's hook (:func:`isnet.evaluation.evaluate`)."""
        self.update(predicted, labels)

    def add_image(self, prediction: np.ndarray, truth: np.ndarray) -> None:
        d = band_width(*truth.shape, self.ratio)
        labelled = truth != self.ignore_index
        for k in np.union1d(np.unique(prediction[labelled]), np.unique(truth[labelled])):
            if not 0 <= k < self.num_classes:
                continue
            truth_band = inner_band(truth == k, d) & labelled
            predicted_band = inner_band(prediction == k, d) & labelled
            self.intersection[k] += float(np.count_nonzero(truth_band & predicted_band))
            self.union[k] += float(np.count_nonzero(truth_band | predicted_band))

    def all_reduce(self) -> None:
        """Sum the counts of all processes (no-op unless torch.distributed is initialised)."""
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            for tensor in (self.intersection, self.union):
                dist.all_reduce(tensor, op=dist.ReduceOp.SUM)

    def per_class(self) -> list[float]:
        """Each class's boundary IoU (NaN for a class in neither the labels nor the predictions)."""
        return (self.intersection / self.union).tolist()

    def mean(self) -> float:
        """The mean over the classes that have a value (NaN when none has)."""
        return float((self.intersection / self.union).nanmean())

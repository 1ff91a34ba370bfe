"""Semantic-segmentation scores from an accumulated confusion matrix.

Scores are computed once from the matrix summed over the whole dataset (not averaged per
image), which is how mIoU is reported for ADE20K, Cityscapes, COCO-Stuff and LIP.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from isnet.data.base import IGNORE_INDEX


@dataclass(frozen=True)
class SegmentationScores:
    """Dataset-level scores; per-class values are NaN for classes that cannot be scored.

    ``iou[k]`` is NaN when class k is in neither the predictions nor the labels, and
    ``class_accuracy[k]`` when k is not in the labels; the means skip NaNs, so absent
    classes neither help nor hurt. ``f1[k]`` is the F1 score (Dice) of class k,
    2·TP / (labelled + predicted), NaN like ``iou``. For two classes (binary segmentation:
    background, foreground) :attr:`foreground` is class 1's IoU and F1.
    """

    iou: tuple[float, ...]
    class_accuracy: tuple[float, ...]
    mean_iou: float
    pixel_accuracy: float
    mean_accuracy: float
    f1: tuple[float, ...] = ()

    @property
    def foreground(self) -> tuple[float, float] | None:
        """(IoU, F1) of class 1 when there are two classes (background 0, foreground 1), else None."""
        return (self.iou[1], self.f1[1]) if len(self.iou) == 2 and len(self.f1) == 2 else None

    def table(self, class_names: Sequence[str] | None = None) -> str:
        """A plain-text per-class table followed by the summary line."""
        names = class_names or [str(k) for k in range(len(self.iou))]
        width = max(len(name) for name in names)
        lines = [f"{'class':<{width}}  {'IoU':>6}  {'Acc':>6}"]
        for name, iou, acc in zip(names, self.iou, self.class_accuracy):
            lines.append(f"{name:<{width}}  {100 * iou:6.2f}  {100 * acc:6.2f}")
        lines.append(
            f"mIoU {100 * self.mean_iou:.2f}  aAcc {100 * self.pixel_accuracy:.2f}  "
            f"mAcc {100 * self.mean_accuracy:.2f}"
        )
        if self.foreground is not None:
            iou, f1 = self.foreground
            lines.append(f"foreground (class 1, {names[1]}): IoU {100 * iou:.2f}  F1 {100 * f1:.2f}")
        return "\n".join(lines)


class ConfusionMatrix:
    """Counts of (label, prediction) pixel pairs: ``matrix[label, prediction]``.

    Accumulates on the device of the first update, so evaluation on GPU never copies
    label maps to the host. Pixels whose label is ``ignore_index`` (that of the readers' samples,
    whatever the files store) are not counted.
    """

    def __init__(self, num_classes: int, ignore_index: int = IGNORE_INDEX) -> None:
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        self.matrix: torch.Tensor = torch.zeros(num_classes, num_classes, dtype=torch.int64)

    def reset(self) -> None:
        self.matrix = torch.zeros_like(self.matrix)

    @torch.no_grad()
    def update(self, pred: torch.Tensor, target: torch.Tensor) -> None:
        """Add a batch: integer class maps of equal shape (any number of dimensions)."""
        if pred.shape != target.shape:
            raise ValueError(
                f"prediction shape {tuple(pred.shape)} differs from label shape {tuple(target.shape)}"
            )
        if pred.is_floating_point() or target.is_floating_point():
            raise TypeError("pred and target must be integer class maps (take argmax of the logits first)")
        k = self.num_classes
        valid = target != self.ignore_index
        target, pred = target[valid].long(), pred[valid].long()
        if target.numel() and (target.min() < 0 or target.max() >= k):
            raise ValueError(f"label values must be in 0..{k - 1} or {self.ignore_index}")
        if pred.numel() and (pred.min() < 0 or pred.max() >= k):
            raise ValueError(f"predicted values must be in 0..{k - 1}")
        counts = torch.bincount(target * k + pred, minlength=k * k).reshape(k, k)
        self.matrix = self.matrix.to(counts.device) + counts

    def all_reduce(self) -> None:
        """Sum the matrices of all processes (no-op unless torch.distributed is initialised)."""
        if dist.is_available() and dist.is_initialized():
            dist.all_reduce(self.matrix, op=dist.ReduceOp.SUM)

    def summary(self) -> SegmentationScores:
        """IoU, accuracy and their means from the counts so far."""
        matrix = self.matrix.double().cpu()
        true_positive = matrix.diag()
        labelled = matrix.sum(dim=1)  # pixels of each class in the labels
        predicted = matrix.sum(dim=0)
        union = labelled + predicted - true_positive
        iou = true_positive / union  # 0/0 = NaN: class absent from both
        class_accuracy = true_positive / labelled  # NaN: class absent from the labels
        f1 = 2 * true_positive / (labelled + predicted)
        total = matrix.sum()
        return SegmentationScores(
            iou=tuple(iou.tolist()),
            class_accuracy=tuple(class_accuracy.tolist()),
            mean_iou=iou.nanmean().item(),
            pixel_accuracy=(true_positive.sum() / total).item(),
            mean_accuracy=class_accuracy.nanmean().item(),
            f1=tuple(f1.tolist()),
        )

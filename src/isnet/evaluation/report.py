"""The evaluation report: per-class table (text and CSV), per-class bar chart, confusion matrix."""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isnet.evaluation.metrics import ConfusionMatrix
from isnet.utils.atomic_files import atomic_path, write_atomically, write_text_atomically


def write_report(matrix: ConfusionMatrix, class_names: Sequence[str], output: str | Path, *, title: str = "") -> dict:
    """Write ``scores.txt``, ``per_class.csv``, ``summary.json``, ``per_class_iou.png`` and
    ``confusion_matrix.png`` into ``output``; return the summary."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    scores = matrix.summary()
    write_text_atomically(output / "scores.txt", (title + "\n" if title else "") + scores.table(class_names) + "\n")
    with atomic_path(output / "per_class.csv") as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "iou", "accuracy"])
        for name, iou, accuracy in zip(class_names, scores.iou, scores.class_accuracy):
            writer.writerow([name, f"{iou:.6f}", f"{accuracy:.6f}"])
    summary = {
        "mIoU": scores.mean_iou,
        "pixel_accuracy": scores.pixel_accuracy,
        "mean_accuracy": scores.mean_accuracy,
        "iou": dict(zip(class_names, scores.iou)),
        "f1": dict(zip(class_names, scores.f1)),
    }
    if scores.foreground is not None:  # binary segmentation: the foreground's scores
        summary["foreground_iou"], summary["foreground_f1"] = scores.foreground
    write_text_atomically(output / "summary.json", json.dumps(summary, indent=2))

    iou = np.nan_to_num(np.asarray(scores.iou) * 100)
    figure, axis = plt.subplots(figsize=(max(6, 0.28 * len(class_names) + 2), 4), dpi=100)
    axis.bar(range(len(iou)), iou, color="tab:blue")
    axis.axhline(100 * scores.mean_iou, color="tab:red", linestyle="--", label=f"mIoU {100 * scores.mean_iou:.2f}")
    axis.set_xticks(range(len(iou)), class_names, rotation=90, fontsize=7 if len(iou) < 40 else 4)
    axis.set_ylabel("IoU (%)")
    axis.set_ylim(0, 100)
    axis.set_title(title or "per-class IoU")
    axis.legend()
    figure.tight_layout()
    write_atomically(output / "per_class_iou.png", figure.savefig)
    plt.close(figure)

    counts = matrix.matrix.double().cpu().numpy()
    normalised = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1)
    size = max(5, 0.3 * len(class_names) + 2)
    figure, axis = plt.subplots(figsize=(size, size), dpi=100)
    image = axis.imshow(normalised, cmap="Blues", vmin=0, vmax=1)
    ticks = range(len(class_names))
    fontsize = 7 if len(class_names) < 40 else 3
    axis.set_xticks(ticks, class_names, rotation=90, fontsize=fontsize)
    axis.set_yticks(ticks, class_names, fontsize=fontsize)
    axis.set_xlabel("prediction")
    axis.set_ylabel("label")
    axis.set_title("confusion matrix (rows: fraction of each label)")
    figure.colorbar(image, fraction=0.046)
    figure.tight_layout()
    write_atomically(output / "confusion_matrix.png", figure.savefig)
    plt.close(figure)
    return summary

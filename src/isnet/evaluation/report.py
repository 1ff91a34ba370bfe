"""The evaluation report: per-class table (text and CSV), per-class bar chart, confusion matrix."""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isnet.evaluation.boundary import BoundaryIoU
from isnet.evaluation.metrics import ConfusionMatrix
from isnet.utils.atomic_files import atomic_path, write_atomically, write_text_atomically


SUMMARY_FORMAT_KEY = "isnet_format"
SUMMARY_FORMAT = 1  # the layout of summary.json; files written before it have no key


def write_summary(output: Path, summary: dict) -> Path:
    """``output/summary.json``: ``summary`` with the version of its layout first (``isnet_format``)."""
    return write_text_atomically(output / "summary.json",
                                 json.dumps({SUMMARY_FORMAT_KEY: SUMMARY_FORMAT, **summary}, indent=2))


def write_report(matrix: ConfusionMatrix, class_names: Sequence[str], output: str | Path, *, title: str = "",
                 boundary: BoundaryIoU | None = None) -> dict:
    """Write ``scores.txt``, ``per_class.csv``, ``summary.json``, ``per_class_iou.png`` and
    ``confusion_matrix.png`` into ``output``; return the summary. With ``boundary``, its
    per-class and mean boundary IoU join the table, the CSV and the summary (``boundary_iou``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    scores = matrix.summary()
    boundary_iou = boundary.per_class() if boundary is not None else [math.nan] * len(class_names)
    table = scores.table(class_names) + (boundary_table(boundary, class_names) if boundary is not None else "")
    write_text_atomically(output / "scores.txt", (title + "\n" if title else "") + table + "\n")
    with atomic_path(output / "per_class.csv") as temporary, open(temporary, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["class", "iou", "accuracy"] + (["boundary_iou"] if boundary is not None else []))
        for name, iou, accuracy, edge in zip(class_names, scores.iou, scores.class_accuracy, boundary_iou):
            writer.writerow([name, f"{iou:.6f}", f"{accuracy:.6f}"] + ([f"{edge:.6f}"] if boundary is not None else []))
    summary = {
        "mIoU": scores.mean_iou,
        "pixel_accuracy": scores.pixel_accuracy,
        "mean_accuracy": scores.mean_accuracy,
        "iou": dict(zip(class_names, scores.iou)),
        "f1": dict(zip(class_names, scores.f1)),
    }
    if scores.foreground is not None:  # binary segmentation: the foreground's scores
        summary["foreground_iou"], summary["foreground_f1"] = scores.foreground
    if boundary is not None:
        summary["boundary_iou"] = {"mean": boundary.mean(), "per_class": dict(zip(class_names, boundary_iou)),
                                   "band_ratio": boundary.ratio}
    write_summary(output, summary)

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


def boundary_table(boundary: BoundaryIoU, class_names: Sequence[str]) -> str:
    """The boundary IoU lines of ``scores.txt``: each class, then the mean."""
    width = max(len(name) for name in class_names)
    lines = [f"\nboundary IoU (band {100 * boundary.ratio:g} % of the diagonal)"]
    lines += [f"{name:<{width}}  {100 * value:6.2f}" for name, value in zip(class_names, boundary.per_class())]
    lines.append(f"mean boundary IoU {100 * boundary.mean():.2f}")
    return "\n".join(lines)

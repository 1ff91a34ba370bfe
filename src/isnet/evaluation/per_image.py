"""``isnet eval --per-image``: which images a model gets wrong, instead of one mIoU.

Per image: the mIoU over the classes present (in its labels or its prediction), the pixel
accuracy over its labelled pixels and its worst class (lowest IoU; of equal ones, the one with
the most labelled pixels), in ``per_image.csv``;
the N images of lowest mIoU drawn in ``worst/`` as image | ground truth | prediction | error
map panels with a legend; and a histogram of the per-image mIoU (``per_image_miou.png``).
Only the N worst predictions are held while the dataset is scored.
"""

from __future__ import annotations

import csv
import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from isnet.utils.visualize import colourise

WRONG_COLOUR = (255, 0, 0)
IGNORED_COLOUR = (0, 0, 0)


@dataclass(frozen=True)
class ImageScore:
    path: str
    miou: float
    pixel_accuracy: float
    worst_class: int  # -1 when no class is present
    worst_iou: float
    labelled_pixels: int


@dataclass(order=True)
class _Kept:
    """One of the worst images so far (ordered so that the heap's top is the best of them)."""

    negative_miou: float
    path: str = field(compare=False)
    prediction: np.ndarray = field(compare=False, repr=False)
    labels: np.ndarray = field(compare=False, repr=False)


def image_score(prediction: np.ndarray, labels: np.ndarray, num_classes: int, ignore_index: int, path: str) -> ImageScore:
    """The scores of one image from its predicted and true label maps."""
    labelled = labels != ignore_index
    truth, predicted = labels[labelled].astype(np.int64), prediction[labelled].astype(np.int64)
    counts = np.bincount(truth * num_classes + predicted, minlength=num_classes**2).reshape(num_classes, num_classes)
    hits = np.diag(counts).astype(np.float64)
    union = counts.sum(0) + counts.sum(1) - hits
    present = union > 0
    iou = np.divide(hits, union, out=np.full(num_classes, np.nan), where=present)
    worst = -1
    if present.any():  # the lowest IoU; of equal ones, the class with the most labelled pixels (the biggest miss)
        lowest = np.flatnonzero(iou == np.nanmin(iou))
        worst = int(lowest[np.argmax(counts.sum(1)[lowest])])
    return ImageScore(path=path, miou=float(np.nanmean(iou)) if present.any() else math.nan,
                      pixel_accuracy=float(hits.sum() / truth.size) if truth.size else math.nan,
                      worst_class=worst, worst_iou=float(iou[worst]) if worst >= 0 else math.nan,
                      labelled_pixels=int(truth.size))


class PerImageScores:
    """An evaluation observer: every image's scores, and the ``worst`` images' label maps."""

    def __init__(self, num_classes: int, ignore_index: int = 255, worst: int = 8) -> None:
        self.num_classes, self.ignore_index, self.worst = num_classes, ignore_index, worst
        self.scores: list[ImageScore] = []
        self._kept: list[_Kept] = []

    @torch.no_grad()
    def observe(self, scores: Tensor, predicted: Tensor, labels: Tensor, sample: dict) -> None:
        for prediction, truth, path in zip(predicted.cpu().numpy(), labels.cpu().numpy(), sample["path"]):
            score = image_score(prediction, truth, self.num_classes, self.ignore_index, path)
            self.scores.append(score)
            if self.worst and not math.isnan(score.miou):
                kept = _Kept(-score.miou, path, prediction.astype(np.uint8), truth.astype(np.uint8))
                if len(self._kept) < self.worst:
                    heapq.heappush(self._kept, kept)
                elif kept > self._kept[0]:  # lower mIoU than the best of the kept ones
                    heapq.heapreplace(self._kept, kept)

    def all_reduce(self) -> None:
        """Gather every process's images on all (no-op unless torch.distributed is initialised)."""
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return
        gathered: list = [None] * dist.get_world_size()
        dist.all_gather_object(gathered, (self.scores, self._kept))
        self.scores = [score for scores, _ in gathered for score in scores]
        self._kept = heapq.nlargest(self.worst, [kept for _, kept in gathered for kept in kept])

    def worst_images(self) -> list[_Kept]:
        """The kept images, worst first."""
        return sorted(self._kept, reverse=True)

    def write(self, output: str | Path, classes: Sequence[str], palette: Sequence[Sequence[int]], *,
              title: str = "") -> list[Path]:
        """``per_image.csv``, ``per_image_miou.png`` and ``worst/NN_<name>.png``; the panels' paths."""
        output = Path(output)
        output.mkdir(parents=True, exist_ok=True)
        with open(output / "per_image.csv", "w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["image", "miou", "pixel_accuracy", "worst_class", "worst_class_iou", "labelled_pixels"])
            for score in self.scores:
                worst = classes[score.worst_class] if score.worst_class >= 0 else ""
                writer.writerow([score.path, f"{score.miou:.6f}", f"{score.pixel_accuracy:.6f}", worst,
                                 f"{score.worst_iou:.6f}", score.labelled_pixels])
        plot_histogram([score.miou for score in self.scores], output / "per_image_miou.png", title=title)
        panels = []
        for rank, kept in enumerate(self.worst_images(), start=1):
            name = f"{rank:02d}_{Path(kept.path).stem}.png"
            panels.append(draw_panels(output / "worst" / name, kept.path, kept.labels, kept.prediction, classes,
                                      palette, ignore_index=self.ignore_index, title=f"mIoU {100 * -kept.negative_miou:.1f}"))
        return panels


def plot_histogram(values: Sequence[float], path: Path, *, title: str = "") -> Path:
    """A histogram of per-image mIoU (%) with its mean and median."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    finite = 100 * np.asarray([v for v in values if not math.isnan(v)], dtype=np.float64)
    figure, axis = plt.subplots(figsize=(6, 3.5), dpi=100)
    axis.hist(finite, bins=np.linspace(0, 100, 21), color="tab:blue", edgecolor="white")
    if finite.size:
        axis.axvline(finite.mean(), color="tab:red", linestyle="--", label=f"mean {finite.mean():.1f}")
        axis.axvline(np.median(finite), color="tab:orange", linestyle=":", label=f"median {np.median(finite):.1f}")
        axis.legend()
    axis.set_xlabel("per-image mIoU (%)")
    axis.set_ylabel("images")
    axis.set_title(f"{title + ': ' if title else ''}per-image mIoU ({finite.size} images)")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def draw_panels(path: Path, image_path: str, labels: np.ndarray, prediction: np.ndarray, classes: Sequence[str],
                palette: Sequence[Sequence[int]], *, ignore_index: int, title: str) -> Path:
    """image | ground truth | prediction | error map (wrong pixels red, unlabelled black), with a legend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Patch

    image = _display_image(image_path, labels.shape)
    labelled = labels != ignore_index
    error = (0.4 * image).astype(np.uint8)  # the image, dimmed, where the prediction is right
    error[labelled & (labels != prediction)] = WRONG_COLOUR
    error[~labelled] = IGNORED_COLOUR
    height, width = labels.shape
    present = sorted({int(k) for k in np.unique(labels[labelled])} | {int(k) for k in np.unique(prediction)})
    present = [k for k in present if k < len(classes)]
    panel_width = 3.0
    panel_height = max(panel_width * height / width, 1.2)
    figure, axes = plt.subplots(1, 4, figsize=(4 * panel_width + 1.8, panel_height + 0.5), dpi=100)
    for axis, picture, name in zip(axes, (image, colourise(labels, palette, ignore_index), colourise(prediction, palette),
                                          error), ("image", "ground truth", "prediction", "error map")):
        axis.imshow(picture)
        axis.set_title(name, fontsize=8)
        axis.axis("off")
    handles = [Patch(color=np.asarray(palette[k]) / 255, label=classes[k]) for k in present]
    handles += [Patch(color=np.asarray(WRONG_COLOUR) / 255, label="wrong"),
                Patch(facecolor=np.asarray(IGNORED_COLOUR) / 255, edgecolor="grey", label="unlabelled")]
    figure.legend(handles=handles, loc="center right", fontsize=7, frameon=False)
    figure.suptitle(f"{Path(image_path).name}: {title}", fontsize=9)
    figure.tight_layout(rect=(0, 0, (4 * panel_width) / (4 * panel_width + 1.8), 1))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def _display_image(image_path: str, shape: tuple[int, ...]) -> np.ndarray:
    """The RGB image at the labels' size; a grey panel for an image that is not RGB."""
    from isnet.data.image import read_image

    try:
        image = read_image(image_path)
    except (OSError, ValueError):
        image = None
    if image is None or image.ndim != 3 or image.shape[:2] != tuple(shape) or image.shape[2] != 3:
        return np.full((*shape, 3), 128, np.uint8)
    return image

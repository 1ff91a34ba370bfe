"""How far a fast model is from its float32 original on held-out images: pixel agreement and mIoU.

``isnet quantize`` prints these for its INT8 model; the benchmarks (``benchmarks.int8``)
use them for every contender on a trained model. Both models predict each image whole, at
the size it is given in; the scores are resized to the label (or the image) and compared
pixel by pixel, as ``isnet eval`` scores.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor

from isnet.evaluation.metrics import ConfusionMatrix
from isnet.inference.engine import predict

Sample = tuple[Tensor, Tensor | None]  # an image (1, 3, H, W) and its label (H', W'), or None


@dataclass(frozen=True)
class Comparison:
    """A candidate model against the float32 reference on the same images."""

    images: int
    agreement: float  # fraction of pixels whose class is the reference's
    reference_miou: float | None = None  # with labels
    candidate_miou: float | None = None
    seconds: float = 0.0  # the candidate's prediction time, summed over the images
    reference_seconds: float = 0.0

    def describe(self, name: str = "INT8") -> str:
        text = f"{name} vs float32 on {self.images} image(s): pixel agreement {100 * self.agreement:.2f}%"
        if self.reference_miou is not None and self.candidate_miou is not None:
            change = 100 * (self.candidate_miou - self.reference_miou)
            text += f"; mIoU {100 * self.candidate_miou:.2f} vs {100 * self.reference_miou:.2f} ({change:+.2f})"
        return text


def dataset_samples(dataset: Sequence[dict]) -> Iterator[Sample]:
    """The images and labels of a dataset built for evaluation (``DataConfig.build(split, train=False)``)."""
    for index in range(len(dataset)):
        sample = dataset[index]
        yield sample["image"].unsqueeze(0), sample["label"]


def image_samples(paths: Iterable[Path], prepare) -> Iterator[Sample]:
    """Images without labels: agreement only. ``prepare(path)`` gives the model's input."""
    for path in paths:
        yield prepare(path), None


def labelled_samples(paths: Iterable[Path], labels_dir: str | Path, prepare, record=None) -> Iterator[Sample]:
    """Images with their labels: ``labels_dir/<stem>.png`` (class indices; the ignore value of the model's
    dataset ``record``, 255 without one, ignored)."""
    from isnet.data.base import IGNORE_INDEX, read_label_png

    for path in paths:
        label_path = Path(labels_dir) / f"{Path(path).stem}.png"
        if not label_path.is_file():
            raise FileNotFoundError(f"{path}: no label {label_path}")
        label = read_label_png(label_path).astype("int64")
        label[label == (record.ignore_index if record is not None else IGNORE_INDEX)] = IGNORE_INDEX
        yield prepare(path), torch.from_numpy(label)


def _labels(model, image: Tensor, size: tuple[int, int]) -> Tensor:
    return predict(model, image, output_size=size).argmax(dim=1)


def compare(reference, candidates: dict[str, object], samples: Iterable[Sample], num_classes: int) -> dict[str, Comparison]:
    """Each candidate against ``reference`` (the float32 model) on ``samples``.

    Every image runs through the reference and then each candidate in turn (interleaved, so a
    change in the machine's load hits all alike); their prediction times are summed.
    """
    agreeing = {name: 0 for name in candidates}
    seconds = {name: 0.0 for name in ("reference", *candidates)}
    pixels = 0
    matrices = {name: ConfusionMatrix(num_classes) for name in ("reference", *candidates)}
    labelled = True
    count = 0
    with torch.no_grad():
        for image, label in samples:
            count += 1
            size = tuple(label.shape[-2:]) if label is not None else tuple(image.shape[2:])
            start = time.perf_counter()
            expected = _labels(reference, image, size)
            seconds["reference"] += time.perf_counter() - start
            pixels += expected.numel()
            labelled = labelled and label is not None
            if label is not None:
                matrices["reference"].update(expected, label.reshape(expected.shape))
            for name, candidate in candidates.items():
                start = time.perf_counter()
                actual = _labels(candidate, image, size)
                seconds[name] += time.perf_counter() - start
                agreeing[name] += int((actual == expected).sum())
                if label is not None:
                    matrices[name].update(actual, label.reshape(expected.shape))
    if not count:
        raise ValueError("no held-out images to compare on")
    reference_miou = matrices["reference"].summary().mean_iou if labelled else None
    return {
        name: Comparison(count, agreeing[name] / pixels, reference_miou,
                         matrices[name].summary().mean_iou if labelled else None, seconds[name], seconds["reference"])
        for name in candidates
    }

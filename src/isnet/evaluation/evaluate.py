"""Scoring a model on a dataset with one of the inference protocols."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from isnet.evaluation.calibration import CalibrationBins
from isnet.evaluation.metrics import ConfusionMatrix
from isnet.inference.engine import InferenceConfig, predict
from isnet.inference.predictor import Predictor, as_predictor
from isnet.inference.temperature import probabilities


def evaluate(
    model: Predictor | nn.Module,
    dataset: Dataset,
    num_classes: int,
    config: InferenceConfig = InferenceConfig(),
    *,
    device: torch.device | str = "cpu",
    rank: int = 0,
    world_size: int = 1,
    num_workers: int = 0,
    progress: bool = False,
    calibration: CalibrationBins | None = None,
    observers: Sequence[Any] = (),
) -> ConfusionMatrix:
    """Accumulate the confusion matrix of ``model`` (a predictor, or a module such as a model
    being trained, which is evaluated in eval mode and left in the mode it was in) over ``dataset``.

    Each process scores every ``world_size``-th image and the matrices are summed, so the
    result is the whole set's. Predictions are resized to each label's size (the dataset's
    eval transform may have resized the image) and scored against the original label.
    With ``calibration``, every labelled pixel's confidence is binned into it as well (ECE).
    Each of ``observers`` (boundary IoU, per-image scores, validation loss) is shown every image:
    ``observe(scores, predicted, labels, sample)``, then ``all_reduce()``.
    """
    shard = Subset(dataset, range(rank, len(dataset), world_size))
    loader = DataLoader(shard, batch_size=1, num_workers=num_workers)
    if progress:
        from isnet.utils.progress import progress_bar

        loader = progress_bar(loader, desc="eval", leave=False)
    matrix = ConfusionMatrix(num_classes)
    predictor = as_predictor(model)
    with torch.no_grad():
        for sample in loader:
            images = sample["image"].to(device)
            labels = sample["label"].to(device)
            scores = predict(predictor, images, config, output_size=labels.shape[1:])  # one resize, to the label
            predicted = scores.argmax(dim=1)
            matrix.update(predicted, labels)
            for observer in observers:
                observer.observe(scores, predicted, labels, sample)
            if calibration is not None:
                calibration.update(probabilities(scores, config), labels)
    matrix.all_reduce()
    if calibration is not None:
        calibration.all_reduce()
    for observer in observers:
        observer.all_reduce()
    return matrix

"""Class weights for imbalanced data, from the label frequencies of a training set."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

from isnet.data.base import SegmentationDataset


def label_counts(dataset: SegmentationDataset, progress: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """Per class: its pixels over the whole set, and the pixels of the images it appears in.

    Reads only the label files (at their stored size, through the dataset's label mapping).
    """
    num_classes = dataset.info.num_classes
    pixels = np.zeros(num_classes, dtype=np.int64)
    pixels_of_images_with = np.zeros(num_classes, dtype=np.int64)
    pairs: Iterable = dataset.pairs
    if progress:
        from isnet.utils.progress import progress_bar

        pairs = progress_bar(pairs, desc="label frequencies")
    for _, label_path in pairs:
        label = dataset.lut[dataset.read_stored_label(label_path)]
        counts = np.bincount(label[(label >= 0) & (label < num_classes)].ravel(), minlength=num_classes)
        pixels += counts
        pixels_of_images_with += (counts > 0) * int(counts.sum())  # the image's labelled pixels
    return pixels, pixels_of_images_with


def median_frequency_weights(dataset: SegmentationDataset, progress: bool = False) -> tuple[float, ...]:
    """Median frequency balancing (Eigen & Fergus 2015, as SegNet trained CamVid).

    The frequency of class k is its pixels over the pixels of the images where it appears;
    its weight is the median frequency over this frequency. A class absent from the set gets 0.
    """
    pixels, pixels_of_images_with = label_counts(dataset, progress)
    if not (pixels > 0).any():
        raise ValueError(f"{dataset!r}: no labelled pixel to compute class frequencies from")
    return median_frequency_from_counts(pixels, pixels_of_images_with)


def median_frequency_from_counts(pixels: np.ndarray, pixels_of_images_with: np.ndarray) -> tuple[float, ...]:
    """Median frequency balancing from counts (:func:`label_counts`); 0 for an absent class, all 0 for none."""
    present = pixels > 0
    if not present.any():
        return tuple(0.0 for _ in pixels)
    frequency = np.zeros(len(pixels))
    frequency[present] = pixels[present] / pixels_of_images_with[present]
    weights = np.zeros(len(pixels))
    weights[present] = np.median(frequency[present]) / frequency[present]
    return tuple(float(w) for w in weights)

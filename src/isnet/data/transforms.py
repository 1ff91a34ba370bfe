"""Training and evaluation pipelines of the released ISNet models, built on albumentations.

Every pipeline is a ``Transform``: ``(image uint8 H×W×3 RGB, label uint8 H×W) → same``,
run by a dataset before normalisation. Labels are always resized with nearest-neighbour
interpolation and padded / rotated in with 255, so they never hold values that were not in
the stored label. Sizes are (height, width) except ``fit_size``, which is (long side, short
side) as in the papers' "2048×512".

Only what albumentations lacks is written here: the resize-to-fit with a random ratio in one
step (two library resizes would interpolate the image twice), the crop that rejects crops
dominated by one class, and the flip that swaps left/right label values.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import albumentations as A
import cv2
import numpy as np
import torch.utils.data

from isnet.data.base import IGNORE_INDEX, Transform
from isnet.data.info import LIP

Size = tuple[int, int]


class RandomResize(A.DualTransform):
    """Resize by a random ratio of a target size, in one interpolation step.

    With ``keep_ratio`` the target is a box of ``size = (long side, short side)`` that the
    image is scaled to fit, whatever its orientation (mmseg / sssegmentation ``Resize`` with
    ``keep_ratio=True``); without it the image is resized to exactly ``size = (height, width)``.
    Either way the target is first multiplied by a ratio drawn from ``scale_range``. A ``size``
    of None is the image's own size (only the random ratio applies).
    """

    def __init__(
        self, size: Size | None, scale_range: tuple[float, float] = (1.0, 1.0), keep_ratio: bool = True
    ) -> None:
        super().__init__(p=1.0)
        self.size = size
        self.scale_range = scale_range
        self.keep_ratio = keep_ratio

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        ratio = self.py_random.uniform(*self.scale_range)
        size = self.size or ((max(height, width), min(height, width)) if self.keep_ratio else (height, width))
        if self.keep_ratio:
            long_side, short_side = max(size) * ratio, min(size) * ratio
            scale = min(long_side / max(height, width), short_side / min(height, width))
            out_size = (int(height * scale + 0.5), int(width * scale + 0.5))
        else:
            out_size = (int(size[0] * ratio + 0.5), int(size[1] * ratio + 0.5))
        return {"out_size": (max(out_size[0], 1), max(out_size[1], 1))}

    def apply(self, img: np.ndarray, out_size: Size, **params: Any) -> np.ndarray:
        return cv2.resize(img, out_size[::-1], interpolation=cv2.INTER_LINEAR)

    def apply_to_mask(self, mask: np.ndarray, out_size: Size, **params: Any) -> np.ndarray:
        return cv2.resize(mask, out_size[::-1], interpolation=cv2.INTER_NEAREST)


class CatMaxRatioCrop(A.DualTransform):
    """Random crop of at most ``size`` in which no class covers ``cat_max_ratio`` or more.

    Crops showing a single class (or one dominating class) teach little, so a crop is drawn
    again, up to ``max_tries`` times in all, while its most frequent class covers at least
    ``cat_max_ratio`` of its labelled (non-ignored) pixels or it shows fewer than two classes;
    the last crop drawn is kept. An image smaller than ``size`` is cropped to its own extent
    along that side (pad afterwards). ``cat_max_ratio=1`` disables the check.
    """

    def __init__(
        self,
        size: Size,
        cat_max_ratio: float = 0.75,
        max_tries: int = 10,
        ignore_index: int = IGNORE_INDEX,
    ) -> None:
        super().__init__(p=1.0)
        self.size = size
        self.cat_max_ratio = cat_max_ratio
        self.max_tries = max_tries
        self.ignore_index = ignore_index

    def _balanced(self, label: np.ndarray) -> bool:
        counts = np.bincount(label.ravel(), minlength=self.ignore_index + 1)
        counts[self.ignore_index] = 0
        present = counts[counts > 0]
        return len(present) > 1 and present.max() < self.cat_max_ratio * present.sum()

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        height, width = params["shape"][:2]
        crop_h, crop_w = min(self.size[0], height), min(self.size[1], width)
        label = data.get("mask")
        for _ in range(self.max_tries):
            top = self.py_random.randint(0, height - crop_h)
            left = self.py_random.randint(0, width - crop_w)
            box = (top, left, top + crop_h, left + crop_w)
            if label is None or self.cat_max_ratio >= 1:
                break
            if self._balanced(label[box[0] : box[2], box[1] : box[3]]):
                break
        return {"box": box}

    def apply(self, img: np.ndarray, box: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        return img[box[0] : box[2], box[1] : box[3]]

    def apply_to_mask(self, mask: np.ndarray, box: tuple[int, int, int, int], **params: Any) -> np.ndarray:
        return mask[box[0] : box[2], box[1] : box[3]]


class HorizontalFlipWithPairs(A.HorizontalFlip):
    """Horizontal flip that also swaps the label values of left/right class pairs.

    A mirrored left arm is a right arm: without the swap a human-parsing model would be
    taught that left and right are interchangeable.
    """

    def __init__(self, flip_pairs: Sequence[tuple[int, int]] = (), p: float = 0.5) -> None:
        super().__init__(p=p)
        self.flip_pairs = tuple(flip_pairs)
        self.swap = np.arange(256, dtype=np.uint8)
        for left, right in self.flip_pairs:
            self.swap[left], self.swap[right] = right, left

    def apply_to_mask(self, mask: np.ndarray, **params: Any) -> np.ndarray:
        return self.swap[super().apply_to_mask(mask, **params)]


def photometric_distortion() -> A.BaseCompose:
    """Random brightness, contrast, saturation and hue, each with probability 0.5.

    Follows mmseg's ``PhotoMetricDistortion``: brightness ±32, contrast ×[0.5, 1.5] applied
    either first or last, saturation ×[0.5, 1.5], hue ±18 of OpenCV's 180 (±36°). The
    saturation step blends with grey (torchvision semantics) instead of scaling HSV's S.
    """

    def brightness() -> A.BasicTransform:
        delta = 32 / 255  # a fraction of the maximum value
        return A.RandomBrightnessContrast(brightness_limit=(-delta, delta), contrast_limit=(0, 0), p=0.5)

    def contrast() -> A.BasicTransform:
        return A.RandomBrightnessContrast(brightness_limit=(0, 0), contrast_limit=(-0.5, 0.5), p=0.5)

    def colour() -> list[A.BasicTransform]:
        same = (1.0, 1.0)
        saturation = A.ColorJitter(brightness=same, contrast=same, saturation=(0.5, 1.5), hue=(0, 0), p=0.5)
        hue = A.ColorJitter(brightness=same, contrast=same, saturation=same, hue=(-0.1, 0.1), p=0.5)
        return [saturation, hue]

    contrast_first = A.Sequential([contrast(), *colour()], p=1.0)
    contrast_last = A.Sequential([*colour(), contrast()], p=1.0)
    return A.Sequential([brightness(), A.OneOf([contrast_first, contrast_last], p=1.0)], p=1.0)


def pad_to(size: Size) -> A.BasicTransform:
    """Pad bottom/right to at least ``size``: image with 0, label with 255 (ignored)."""
    return A.PadIfNeeded(
        min_height=size[0],
        min_width=size[1],
        position="top_left",
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        fill_mask=IGNORE_INDEX,
    )


class _SeededPipeline:
    """Runs an ``A.Compose`` from one random stream that every step draws from in turn.

    ``A.Compose(seed=s)`` would give each step its own generator seeded with the same ``s``,
    which makes steps with equal probabilities decide alike. In a ``DataLoader`` worker the
    stream is reseeded from the worker's torch seed, so workers do not repeat each other's
    augmentations and seeding torch makes training reproducible.
    """

    def __init__(self, compose: A.Compose, seed: int | None) -> None:
        self.compose = compose
        self._reseed(seed)
        self._worker_seed: int | None = None
        self._seeded_per_sample = False

    def _reseed(self, seed: int | None) -> None:
        self.compose.set_random_state(np.random.default_rng(seed), random.Random(seed))

    def reseed(self, seed: int) -> None:
        """Seed the stream for the next sample; from then on worker seeds are not followed.

        The training engine seeds every sample from its position in the run, so that a
        resumed run or a different number of processes or workers draws the same crops.
        """
        self._reseed(seed)
        self._seeded_per_sample = True

    def _follow_worker_seed(self) -> None:
        if self._seeded_per_sample:
            return
        worker = torch.utils.data.get_worker_info()
        if worker is not None and worker.seed != self._worker_seed:
            self._worker_seed = worker.seed
            self._reseed(worker.seed)


class PairedTransform(_SeededPipeline):
    """A ``Transform`` that applies the same geometry to the image and the label."""

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._follow_worker_seed()
        out = self.compose(image=image, mask=label)
        return out["image"], out["mask"]


class ImageOnlyTransform(_SeededPipeline):
    """A ``Transform`` that changes the image only: evaluation scores the original label."""

    def __call__(self, image: np.ndarray, label: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        self._follow_worker_seed()
        return self.compose(image=image)["image"], label


def train_transforms(
    crop_size: Size = (512, 512),
    fit_size: Size | None = (2048, 512),
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip_pairs: Sequence[tuple[int, int]] = (),
    cat_max_ratio: float = 0.75,
    *,
    seed: int | None = None,
    photometric: bool = True,
) -> PairedTransform:
    """The ADE20K / COCO-Stuff / Cityscapes training pipeline of the released models.

    Resize to fit ``fit_size`` (long, short) times a ratio in ``scale_range``, crop
    ``crop_size`` (height, width) with the class-balance rule, flip (swapping
    ``flip_pairs``), photometric distortion, pad to ``crop_size``. Cityscapes uses
    ``crop_size=(512, 1024), fit_size=(2048, 1024)``. Images of other than 3 channels
    (``photometric=False``) skip the photometric distortion: hue and saturation are RGB notions.
    """
    steps = [
        RandomResize(fit_size, scale_range, keep_ratio=True),
        CatMaxRatioCrop(crop_size, cat_max_ratio),
        HorizontalFlipWithPairs(flip_pairs, p=0.5),
        *([photometric_distortion()] if photometric else []),
        pad_to(crop_size),
    ]
    return PairedTransform(A.Compose(steps), seed)


def lip_train_transforms(
    crop_size: Size = (473, 473),
    resize: Size = (520, 520),
    scale_range: tuple[float, float] = (0.75, 1.25),
    flip_pairs: Sequence[tuple[int, int]] = LIP.flip_pairs,
    max_rotation: float = 30.0,
    rotation_p: float = 0.6,
    cat_max_ratio: float = 0.75,
    *,
    seed: int | None = None,
) -> PairedTransform:
    """The LIP training pipeline of the released models.

    Resize to exactly ``resize`` times a ratio in ``scale_range`` (aspect not kept), crop
    ``crop_size`` with the class-balance rule, flip with the left/right label swap, rotate by
    up to ``max_rotation`` degrees with probability ``rotation_p`` (uncovered image 0, label
    255), photometric distortion, pad to ``crop_size``.
    """
    rotate = A.Rotate(
        limit=(-max_rotation, max_rotation),
        interpolation=cv2.INTER_LINEAR,
        mask_interpolation=cv2.INTER_NEAREST,
        border_mode=cv2.BORDER_CONSTANT,
        fill=0,
        fill_mask=IGNORE_INDEX,
        p=rotation_p,
    )
    steps = [
        RandomResize(resize, scale_range, keep_ratio=False),
        CatMaxRatioCrop(crop_size, cat_max_ratio),
        HorizontalFlipWithPairs(flip_pairs, p=0.5),
        rotate,
        photometric_distortion(),
        pad_to(crop_size),
    ]
    return PairedTransform(A.Compose(steps), seed)


def eval_transforms(fit_size: Size | None = None) -> Transform:
    """Test-time resize of the image to fit ``fit_size`` (long, short), or no change.

    The label keeps its original size: predictions are interpolated back to it and scored
    there, as in the released protocol. Images then differ in size, so evaluate with
    ``batch_size=1``. ADE20K / COCO-Stuff use (2048, 512), Cityscapes (2048, 1024).
    """
    steps = [] if fit_size is None else [RandomResize(fit_size, keep_ratio=True)]
    return ImageOnlyTransform(A.Compose(steps), seed=0)


def lip_eval_transforms(size: Size = (473, 473)) -> Transform:
    """LIP test-time resize of the image to exactly ``size``; the label keeps its size."""
    return ImageOnlyTransform(A.Compose([RandomResize(size, keep_ratio=False)]), seed=0)


def evaluation_transforms(fit_size: Size | None = None, resize_to: Size | None = None) -> Transform:
    """The test-time resize, decided here only: to fit ``fit_size`` (long, short) when there is
    one, else to exactly ``resize_to`` (height, width) (LIP), else none. The label keeps its size."""
    if fit_size is None and resize_to is not None:
        return lip_eval_transforms(resize_to)
    return eval_transforms(fit_size)

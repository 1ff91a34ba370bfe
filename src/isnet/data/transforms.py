"""The augmentation operations and the test-time resize, on numpy arrays (OpenCV imported when one runs).

Every pipeline is a ``Transform``: ``(image H×W×C, label H×W) → same``, run by a dataset
before normalisation. Each operation draws what it needs (a ratio, a crop box, an angle) from
the one random stream of its :class:`Pipeline`, then moves the image and the label alike:
images are interpolated bilinearly, labels with nearest neighbour and filled with the ignore
value where nothing was (padding, rotated-in corners), so a label never holds a value that
was not in the stored one. Sizes are (height, width) except ``fit_size``, which is (long side,
short side) as in the papers' "2048×512". What a training run applies, and how strongly, is
:class:`isnet.data.augmentation.Augmentation`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch.utils.data

from isnet.data.base import IGNORE_INDEX, Transform

Size = tuple[int, int]
Rng = np.random.Generator


def _cv2():
    import cv2  # OpenCV loads in about half a second: only when an operation runs

    return cv2


def _keep_channels(out: np.ndarray, like: np.ndarray) -> np.ndarray:
    """OpenCV drops a trailing channel axis of length 1; put it back."""
    return out[..., None] if like.ndim == 3 and out.ndim == 2 else out


def resize(image: np.ndarray, size: Size, *, label: bool = False) -> np.ndarray:
    """``image`` at ``size`` (height, width): bilinear, or nearest neighbour for a label."""
    cv2 = _cv2()
    interpolation = cv2.INTER_NEAREST if label else cv2.INTER_LINEAR
    return _keep_channels(cv2.resize(image, (size[1], size[0]), interpolation=interpolation), image)


@dataclass(frozen=True)
class RandomResize:
    """Resize by a random ratio of a target size, in one interpolation step.

    With ``keep_ratio`` the target is a box of ``size = (long side, short side)`` that the
    image is scaled to fit, whatever its orientation (mmseg / sssegmentation ``Resize`` with
    ``keep_ratio=True``); without it the image is resized to exactly ``size = (height, width)``.
    Either way the target is first multiplied by a ratio drawn uniformly from ``scale_range``.
    A ``size`` of None is the image's own size (only the random ratio applies).
    """

    size: Size | None
    scale_range: tuple[float, float] = (1.0, 1.0)
    keep_ratio: bool = True

    def out_size(self, height: int, width: int, ratio: float) -> Size:
        size = self.size or ((max(height, width), min(height, width)) if self.keep_ratio else (height, width))
        if self.keep_ratio:
            long_side, short_side = max(size) * ratio, min(size) * ratio
            scale = min(long_side / max(height, width), short_side / min(height, width))
            out = (int(height * scale + 0.5), int(width * scale + 0.5))
        else:
            out = (int(size[0] * ratio + 0.5), int(size[1] * ratio + 0.5))
        return max(out[0], 1), max(out[1], 1)

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: Rng):
        low, high = self.scale_range
        size = self.out_size(*image.shape[:2], float(rng.uniform(low, high)) if high > low else low)
        return resize(image, size), None if label is None else resize(label, size, label=True)


@dataclass(frozen=True)
class CatMaxRatioCrop:
    """Random crop of at most ``size`` in which no class covers ``cat_max_ratio`` or more.

    Crops showing a single class (or one dominating class) teach little, so a crop is drawn
    again, up to ``max_tries`` times in all, while its most frequent class covers at least
    ``cat_max_ratio`` of its labelled (non-ignored) pixels or it shows fewer than two classes;
    the last crop drawn is kept. An image smaller than ``size`` is cropped to its own extent
    along that side (pad afterwards). ``cat_max_ratio=1`` disables the check.
    """

    size: Size
    cat_max_ratio: float = 0.75
    max_tries: int = 10
    ignore_index: int = IGNORE_INDEX

    def balanced(self, label: np.ndarray) -> bool:
        values, counts = np.unique(label[label != self.ignore_index], return_counts=True)
        return len(values) > 1 and counts.max() < self.cat_max_ratio * counts.sum()

    def box(self, height: int, width: int, label: np.ndarray | None, rng: Rng) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) of the crop."""
        crop_h, crop_w = min(self.size[0], height), min(self.size[1], width)
        for _ in range(self.max_tries):
            top = int(rng.integers(0, height - crop_h + 1))
            left = int(rng.integers(0, width - crop_w + 1))
            box = (top, left, top + crop_h, left + crop_w)
            if label is None or self.cat_max_ratio >= 1 or self.balanced(label[box[0] : box[2], box[1] : box[3]]):
                break
        return box

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: Rng):
        top, left, bottom, right = self.box(*image.shape[:2], label, rng)
        return image[top:bottom, left:right], None if label is None else label[top:bottom, left:right]


def swap_pairs(label: np.ndarray, pairs: Sequence[tuple[int, int]]) -> np.ndarray:
    """``label`` with the values of each (left, right) pair exchanged."""
    if not pairs:
        return label
    swapped = label.copy()
    for left, right in pairs:
        swapped[label == left], swapped[label == right] = right, left
    return swapped


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror left-right with probability ``p``, swapping the label values of ``pairs``.

    A mirrored left arm is a right arm: without the swap a human-parsing model would be
    taught that left and right are interchangeable.
    """

    p: float = 0.5
    pairs: tuple[tuple[int, int], ...] = ()

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: Rng):
        if rng.random() >= self.p:
            return image, label
        image = np.ascontiguousarray(image[:, ::-1])
        return image, None if label is None else swap_pairs(np.ascontiguousarray(label[:, ::-1]), self.pairs)


@dataclass(frozen=True)
class RandomRotate:
    """Rotate about the centre by an angle uniform in ±``max_degrees`` with probability ``p``.

    The image keeps its size; corners rotated in are 0 in the image and ``ignore_index`` in the label.
    """

    max_degrees: float = 30.0
    p: float = 0.5
    ignore_index: int = IGNORE_INDEX

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: Rng):
        if rng.random() >= self.p:
            return image, label
        cv2 = _cv2()
        angle = float(rng.uniform(-self.max_degrees, self.max_degrees))
        height, width = image.shape[:2]
        matrix = cv2.getRotationMatrix2D((width / 2 - 0.5, height / 2 - 0.5), angle, 1.0)

        def warp(array: np.ndarray, interpolation: int, fill: int) -> np.ndarray:
            out = cv2.warpAffine(array, matrix, (width, height), flags=interpolation,
                                 borderMode=cv2.BORDER_CONSTANT, borderValue=(fill,) * 4)
            return _keep_channels(out, array)

        rotated = warp(image, cv2.INTER_LINEAR, 0)
        return rotated, None if label is None else warp(label, cv2.INTER_NEAREST, self.ignore_index)


@dataclass(frozen=True)
class PhotometricDistortion:
    """Brightness, contrast, saturation and hue, each with probability ``p`` (RGB uint8 images).

    Follows mmseg's ``PhotoMetricDistortion``: brightness ± ``brightness`` grey levels,
    contrast × a factor in ``contrast`` applied either first or last (even odds), saturation ×
    a factor in ``saturation`` (a blend with the grey image), hue ± ``hue`` degrees.
    """

    p: float = 0.5
    brightness: float = 32.0
    contrast: tuple[float, float] = (0.5, 1.5)
    saturation: tuple[float, float] = (0.5, 1.5)
    hue: float = 36.0

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: Rng):
        cv2 = _cv2()
        pixels = image.astype(np.float32)
        if rng.random() < self.p:
            pixels += rng.uniform(-self.brightness, self.brightness)
        contrast_first = rng.random() < 0.5
        steps = ["contrast", "saturation", "hue"] if contrast_first else ["saturation", "hue", "contrast"]
        for step in steps:
            if rng.random() >= self.p:
                continue
            pixels = np.clip(pixels, 0, 255)
            if step == "contrast":
                pixels *= rng.uniform(*self.contrast)
            elif step == "saturation":
                factor = rng.uniform(*self.saturation)
                grey = cv2.cvtColor(pixels, cv2.COLOR_RGB2GRAY)[..., None]
                pixels = pixels * factor + grey * (1 - factor)
            else:
                hsv = cv2.cvtColor(pixels / 255, cv2.COLOR_RGB2HSV)  # float: hue in degrees
                hsv[..., 0] = np.mod(hsv[..., 0] + rng.uniform(-self.hue, self.hue), 360)
                pixels = cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB) * 255
        return np.clip(pixels + 0.5, 0, 255).astype(np.uint8), label


@dataclass(frozen=True)
class GaussianBlur:
    """Blur the image (not the label) with probability ``p``, sigma uniform in ``sigma`` pixels."""

    p: float = 0.0
    sigma: tuple[float, float] = (0.1, 2.0)

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: Rng):
        if rng.random() >= self.p:
            return image, label
        sigma = float(rng.uniform(*self.sigma))
        side = 2 * int(np.ceil(3 * sigma)) + 1
        return _keep_channels(_cv2().GaussianBlur(image, (side, side), sigma), image), label


@dataclass(frozen=True)
class PadTo:
    """Pad bottom/right to at least ``size``: the image with 0, the label with ``ignore_index``."""

    size: Size
    ignore_index: int = IGNORE_INDEX

    def __call__(self, image: np.ndarray, label: np.ndarray | None, rng: Rng):
        bottom, right = max(self.size[0] - image.shape[0], 0), max(self.size[1] - image.shape[1], 0)
        if not bottom and not right:
            return image, label
        image = np.pad(image, [(0, bottom), (0, right)] + [(0, 0)] * (image.ndim - 2))
        if label is not None:
            label = np.pad(label, [(0, bottom), (0, right)], constant_values=self.ignore_index)
        return image, label


@dataclass
class Pipeline:
    """Operations run in order from one random stream that each draws from in turn.

    In a ``DataLoader`` worker the stream is reseeded from the worker's torch seed, so workers
    do not repeat each other's augmentations and seeding torch makes training reproducible.
    With ``image_only`` the label is passed through untouched (evaluation scores the original
    label; the test-time resize changes only the image).
    """

    steps: list
    seed: int | None = None
    image_only: bool = False
    rng: Rng = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.rng = np.random.default_rng(self.seed)
        self._worker_seed: int | None = None
        self._seeded_per_sample = False

    def reseed(self, seed: int) -> None:
        """Seed the stream for the next sample; from then on worker seeds are not followed.

        The training engine seeds every sample from its position in the run, so that a
        resumed run or a different number of processes or workers draws the same crops.
        """
        self.rng = np.random.default_rng(seed)
        self._seeded_per_sample = True

    def _follow_worker_seed(self) -> None:
        if self._seeded_per_sample:
            return
        worker = torch.utils.data.get_worker_info()
        if worker is not None and worker.seed != self._worker_seed:
            self._worker_seed = worker.seed
            self.rng = np.random.default_rng(worker.seed)

    def __call__(self, image: np.ndarray, label: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        self._follow_worker_seed()
        moved = None if self.image_only else label
        for step in self.steps:
            image, moved = step(image, moved, self.rng)
        return image, label if self.image_only else moved


def eval_transforms(fit_size: Size | None = None) -> Transform:
    """Test-time resize of the image to fit ``fit_size`` (long, short), or no change.

    The label keeps its original size: predictions are interpolated back to it and scored
    there, as in the released protocol. Images then differ in size, so evaluate with
    ``batch_size=1``. ADE20K / COCO-Stuff use (2048, 512), Cityscapes (2048, 1024).
    """
    steps = [] if fit_size is None else [RandomResize(fit_size, keep_ratio=True)]
    return Pipeline(steps, seed=0, image_only=True)


def lip_eval_transforms(size: Size = (473, 473)) -> Transform:
    """LIP test-time resize of the image to exactly ``size``; the label keeps its size."""
    return Pipeline([RandomResize(size, keep_ratio=False)], seed=0, image_only=True)


def evaluation_transforms(fit_size: Size | None = None, resize_to: Size | None = None) -> Transform:
    """The test-time resize, decided here only: to fit ``fit_size`` (long, short) when there is
    one, else to exactly ``resize_to`` (height, width) (LIP), else none. The label keeps its size."""
    if fit_size is None and resize_to is not None:
        return lip_eval_transforms(resize_to)
    return eval_transforms(fit_size)

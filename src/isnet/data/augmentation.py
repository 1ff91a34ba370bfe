"""The training augmentation of a run: a typed record (:class:`Augmentation`) and the pipeline it makes.

A run's ``config.json`` lists it under ``data.augment`` and ``--set data.augment.FIELD=VALUE``
changes one field (checked here). The sizes stay where the data's are: ``data.fit_size`` (the
box or exact size images are resized to), ``data.scale_range`` (the random ratio of that
size) and ``data.crop_size``. The order is fixed: resize × random ratio, class-balanced crop,
flip, rotate, photometric distortion, blur, pad to the crop size.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from isnet.data.base import IGNORE_INDEX
from isnet.data.info import LIP
from isnet.data.transforms import (
    CatMaxRatioCrop,
    GaussianBlur,
    HorizontalFlip,
    PadTo,
    PhotometricDistortion,
    Pipeline,
    RandomResize,
    RandomRotate,
    Size,
)
from isnet.utils.errors import ConfigError


def _check_number(name: str, value: Any, low: float, high: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not (
        low <= value <= high
    ):
        raise ConfigError(f"must be a number from {low:g} to {high:g}, not {value!r}", field=name)


def _check_range(name: str, value: Any, low: float, high: float) -> None:
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ConfigError(f"must be two numbers (smallest, largest), not {value!r}", field=name)
    for number in value:
        _check_number(name, number, low, high)
    if value[0] > value[1]:
        raise ConfigError(f"must be (smallest, largest), not {tuple(value)!r}", field=name)


@dataclass(frozen=True)
class Augmentation:
    """Which random changes a training image and its label go through, and how strong.

    ``resize``: "fit" scales the image to fit the ``data.fit_size`` box (long, short), keeping
    its aspect; "exact" resizes it to ``data.fit_size`` (height, width) (LIP). A probability
    of 0 turns an operation off. The defaults are the released scene recipes (ADE20K,
    Cityscapes, COCO-Stuff); :meth:`of_pipeline` gives LIP's (exact resize, rotation).
    """

    resize: Literal["fit", "exact"] = "fit"
    cat_max_ratio: float = 0.75  # redraw a crop (10 tries) while one class covers this share; 1: never
    flip: float = 0.5  # probability of a horizontal flip (the record's left/right classes swapped)
    rotate: float = 0.0  # probability of a rotation ...
    max_rotation: float = 30.0  # ... by an angle uniform in ± this many degrees
    photometric: float = 0.5  # probability of each of brightness, contrast, saturation, hue (RGB only)
    brightness: float = 32.0  # ± grey levels of 255
    contrast: tuple[float, float] = (0.5, 1.5)  # factor range
    saturation: tuple[float, float] = (0.5, 1.5)  # factor range (a blend with the grey image)
    hue: float = 36.0  # ± degrees of the colour wheel
    blur: float = 0.0  # probability of a Gaussian blur of the image ...
    blur_sigma: tuple[float, float] = (0.1, 2.0)  # ... with sigma uniform in this range (pixels)

    def __post_init__(self) -> None:
        if self.resize not in ("fit", "exact"):
            raise ConfigError(f"is {self.resize!r}; choose one of fit, exact", field="resize")
        for name in ("flip", "rotate", "photometric", "blur"):
            _check_number(name, getattr(self, name), 0, 1)
        _check_number("cat_max_ratio", self.cat_max_ratio, 0.01, 1)
        _check_number("max_rotation", self.max_rotation, 0, 180)
        _check_number("brightness", self.brightness, 0, 255)
        _check_number("hue", self.hue, 0, 180)
        _check_range("contrast", self.contrast, 0, 10)
        _check_range("saturation", self.saturation, 0, 10)
        _check_range("blur_sigma", self.blur_sigma, 0.01, 50)

    @classmethod
    def of_pipeline(cls, pipeline: str) -> Augmentation:
        """The released augmentation of a record's ``training.pipeline``: "scene" or "person" (LIP)."""
        return cls(resize="exact", rotate=0.6) if pipeline == "person" else cls()


def training_transforms(
    augment: Augmentation,
    crop_size: Size,
    fit_size: Size | None,
    scale_range: tuple[float, float],
    flip_pairs: Sequence[tuple[int, int]] = (),
    *,
    rgb: bool = True,
    seed: int | None = None,
    ignore_index: int = IGNORE_INDEX,
) -> Pipeline:
    """The training pipeline ``augment`` describes, for crops of ``crop_size`` (height, width).

    Images of other than 3 channels (``rgb=False``) skip the photometric distortion: hue and
    saturation are RGB notions. Operations turned off (probability 0) are left out.
    """
    steps = [
        RandomResize(fit_size, scale_range, keep_ratio=augment.resize == "fit"),
        CatMaxRatioCrop(crop_size, augment.cat_max_ratio, ignore_index=ignore_index),
        HorizontalFlip(augment.flip, tuple(flip_pairs)),
        RandomRotate(augment.max_rotation, augment.rotate, ignore_index=ignore_index),
        PhotometricDistortion(augment.photometric, augment.brightness, augment.contrast, augment.saturation,
                              augment.hue) if rgb else None,
        GaussianBlur(augment.blur, augment.blur_sigma),
        PadTo(crop_size, ignore_index),
    ]
    kept = [step for step in steps if step is not None and getattr(step, "p", 1) > 0]
    return Pipeline(kept, seed)


def train_transforms(
    crop_size: Size = (512, 512),
    fit_size: Size | None = (2048, 512),
    scale_range: tuple[float, float] = (0.5, 2.0),
    flip_pairs: Sequence[tuple[int, int]] = (),
    cat_max_ratio: float = 0.75,
    *,
    seed: int | None = None,
    photometric: bool = True,
) -> Pipeline:
    """The ADE20K / COCO-Stuff / Cityscapes training pipeline of the released models.

    Resize to fit ``fit_size`` (long, short) times a ratio in ``scale_range``, crop
    ``crop_size`` (height, width) with the class-balance rule, flip (swapping
    ``flip_pairs``), photometric distortion, pad to ``crop_size``. Cityscapes uses
    ``crop_size=(512, 1024), fit_size=(2048, 1024)``.
    """
    augment = Augmentation(cat_max_ratio=cat_max_ratio)
    return training_transforms(augment, crop_size, fit_size, scale_range, flip_pairs, rgb=photometric, seed=seed)


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
) -> Pipeline:
    """The LIP training pipeline of the released models.

    Resize to exactly ``resize`` times a ratio in ``scale_range`` (aspect not kept), crop
    ``crop_size`` with the class-balance rule, flip with the left/right label swap, rotate by
    up to ``max_rotation`` degrees with probability ``rotation_p`` (uncovered image 0, label
    255), photometric distortion, pad to ``crop_size``.
    """
    augment = Augmentation(resize="exact", rotate=rotation_p, max_rotation=max_rotation, cat_max_ratio=cat_max_ratio)
    return training_transforms(augment, crop_size, resize, scale_range, flip_pairs, seed=seed)

"""The part every dataset reader shares: file pairing, decoding, label mapping, tensors.

A reader only has to say where its images and labels are and how its stored label values map
to training values; it does that by building a ``SegmentationDataset``. Every file problem
is raised as a ``DataFileError`` with the file's path in the message, because a data error
found deep inside a training run is only fixable when it names the file; ``check_sample``
finds most of them from the file headers before training starts (``isnet.data.validate``).
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from isnet.data.channels import channels_size, read_channels
from isnet.data.image import MAX_IMAGE_PIXELS, DataFileError, decode_upright, displayed_size, exif_orientation
from isnet.data.image import MEAN as IMAGE_MEAN
from isnet.data.image import STD as IMAGE_STD
from isnet.data.image import image_size, open_image, read_image
from isnet.data.info import DatasetInfo

IGNORE_INDEX = 255
"""The value of ignored pixels in training labels, whatever a dataset stores for them: every reader maps
its record's ``ignore_index`` (the stored value of unlabelled pixels) to it, so that the loss, the
metrics, calibration and class weights need no record to know which pixels to leave out."""

Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(image uint8 H×W×3 RGB, label uint8 H×W) → the same, possibly resized or cropped."""


def label_lut(mapping: Mapping[int, int], ignore_index: int = IGNORE_INDEX) -> np.ndarray:
    """A 256-entry look-up table from stored label values to training values.

    Stored values absent from ``mapping`` become -1, which ``SegmentationDataset`` reports
    as an error: an unexpected value usually means the wrong annotation files were given.
    The stored ``ignore_index`` (the record's, 255 unless it says otherwise) becomes
    :data:`IGNORE_INDEX`; ``mapping`` may not make it a class.
    """
    if ignore_index in mapping and mapping[ignore_index] != IGNORE_INDEX:
        raise ValueError(f"the stored ignore value {ignore_index} would be read as class {mapping[ignore_index]}; "
                         "choose an ignore_index that no class is stored as")
    lut = np.full(256, -1, dtype=np.int16)
    lut[ignore_index] = IGNORE_INDEX
    for stored, train in mapping.items():
        lut[stored] = train
    return lut


def resolve_split(split: str, folders: Mapping[str, str], dataset: str) -> str:
    """The folder name of ``split`` (e.g. "train" → "training"); ValueError listing valid splits."""
    if split not in folders:
        raise ValueError(f"{dataset} has no split {split!r}; choose one of {sorted(folders)}")
    return folders[split]


def require_dir(path: Path, what: str) -> Path:
    """``path`` if it is a directory, else a FileNotFoundError saying what was expected there."""
    if not path.is_dir():
        raise FileNotFoundError(f"{what}: folder {path} not found")
    return path


def list_files(folder: Path, suffixes: Iterable[str], *, recursive: bool = False) -> list[Path]:
    """Sorted paths in ``folder`` whose name ends with one of ``suffixes``; error if none.

    A sub-folder or broken link named like a data file is listed too, so that the pre-flight
    check reports it as unreadable instead of it silently shrinking the dataset.
    """
    suffixes = tuple(suffixes)
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.name.endswith(suffixes))
    if not files:
        raise FileNotFoundError(f"no {'/'.join(suffixes)} files in {folder}: the split is empty")
    return files


@dataclass
class Pairing:
    """Images matched to their label files, and what did not match (:func:`match_files`)."""

    pairs: list[tuple[Path, Path]]
    shared: list[tuple[Path, Path, Path]]  # (image, another image of the same stem, the label both would use)
    missing: list[tuple[Path, Path]]  # (image, the label file expected for it)
    orphans: list[Path]  # label files without an image


def match_files(
    images: Sequence[Path], label_for: Callable[[Path], Path], label_files: Sequence[Path] | None = None
) -> Pairing:
    """Match every image to the label file ``label_for`` names; list every mismatch instead of raising."""
    owner: dict[Path, Path] = {}
    pairs, shared = [], []
    for image in images:
        label = label_for(image)
        if label in owner:
            shared.append((image, owner[label], label))
            continue
        owner[label] = image
        pairs.append((image, label))
    missing = [(image, label) for image, label in pairs if not label.exists()]
    orphans = sorted(set(label_files) - set(owner)) if label_files is not None else []
    return Pairing([pair for pair in pairs if pair not in missing], shared, missing, orphans)


def pair_files(
    images: Sequence[Path], label_for: Callable[[Path], Path], label_files: Sequence[Path] | None = None
) -> list[tuple[Path, Path]]:
    """(image, label) pairs, where ``label_for`` names each image's label file.

    Found at once, before any training, and never skipped (they mean the layout is wrong, e.g. a
    partially extracted archive): images without a label file, two images sharing one label
    (duplicate stems, e.g. ``a.jpg`` and ``a.png``) and, when ``label_files`` lists the label
    folder, label files without an image. Each error names the files.
    """
    pairing = match_files(images, label_for, label_files)
    if pairing.shared:
        image, other, label = pairing.shared[0]
        raise DataFileError(
            f"two images share the stem {image.stem!r}: {other} and {image} would both use the label "
            f"{label}; remove or rename one"
        )
    if pairing.missing:
        shown = "; ".join(f"{image} (expected {label})" for image, label in pairing.missing[:3])
        raise FileNotFoundError(f"{len(pairing.missing)} image(s) without a label file: {shown}")
    if pairing.orphans:
        shown = "; ".join(map(str, pairing.orphans[:3]))
        raise FileNotFoundError(f"{len(pairing.orphans)} label file(s) without an image: {shown}")
    return pairing.pairs


CONVERT_HINT = "run `isnet data check` on the dataset, and `isnet data convert` to write index masks"
LABEL_MODES = ("1", "L", "P", "I;16", "I;16L", "I;16B", "I")  # one channel of integers
_COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV")


def check_label_format(image: Image.Image, path: Path) -> None:
    """Refuse label files that cannot hold class indices exactly, from the header alone.

    Palette PNGs are index maps (their pixel values are the indices, whatever the colours);
    colour images and JPEGs (lossy: values change along region borders) are refused.
    """
    if image.format == "JPEG":
        raise DataFileError(
            f"{path}: label stored as JPEG, whose lossy compression changes class values along region "
            "borders; store labels as PNG"
        )
    if image.mode not in LABEL_MODES:
        kind = "a colour" if image.mode in _COLOUR_MODES else "an"
        raise DataFileError(
            f"{path}: label is {kind} {image.mode} image; expected an index map: one channel holding "
            f"class indices (PNG mode L, P or 16-bit); {CONVERT_HINT}"
        )


def label_size(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(height, width) of a label image as displayed, from its header; checks its format."""
    with open_image(path, max_pixels) as image:
        check_label_format(image, path)
        return displayed_size(image)


def read_label_png(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Decode a single-channel label image (mode L, P, 1 or 16-bit) to uint8 H×W stored values.

    16-bit labels are accepted when every value fits 0..255 and refused otherwise, rather than
    wrapped around into other classes.
    """
    with open_image(path, max_pixels) as image:
        check_label_format(image, path)
        label = np.asarray(decode_upright(image, path, "label"))
    if label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > 255):
            raise DataFileError(
                f"{path}: label values {label.min()}..{label.max()} do not fit 0..255 "
                f"(class indices and the ignore value); {CONVERT_HINT}"
            )
        label = label.astype(np.uint8)
    return label


def check_same_size(
    image_path: Path, image_shape: Sequence[int], label_path: Path, label_shape: Sequence[int]
) -> None:
    """Raise unless image and label (height, width) are equal as displayed, explaining an EXIF rotation."""
    if tuple(image_shape) == tuple(label_shape):
        return
    problem = (
        f"{image_path} is {image_shape[0]}×{image_shape[1]} (height×width) but its label {label_path} is "
        f"{label_shape[0]}×{label_shape[1]}"
    )
    try:
        with open_image(image_path, max_pixels=sys.maxsize) as image:
            orientation, stored = exif_orientation(image), image.size[::-1]
    except DataFileError:  # a stack Pillow cannot open (read by tifffile): no EXIF to explain the mismatch
        orientation, stored = 1, tuple(image_shape)
    if orientation != 1 and tuple(stored) == tuple(label_shape):
        problem += (
            f"; the image carries EXIF orientation {orientation}, which turns its stored {stored[0]}×{stored[1]} "
            "pixels on display, and images are used as displayed while the label matches the stored pixels: "
            "rotate the label, or remove the orientation tag from the image"
        )
    raise DataFileError(problem)


def _value_ranges(values: np.ndarray) -> str:
    """``[0, 1, 2, 5, 255]`` → ``"0..2, 5, 255"``."""
    runs: list[str] = []
    start = previous = None
    for value in [*map(int, values), None]:
        if value is not None and previous is not None and value == previous + 1:
            previous = value
            continue
        if start is not None:
            runs.append(str(start) if start == previous else f"{start}..{previous}")
        start = previous = value
    return ", ".join(runs)


def to_tensors(
    image: np.ndarray, label: np.ndarray, mean: Sequence[float] = IMAGE_MEAN, std: Sequence[float] = IMAGE_STD
) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised float32 C×H×W image (per-channel ``mean``, ``std``) and int64 H×W label, the model's input."""
    mean = np.asarray(mean, dtype=np.float32)
    std = np.asarray(std, dtype=np.float32)
    normalised = (image.astype(np.float32) - mean) / std
    image_tensor = torch.from_numpy(np.ascontiguousarray(normalised.transpose(2, 0, 1)))
    return image_tensor, torch.from_numpy(label.astype(np.int64))


class SegmentationDataset(Dataset):
    """Image/label file pairs read into ``{"image", "label", "path"}`` samples.

    Args:
        pairs: (image path, label path) for every sample, in a fixed order.
        info: class names and colours; ``info.num_classes`` bounds the training labels.
        lut: stored label value → training value (``label_lut``); -1 marks invalid values.
        transform: applied to the uint8 image and label before normalisation, e.g.
            ``isnet.data.train_transforms()``.

    Samples hold ``image`` (float32 3×H×W, normalised RGB), ``label`` (int64 H×W, classes
    0..K−1 and :data:`IGNORE_INDEX` = ignore, whatever the files store for it) and ``path`` (the image path). With fixed-size training crops the default
    ``DataLoader`` collate batches them; evaluation images differ in size, so evaluate with
    ``batch_size=1``.

    Images larger than ``max_pixels`` are refused (set the attribute to change the limit);
    ``check_sample`` checks a sample without training on it. Every file problem raises a
    :class:`DataFileError` whose message names the file.
    """

    max_pixels: int = MAX_IMAGE_PIXELS

    def __init__(
        self,
        pairs: Sequence[tuple[Path, Path]],
        info: DatasetInfo,
        lut: np.ndarray,
        transform: Transform | None = None,
    ) -> None:
        self.pairs = list(pairs)
        self.info = info
        self.lut = lut
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def read_stored_label(self, path: Path) -> np.ndarray:
        """The label file's stored values; readers with other formats override this."""
        return read_label_png(path, self.max_pixels)

    def stored_label_size(self, path: Path) -> tuple[int, int]:
        """(height, width) of a label file, as cheaply as its format allows (PNG: the header)."""
        return label_size(path, self.max_pixels)

    def read_image(self, path: Path) -> np.ndarray:
        """An image file as the model's input before normalisation: uint8 H×W×3 RGB, or for a record of
        C ≠ 3 channels H×W×C float32 stored values (:mod:`isnet.data.channels`)."""
        if self.info.in_channels == 3:
            return read_image(path, self.max_pixels)
        return read_channels(path, self.info.in_channels, self.max_pixels)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The image (uint8 H×W×3 RGB, see :meth:`read_image`) and training label (uint8 H×W), before any transform."""
        image_path, label_path = self.pairs[index]
        image = self.read_image(image_path)
        stored = self.read_stored_label(label_path)
        check_same_size(image_path, image.shape[:2], label_path, stored.shape)
        label = self.lut[stored]
        invalid = label < 0
        if invalid.any():
            values = np.unique(stored[invalid]).tolist()
            shown = values if len(values) <= 10 else [*values[:10], "..."]
            raise DataFileError(
                f"{label_path}: label values {shown} are not defined by {self.info.name} "
                f"(valid stored values: {_value_ranges(np.flatnonzero(self.lut >= 0))}); {CONVERT_HINT}"
            )
        return image, label.astype(np.uint8)

    def check_sample(self, index: int, *, full: bool = False) -> None:
        """Raise a :class:`DataFileError` naming the file if sample ``index`` cannot be used.

        Without ``full`` only the headers are read: both files open as images, are within the
        pixel limit, the label is an index map, and image and label are the same size. With
        ``full`` both are decoded and every label value is checked, as in training.
        """
        if full:
            self.load(index)
            return
        image_path, label_path = self.pairs[index]
        size = image_size if self.info.in_channels == 3 else channels_size
        image_shape = size(image_path, self.max_pixels)
        check_same_size(image_path, image_shape, label_path, self.stored_label_size(label_path))

    def subset(self, indices: Sequence[int]) -> SegmentationDataset:
        """A copy of this dataset holding only the samples at ``indices``."""
        kept = copy.copy(self)
        kept.pairs = [self.pairs[index] for index in indices]
        return kept

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self.load(index)
        if self.transform is not None:
            image, label = self.transform(image, label)
        image_tensor, label_tensor = to_tensors(image, label, self.info.mean, self.info.std)
        return {"image": image_tensor, "label": label_tensor, "path": str(self.pairs[index][0])}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.name}, {len(self)} samples)"

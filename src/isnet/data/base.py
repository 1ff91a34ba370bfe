"""The part every dataset reader shares: file pairing, decoding, label mapping, tensors.

A reader only has to say where its images and labels are and how its stored label values map
to training values; it does that by building a ``SegmentationDataset``. Every file problem
is raised with the file's path in the message, because a data error found deep inside a
training run is only fixable when it names the file.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from isnet.data.info import DatasetInfo

from isnet.data.image import MEAN as IMAGE_MEAN
from isnet.data.image import STD as IMAGE_STD
from isnet.data.image import read_image

IGNORE_INDEX = 255

Transform = Callable[[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]
"""(image uint8 H×W×3 RGB, label uint8 H×W) → the same, possibly resized or cropped."""


def label_lut(mapping: Mapping[int, int]) -> np.ndarray:
    """A 256-entry look-up table from stored label values to training values.

    Stored values absent from ``mapping`` become -1, which ``SegmentationDataset`` reports
    as an error: an unexpected value usually means the wrong annotation files were given.
    A stored 255 means "ignore" in every dataset unless ``mapping`` says otherwise.
    """
    lut = np.full(256, -1, dtype=np.int16)
    lut[IGNORE_INDEX] = IGNORE_INDEX
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
    """Sorted files in ``folder`` whose name ends with one of ``suffixes``; error if none."""
    suffixes = tuple(suffixes)
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.name.endswith(suffixes))
    if not files:
        raise FileNotFoundError(f"no {'/'.join(suffixes)} files in {folder}: the split is empty")
    return files


def pair_files(images: Sequence[Path], label_for: Callable[[Path], Path]) -> list[tuple[Path, Path]]:
    """(image, label) pairs, where ``label_for`` names each image's label file.

    Raises FileNotFoundError naming the first images whose label is missing, so that a
    partially extracted archive is found before training starts rather than mid-epoch.
    """
    pairs = [(image, label_for(image)) for image in images]
    missing = [(image, label) for image, label in pairs if not label.is_file()]
    if missing:
        shown = "; ".join(f"{image} (expected {label})" for image, label in missing[:3])
        raise FileNotFoundError(f"{len(missing)} image(s) without a label file: {shown}")
    return pairs


def read_label_png(path: Path) -> np.ndarray:
    """Decode a single-channel label image (mode L, P or 16-bit) to uint8 H×W stored values."""
    try:
        with Image.open(path) as label_image:
            label = np.asarray(label_image)
    except (OSError, ValueError) as error:
        raise OSError(f"cannot read label {path}: {error}") from error
    if label.ndim != 2:
        raise ValueError(f"label {path} has shape {label.shape}: expected one channel of class indices")
    if label.dtype != np.uint8:
        if label.min() < 0 or label.max() > 255:
            raise ValueError(f"label {path} has values outside 0..255")
        label = label.astype(np.uint8)
    return label


def to_tensors(image: np.ndarray, label: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised float32 3×H×W image and int64 H×W label, the model's input format."""
    mean = np.asarray(IMAGE_MEAN, dtype=np.float32)
    std = np.asarray(IMAGE_STD, dtype=np.float32)
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

    Samples hold ``image`` (float32 3×H×W, normalised RGB), ``label`` (int64 H×W, 255 =
    ignore) and ``path`` (the image path). With fixed-size training crops the default
    ``DataLoader`` collate batches them; evaluation images differ in size, so evaluate with
    ``batch_size=1``.
    """

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
        return read_label_png(path)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The image (uint8 H×W×3 RGB) and training label (uint8 H×W), before any transform."""
        image_path, label_path = self.pairs[index]
        image = read_image(image_path)
        stored = self.read_stored_label(label_path)
        if stored.shape != image.shape[:2]:
            raise ValueError(
                f"image {image_path} is {image.shape[0]}×{image.shape[1]} but its label "
                f"{label_path} is {stored.shape[0]}×{stored.shape[1]}"
            )
        label = self.lut[stored]
        invalid = label < 0
        if invalid.any():
            values = np.unique(stored[invalid]).tolist()
            raise ValueError(f"label {label_path} has values {values} that {self.info.name} does not define")
        return image, label.astype(np.uint8)

    def __getitem__(self, index: int) -> dict[str, Any]:
        image, label = self.load(index)
        if self.transform is not None:
            image, label = self.transform(image, label)
        image_tensor, label_tensor = to_tensors(image, label)
        return {"image": image_tensor, "label": label_tensor, "path": str(self.pairs[index][0])}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.info.name}, {len(self)} samples)"

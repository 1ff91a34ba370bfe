"""COCO-Stuff-10k (v1.1): 9k train / 1k test images with thing and stuff labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isnet.data.base import SegmentationDataset, Transform, label_lut, pair_files, read_label_png
from isnet.data.image import DataFileError
from isnet.data.base import require_dir, resolve_split
from isnet.data.info import COCO_STUFF, COCO_STUFF_171, COCO_STUFF_USED


def read_label_mat(path: Path) -> np.ndarray:
    """The ``S`` label map of a COCO-Stuff-10k ``.mat`` annotation (needs SciPy)."""
    try:
        from scipy.io import loadmat
    except ImportError as error:
        raise ImportError(
            f"reading {path} needs SciPy (pip install scipy); alternatively store the "
            "annotations as PNG files holding the same values (0 = unlabelled, k = label id k)"
        ) from error
    try:
        stored = np.asarray(loadmat(str(path))["S"])
    except Exception as error:  # SciPy raises many types for malformed files
        raise DataFileError(f"{path}: unreadable label: {type(error).__name__}: {error}") from None
    if stored.ndim != 2 or stored.min() < 0 or stored.max() > 255:
        raise DataFileError(f"{path}: label 'S' is not a 2-D map of values 0..255")
    return stored.astype(np.uint8)


class COCOStuff10kDataset(SegmentationDataset):
    """COCO-Stuff-10k with 182 label values (as the released ISNet models) or 171 classes.

    Layout::

        images/<name>.jpg
        annotations/<name>.mat      (or <name>.png with the same values)
        imageLists/{train,test}.txt one image name per line

    Stored values are 0 (unlabelled) and the COCO-Stuff label ids 1..182. With
    ``num_classes=182`` training labels are id − 1 (0..181; the 11 never-annotated thing
    ids keep their place). With ``num_classes=171`` they are renumbered to the 171 annotated
    classes, as most toolboxes do. Unlabelled pixels are ignored (255) in both.
    """

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        transform: Transform | None = None,
        *,
        num_classes: int = 182,
    ) -> None:
        if num_classes not in (182, 171):
            raise ValueError(f"COCO-Stuff-10k num_classes must be 182 or 171, got {num_classes}")
        root = require_dir(Path(root), "COCO-Stuff-10k root")
        folder = resolve_split(split, {"train": "train", "test": "test"}, "COCO-Stuff-10k")
        list_file = root / "imageLists" / f"{folder}.txt"
        if not list_file.is_file():
            raise FileNotFoundError(f"COCO-Stuff-10k split {split!r}: image list {list_file} not found")
        names = [Path(line.strip()).stem for line in list_file.read_text().splitlines() if line.strip()]
        if not names:
            raise FileNotFoundError(f"image list {list_file} is empty")
        image_dir = require_dir(root / "images", "COCO-Stuff-10k images")
        label_dir = require_dir(root / "annotations", "COCO-Stuff-10k annotations")
        images = [image_dir / f"{name}.jpg" for name in names]
        absent = [image for image in images if not image.is_file()]
        if absent:
            raise FileNotFoundError(
                f"{len(absent)} image(s) listed in {list_file} not found, e.g. {absent[0]}"
            )

        def label_for(image: Path) -> Path:
            mat = label_dir / f"{image.stem}.mat"
            png = label_dir / f"{image.stem}.png"
            return png if png.is_file() and not mat.is_file() else mat

        if num_classes == 182:
            info, mapping = COCO_STUFF, {k + 1: k for k in range(182)}
        else:
            info, mapping = COCO_STUFF_171, {k + 1: 255 for k in range(182)}
            mapping |= {stored + 1: train for train, stored in enumerate(COCO_STUFF_USED)}
        super().__init__(pair_files(images, label_for), info, label_lut({0: 255} | mapping), transform)

    def read_stored_label(self, path: Path) -> np.ndarray:
        return read_label_mat(path) if path.suffix == ".mat" else read_label_png(path, self.max_pixels)

    def stored_label_size(self, path: Path) -> tuple[int, int]:
        return read_label_mat(path).shape if path.suffix == ".mat" else super().stored_label_size(path)

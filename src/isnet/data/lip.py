"""LIP (Look Into Person) single-person human parsing."""

from __future__ import annotations

from pathlib import Path

from isnet.data.base import SegmentationDataset, Transform, label_lut, list_files, pair_files
from isnet.data.base import require_dir, resolve_split
from isnet.data.info import LIP


class LIPDataset(SegmentationDataset):
    """LIP human parsing, 20 classes (background and 19 parts), labels stored as 0..19.

    Two layouts are accepted, the official archives extracted in ``root``::

        TrainVal_images/{train,val}_images/*.jpg
        TrainVal_parsing_annotations/{train,val}_segmentations/*.png

    or the same folders moved directly under ``root`` (``train_images/``,
    ``train_segmentations/``, ...), as many toolboxes store them. The official layout is
    used whenever ``root/TrainVal_images`` exists.
    """

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None) -> None:
        root = require_dir(Path(root), "LIP root")
        folder = resolve_split(split, {"train": "train", "val": "val"}, "LIP")
        image_parent, label_parent = root, root
        if (root / "TrainVal_images").is_dir():
            image_parent = root / "TrainVal_images"
            label_parent = root / "TrainVal_parsing_annotations"
        image_dir = require_dir(image_parent / f"{folder}_images", f"LIP split {split!r} images")
        label_dir = require_dir(label_parent / f"{folder}_segmentations", f"LIP split {split!r} labels")
        labels = list_files(label_dir, (".png",))
        pairs = pair_files(list_files(image_dir, (".jpg",)), lambda image: label_dir / f"{image.stem}.png", labels)
        super().__init__(pairs, LIP, label_lut({k: k for k in range(LIP.num_classes)}), transform)

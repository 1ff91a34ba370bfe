"""ADE20K (SceneParsing challenge release, ``ADEChallengeData2016``)."""

from __future__ import annotations

from pathlib import Path

from isnet.data.base import SegmentationDataset, Transform, label_lut, list_files, pair_files
from isnet.data.base import require_dir, resolve_split
from isnet.data.info import ADE20K

_SPLITS = {"train": "training", "val": "validation", "training": "training", "validation": "validation"}


class ADE20KDataset(SegmentationDataset):
    """ADE20K scene parsing, 150 classes.

    Layout (``root`` is ``ADEChallengeData2016`` or its parent)::

        images/{training,validation}/*.jpg
        annotations/{training,validation}/*.png    same stem as the image

    Stored labels are 0 (unlabelled) and 1..150; training labels are 0..149 with the
    unlabelled pixels ignored (255), as in the released models.
    """

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None) -> None:
        root = require_dir(Path(root), "ADE20K root")
        if (root / "ADEChallengeData2016").is_dir():
            root = root / "ADEChallengeData2016"
        folder = resolve_split(split, _SPLITS, "ADE20K")
        image_dir = require_dir(root / "images" / folder, f"ADE20K split {split!r} images")
        label_dir = require_dir(root / "annotations" / folder, f"ADE20K split {split!r} annotations")
        labels = list_files(label_dir, (".png",))
        pairs = pair_files(list_files(image_dir, (".jpg",)), lambda image: label_dir / f"{image.stem}.png", labels)
        lut = label_lut({0: 255, **{k: k - 1 for k in range(1, ADE20K.num_classes + 1)}})
        super().__init__(pairs, ADE20K, lut, transform)

"""CamVid, 11-class 360×480 version (the SegNet release)."""

from __future__ import annotations

from pathlib import Path

from isnet.data.base import SegmentationDataset, Transform, label_lut, list_files, pair_files
from isnet.data.base import require_dir
from isnet.data.info import CAMVID

UNLABELLED = 11


class CamVidDataset(SegmentationDataset):
    """CamVid driving frames, 11 classes; stored value 11 ("Unlabelled") is ignored.

    Layout::

        images/<split>/*.jpg
        annotations/<split>/*.png    same stem as the image

    Any folder under ``images/`` is a split (usually ``train``, ``val``, ``test``).
    """

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None) -> None:
        root = require_dir(Path(root), "CamVid root")
        image_dir = require_dir(root / "images" / split, f"CamVid split {split!r} images")
        label_dir = require_dir(root / "annotations" / split, f"CamVid split {split!r} annotations")
        images = list_files(image_dir, (".jpg", ".png"))
        pairs = pair_files(images, lambda image: label_dir / f"{image.stem}.png", list_files(label_dir, (".png",)))
        lut = label_lut({k: k for k in range(CAMVID.num_classes)} | {UNLABELLED: 255})
        super().__init__(pairs, CAMVID, lut, transform)

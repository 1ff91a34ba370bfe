"""Cityscapes, fine annotations, evaluated on the 19 "trainId" classes."""

from __future__ import annotations

from pathlib import Path

from isnet.data.base import SegmentationDataset, Transform, label_lut, list_files, pair_files
from isnet.data.base import require_dir, resolve_split
from isnet.data.info import CITYSCAPES

# labelId → trainId for the 19 evaluated classes (cityscapesScripts' labels.py); the other
# 15 ids of 0..33 (void, parking, rail track, guard rail, bridge, tunnel, polegroup,
# caravan, trailer, ...) are ignored.
LABEL_ID_TO_TRAIN_ID = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9,
    23: 10, 24: 11, 25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18,
}
_IMAGE_SUFFIX = "_leftImg8bit.png"
_LABEL_SUFFIX = "_gtFine_labelIds.png"


class CityscapesDataset(SegmentationDataset):
    """Cityscapes street scenes, 19 classes.

    Layout::

        leftImg8bit/{train,val,test}/<city>/<name>_leftImg8bit.png
        gtFine/{train,val,test}/<city>/<name>_gtFine_labelIds.png

    The ``labelIds`` files are read and mapped with the official id → trainId table, so no
    preprocessing script is needed; ids outside the 19 classes become 255.
    """

    def __init__(self, root: str | Path, split: str = "train", transform: Transform | None = None) -> None:
        root = require_dir(Path(root), "Cityscapes root")
        folder = resolve_split(split, {"train": "train", "val": "val", "test": "test"}, "Cityscapes")
        image_dir = require_dir(root / "leftImg8bit" / folder, f"Cityscapes split {split!r} images")
        label_dir = require_dir(root / "gtFine" / folder, f"Cityscapes split {split!r} labels")

        def label_for(image: Path) -> Path:
            name = image.name.removesuffix(_IMAGE_SUFFIX) + _LABEL_SUFFIX
            return label_dir / image.parent.name / name

        images = list_files(image_dir, (_IMAGE_SUFFIX,), recursive=True)
        pairs = pair_files(images, label_for, list_files(label_dir, (_LABEL_SUFFIX,), recursive=True))
        lut = label_lut({label_id: 255 for label_id in range(34)} | LABEL_ID_TO_TRAIN_ID)
        super().__init__(pairs, CITYSCAPES, lut, transform)

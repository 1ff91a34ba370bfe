"""Datasets, class metadata and augmentation pipelines.

Readers return ``{"image": float32 3×H×W normalised RGB (C×H×W for a record of C channels), "label": int64 H×W (255 = ignore),
"path": str}`` samples; ``train_transforms()`` / ``eval_transforms()`` plug into their
``transform`` argument.
"""

from isnet.data.ade20k import ADE20KDataset
from isnet.data.base import (
    IGNORE_INDEX,
    IMAGE_MEAN,
    IMAGE_STD,
    SegmentationDataset,
    Transform,
    read_image,
    to_tensors,
)
from isnet.data.camvid import CamVidDataset
from isnet.data.cityscapes import LABEL_ID_TO_TRAIN_ID, CityscapesDataset
from isnet.data.coco_stuff import COCOStuff10kDataset
from isnet.data.folder import FolderDataset
from isnet.data.image import DataFileError, ImageReadError
from isnet.data.info import (
    ADE20K,
    CAMVID,
    CITYSCAPES,
    COCO_STUFF,
    COCO_STUFF_171,
    COCO_STUFF_UNUSED,
    COCO_STUFF_USED,
    DATASETS,
    LIP,
    DatasetInfo,
    Schedule,
    TestProtocol,
    TrainingDefaults,
    make_palette,
)
from isnet.data.lip import LIPDataset
from isnet.data.augmentation import Augmentation, lip_train_transforms, train_transforms, training_transforms
from isnet.data.transforms import eval_transforms, evaluation_transforms, lip_eval_transforms

# The reader of each dataset record; "folder" (FolderDataset) is the reader of any other layout.
READERS: dict[str, type[SegmentationDataset]] = {
    ADE20K.name: ADE20KDataset,
    CITYSCAPES.name: CityscapesDataset,
    COCO_STUFF.name: COCOStuff10kDataset,
    LIP.name: LIPDataset,
    CAMVID.name: CamVidDataset,
}
DATASET_NAMES = (*READERS, "folder")


def open_dataset(name: str, root: str, split: str, transform: Transform | None = None) -> SegmentationDataset:
    """The ``split`` of dataset ``name`` (one of :data:`DATASET_NAMES`) stored under ``root``.

    A folder dataset keeps images in ``images/<split>``, masks in ``masks/<split>`` and its
    class names in ``classes.txt``.
    """
    if name == "folder":
        return FolderDataset(root, images_dir=f"images/{split}", masks_dir=f"masks/{split}", transform=transform)
    if name not in READERS:
        raise ValueError(f"unknown dataset {name!r}: expected one of {', '.join(DATASET_NAMES)}")
    return READERS[name](root, split, transform)


__all__ = [
    "DATASETS",
    "DATASET_NAMES",
    "READERS",
    "Schedule",
    "TestProtocol",
    "TrainingDefaults",
    "open_dataset",
    "ADE20K",
    "Augmentation",
    "ADE20KDataset",
    "CAMVID",
    "CITYSCAPES",
    "COCO_STUFF",
    "COCO_STUFF_171",
    "COCO_STUFF_UNUSED",
    "COCO_STUFF_USED",
    "COCOStuff10kDataset",
    "CamVidDataset",
    "CityscapesDataset",
    "DataFileError",
    "DatasetInfo",
    "FolderDataset",
    "IGNORE_INDEX",
    "IMAGE_MEAN",
    "IMAGE_STD",
    "ImageReadError",
    "LABEL_ID_TO_TRAIN_ID",
    "LIP",
    "LIPDataset",
    "SegmentationDataset",
    "Transform",
    "eval_transforms",
    "evaluation_transforms",
    "lip_eval_transforms",
    "lip_train_transforms",
    "make_palette",
    "read_image",
    "to_tensors",
    "train_transforms",
    "training_transforms",
]

"""A user's own data: a folder of images and a folder of index-map masks."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from isnet.data.base import (
    SegmentationDataset,
    Transform,
    label_lut,
    list_files,
    pair_files,
    require_dir,
)
from isnet.data.image import IMAGE_SUFFIXES, DataFileError
from isnet.data.info import RGB, DatasetInfo, make_palette


def read_class_names(path: Path) -> tuple[str, ...]:
    """Class names from a UTF-8 text file, one per line in label order; blank lines are skipped."""
    if not path.is_file():
        raise FileNotFoundError(f"no class list given and {path} not found (one class name per line)")
    try:
        text = path.read_text(encoding="utf-8-sig")  # a byte-order mark, as some editors write, is dropped
    except UnicodeDecodeError as error:
        line = path.read_bytes()[: error.start].count(b"\n") + 1
        raise DataFileError(
            f"{path}: not UTF-8 text (byte 0x{error.object[error.start]:02x} on line {line}); save the class "
            "list as UTF-8"
        ) from None
    except OSError as error:
        raise DataFileError(f"{path}: unreadable class list: {error.strerror or error}") from None
    names = tuple(line.strip() for line in text.splitlines() if line.strip())
    if not names:
        raise DataFileError(f"{path}: the class list is empty (one class name per line)")
    return names


FOLDER_RECORD = "dataset.json"


def record_file(root: str | Path) -> Path:
    """The file a folder dataset's record is read from: ``dataset.json`` when there is one, else ``classes.txt``."""
    root = Path(root)
    return root / FOLDER_RECORD if (root / FOLDER_RECORD).is_file() else root / "classes.txt"


def folder_record(root: str | Path, name: str = "folder") -> DatasetInfo:
    """The record of a folder dataset: ``dataset.json`` when the folder has one, else ``classes.txt``.

    ``dataset.json`` is a dataset record as checkpoints carry it (:meth:`DatasetInfo.to_json`:
    at least ``name``, ``classes`` and ``palette``; optionally ``test`` with ``fit_size`` or
    ``resize_to``, and ``mean`` / ``std`` per image channel: a length other than 3 makes a
    multi-channel dataset, read by :mod:`isnet.data.channels`). With only ``classes.txt``, colours are generated and images are tested as
    they are: a folder's protocol never comes from another dataset.
    """
    path = record_file(root)
    if path.name == FOLDER_RECORD:
        try:
            return DatasetInfo.from_json(path.read_bytes().decode("utf-8"))
        except UnicodeDecodeError as error:
            raise DataFileError(f"{path}: not a dataset record: not UTF-8 text (byte 0x{error.object[error.start]:02x} "
                                f"at offset {error.start})") from None
        except (ValueError, TypeError, KeyError, AttributeError) as error:  # JSON, or a record's rules
            raise DataFileError(f"{path}: not a usable dataset record: {error}") from None
    classes = read_class_names(path)
    try:
        return DatasetInfo(name=name, classes=classes, palette=make_palette(len(classes)))
    except ValueError as error:
        raise DataFileError(f"{path}: not a usable class list: {error}") from None


class FolderDataset(SegmentationDataset):
    """Images in ``root/images_dir``, masks in ``root/masks_dir``, paired by file stem.

    A mask is a single-channel PNG (``<stem><mask_suffix>``) whose pixel values are class
    indices 0..N−1, with the record's ``ignore_index`` (255 unless ``dataset.json`` says otherwise)
    for unlabelled pixels; samples carry :data:`~isnet.data.base.IGNORE_INDEX` there. ``classes`` names the N classes; when omitted they are
    read from ``root/dataset.json`` or ``root/classes.txt`` (:func:`folder_record`). With
    ``reduce_zero_label`` the stored value 0 is ignored
    and 1..N become 0..N−1 (for masks where 0 means "unlabelled", as in ADE20K). Splits are
    just different folders, e.g. ``images_dir="images/train"``.
    """

    def __init__(
        self,
        root: str | Path,
        classes: Sequence[str] | None = None,
        images_dir: str = "images",
        masks_dir: str = "masks",
        transform: Transform | None = None,
        *,
        palette: Sequence[RGB] | None = None,
        mask_suffix: str = ".png",
        reduce_zero_label: bool = False,
        name: str = "folder",
    ) -> None:
        root = require_dir(Path(root), f"{name} root")
        if classes is None:
            info = folder_record(root, name)
        else:
            classes = tuple(classes)
            palette = tuple(palette) if palette is not None else make_palette(len(classes))
            info = DatasetInfo(name=name, classes=classes, palette=palette)
        classes = info.classes
        if not 0 < len(classes) + reduce_zero_label <= 255:
            raise ValueError(f"{name}: {len(classes)} classes do not fit below the ignore value 255")

        image_dir = require_dir(root / images_dir, f"{name} images")
        mask_dir = require_dir(root / masks_dir, f"{name} masks")
        images = list_files(image_dir, IMAGE_SUFFIXES)
        masks = list_files(mask_dir, (mask_suffix,))
        pairs = pair_files(images, lambda image: mask_dir / f"{image.stem}{mask_suffix}", masks)

        if reduce_zero_label:
            mapping = {0: 255} | {k: k - 1 for k in range(1, len(classes) + 1)}
        else:
            mapping = {k: k for k in range(len(classes))}
        try:
            lut = label_lut(mapping, info.ignore_index)
        except ValueError as error:  # reduce_zero_label reads the stored ignore value as a class
            raise ValueError(f"{name}: {error}") from None
        super().__init__(pairs, info, lut, transform)

"""What the dataset doctor (:mod:`isnet.data.doctor`) reads: a dataset's files, once.

:func:`scan` pairs images with masks (as the readers do, but listing every problem instead of
stopping at the first), inspects each image's header and decodes each mask
(:mod:`isnet.data.file_inspection`), and counts the pixels of every class in every split.

A folder dataset is ``images/<split>`` and ``masks/<split>`` (or ``images/`` and ``masks/``
without splits) with ``classes.txt`` or ``dataset.json``; a named dataset (``camvid``,
``ade20k``, ...) is read through its own reader, so its label mapping applies.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isnet.data.base import IGNORE_INDEX, Pairing, SegmentationDataset, label_lut, match_files
from isnet.data.channels import read_channels
from isnet.data.file_inspection import COLOUR, INDEX, ImageInfo, MaskInfo, inspect_image, inspect_mask, value_counts
from isnet.data.folder import FOLDER_RECORD, folder_record
from isnet.data.image import IMAGE_SUFFIXES, DataFileError
from isnet.data.info import RGB, DatasetInfo

MASK_FOLDERS = ("masks", "labels", "annotations", "gt")  # where people keep masks; the folder layout reads masks/
UNSPLIT = ""  # the split of images/ and masks/ without split folders


@dataclass
class Finding:
    """One problem: how bad (``error``: training would fail or be silently wrong; ``warning``; ``note``),
    what it is, what to do, and the files concerned (a few named, all counted)."""

    severity: str
    problem: str
    action: str
    files: list[str] = field(default_factory=list)
    count: int = 0


@dataclass
class SplitScan:
    """What one split holds: its file pairs, what pairing left out, and per-class pixel counts."""

    name: str
    image_dir: Path
    mask_dir: Path
    pairing: Pairing | None = None
    images: int = 0
    pixels: np.ndarray | None = None  # (K,) pixels of each class
    images_with: np.ndarray | None = None  # (K,) images each class appears in
    pixels_of_images_with: np.ndarray | None = None  # (K,) for median frequency balancing
    ignored: int = 0  # pixels of the ignore value
    reader: SegmentationDataset | None = None  # a named dataset's reader, for labels that are not images (.mat)


@dataclass
class Diagnosis:
    """Everything :func:`scan` saw, and the findings :func:`isnet.data.doctor.diagnose` adds."""

    root: Path
    dataset: str
    record: DatasetInfo | None
    splits: list[SplitScan] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    mask_folder: str = "masks"
    images: list[ImageInfo] = field(default_factory=list)
    masks: list[MaskInfo] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    size_mismatches: list[str] = field(default_factory=list)
    exif_mismatches: list[str] = field(default_factory=list)  # masks matching an image's stored, not displayed, pixels
    invalid: dict[int, list[str]] = field(default_factory=dict)  # stored value outside the classes → files
    reader_errors: list[str] = field(default_factory=list)  # a named dataset's reader refused the layout
    unusable: set[Path] = field(default_factory=set)  # images of pairs that cannot be read or do not line up
    channel_mean: tuple[float, ...] | None = None  # measured on the training images when channels ≠ 3 are at stake
    channel_std: tuple[float, ...] | None = None

    @property
    def ok(self) -> bool:
        """No finding that would make training fail or go silently wrong."""
        return not any(finding.severity == "error" for finding in self.findings)

    @property
    def values(self) -> Counter:
        """Pixels of each stored value over every mask that is not colour-coded."""
        return sum((Counter(mask.values) for mask in self.masks), Counter())

    @property
    def colours(self) -> Counter:
        """Pixels of each colour over the colour-coded masks."""
        return sum((Counter(mask.colours) for mask in self.masks), Counter())

    @property
    def binary_0_255(self) -> bool:
        """Every mask holds only 0 and 255 (255 somewhere): a binary mask that the readers would read as
        background and ignore."""
        values = set(self.values)
        return bool(self.masks) and values == {0, 255} and not any(m.encoding == COLOUR for m in self.masks)

    @property
    def train_split(self) -> SplitScan | None:
        """The split a model is trained on: ``train`` (or the unsplit folder), else the first."""
        by_name = {split.name: split for split in self.splits}
        return by_name.get("train", by_name.get(UNSPLIT, self.splits[0] if self.splits else None))


def _files(folder: Path) -> list[Path]:
    """Image-format files of ``folder``, sorted (empty when the folder is missing)."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)


def _mask_folder(root: Path) -> str:
    return next((name for name in MASK_FOLDERS if (root / name).is_dir()), "masks")


def folder_splits(root: Path, mask_folder: str = "masks") -> list[SplitScan]:
    """The splits of a folder dataset: the folders of ``images/``, or ``images/`` itself when it holds the images."""
    images = root / "images"
    if not images.is_dir():
        raise FileNotFoundError(f"{root}: no images/ folder (a folder dataset keeps images in images/<split> "
                                "and masks in masks/<split>)")
    folders = sorted(folder for folder in images.iterdir() if folder.is_dir())
    if not folders or _files(images):
        return [SplitScan(UNSPLIT, images, root / mask_folder)]
    return [SplitScan(folder.name, folder, root / mask_folder / folder.name) for folder in folders]


def pair_folder_split(split: SplitScan) -> Pairing:
    """Images and masks of one split, by stem; a mask of another suffix than .png is paired too (and reported)."""
    masks = _files(split.mask_dir)
    by_stem: dict[str, Path] = {}
    for mask in masks:
        if mask.stem not in by_stem or mask.suffix == ".png":
            by_stem[mask.stem] = mask
    return match_files(_files(split.image_dir), lambda image: by_stem.get(image.stem, split.mask_dir / f"{image.stem}.png"),
                       masks)


def _folder_record(root: Path) -> tuple[DatasetInfo | None, str | None]:
    """The folder's record, or None and why not."""
    try:
        return folder_record(root), None
    except FileNotFoundError:
        return None, f"{root}: no classes.txt or {FOLDER_RECORD}: the class names (and so the number of classes) are unknown"
    except (ValueError, OSError) as error:
        return None, str(error)


def _named_splits(root: Path, dataset: str, diagnosis: Diagnosis) -> tuple[list[SplitScan], dict[str, np.ndarray]]:
    """The splits of a named dataset as its reader pairs them, and each split's label mapping."""
    from isnet.data import open_dataset

    training = diagnosis.record.training
    names = (training.train_split, training.val_split) if training is not None else ("train", "val")
    splits, luts = [], {}
    for name in dict.fromkeys(names):
        try:
            reader = open_dataset(dataset, str(root), name)
        except (OSError, ValueError) as error:
            diagnosis.reader_errors.append(f"{name}: {error}")
            continue
        split = SplitScan(name, root, root, reader=reader)
        split.pairing = Pairing(list(reader.pairs), [], [], [])
        splits.append(split)
        luts[name] = reader.lut
    return splits, luts


def scan(root: str | Path, dataset: str = "folder", *, progress: bool = False) -> Diagnosis:
    """Read every file of the dataset at ``root`` once and return what was found (findings not yet added)."""
    from isnet.data import DATASETS

    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such folder")
    if dataset == "folder":
        record, problem = _folder_record(root)
        diagnosis = Diagnosis(root, dataset, record, mask_folder=_mask_folder(root))
        if problem:
            diagnosis.reader_errors.append(problem)
        diagnosis.splits = folder_splits(root, diagnosis.mask_folder)
        for split in diagnosis.splits:
            split.pairing = pair_folder_split(split)
        lut = label_lut({k: k for k in range(record.num_classes)}, record.ignore_index) if record is not None else None
        luts = {split.name: lut for split in diagnosis.splits}
    else:
        diagnosis = Diagnosis(root, dataset, DATASETS[dataset])
        diagnosis.splits, luts = _named_splits(root, dataset, diagnosis)
    for split in diagnosis.splits:
        _scan_split(diagnosis, split, luts[split.name], progress)
    _measure_channels(diagnosis, progress)
    return diagnosis


def _scan_split(diagnosis: Diagnosis, split: SplitScan, lut: np.ndarray | None, progress: bool) -> None:
    """Inspect every pair of ``split``: headers, sizes, encodings, and (with a label mapping) class counts."""
    pairs = split.pairing.pairs
    split.images = len(pairs) + len(split.pairing.missing) + len(split.pairing.shared)
    num_classes = diagnosis.record.num_classes if diagnosis.record is not None else 0
    split.pixels, split.images_with, split.pixels_of_images_with = (np.zeros(num_classes, np.int64) for _ in range(3))
    if progress:
        from isnet.utils.progress import progress_bar

        pairs = progress_bar(pairs, desc=f"check {split.name or 'images'}", leave=False)
    for image_path, mask_path in pairs:
        try:
            image = inspect_image(image_path)
            if split.reader is not None and mask_path.suffix.lower() not in IMAGE_SUFFIXES:
                stored = split.reader.read_stored_label(mask_path)
                mask = MaskInfo(mask_path, INDEX, stored.shape, values=value_counts(stored))
            else:
                mask = inspect_mask(mask_path)
        except DataFileError as error:
            diagnosis.unreadable.append(str(error))
            diagnosis.unusable.add(image_path)
            continue
        diagnosis.images.append(image)
        diagnosis.masks.append(mask)
        if image.shape != mask.shape:
            sizes = (f"{image_path} is {image.shape[0]}×{image.shape[1]}, its mask {mask_path} "
                     f"{mask.shape[0]}×{mask.shape[1]}")
            stored_match = image.orientation in (5, 6, 7, 8) and mask.shape == image.stored_shape
            (diagnosis.exif_mismatches if stored_match else diagnosis.size_mismatches).append(sizes)
            if not stored_match:
                diagnosis.unusable.add(image_path)
        if lut is not None and mask.encoding != COLOUR:
            _count_classes(diagnosis, split, mask, lut, num_classes)


def _count_classes(diagnosis: Diagnosis, split: SplitScan, mask: MaskInfo, lut: np.ndarray, num_classes: int) -> None:
    counts = np.zeros(num_classes, np.int64)
    for value, pixels in mask.values.items():
        train = int(lut[value]) if 0 <= value < len(lut) else -1
        if train < 0:
            diagnosis.invalid.setdefault(value, []).append(str(mask.path))
        elif train == IGNORE_INDEX:  # the record's stored ignore value, and any other the reader ignores
            split.ignored += pixels
        else:
            counts[train] += pixels
    split.pixels += counts
    split.images_with += counts > 0
    split.pixels_of_images_with += (counts > 0) * int(counts.sum())


def _measure_channels(diagnosis: Diagnosis, progress: bool) -> None:
    """Per-channel mean and std of the training images, where a channel count other than 3 is at stake:
    the record says so, or images have channels that RGB reading cannot take (stacks Pillow cannot open)."""
    record_channels = diagnosis.record.in_channels if diagnosis.record is not None else 3
    stacks = Counter(image.channels for image in diagnosis.images if image.mode == "stack")
    channels = record_channels if record_channels != 3 else (stacks.most_common(1)[0][0] if stacks else 3)
    train = diagnosis.train_split
    if channels == 3 or train is None:
        return
    paths = [image.path for image in diagnosis.images if image.channels == channels
             and image.path.parent == train.image_dir]
    if progress:
        from isnet.utils.progress import progress_bar

        paths = progress_bar(paths, desc="channel statistics", leave=False)
    total = np.zeros(channels)
    squares = np.zeros(channels)
    count = 0
    for path in paths:
        try:
            values = read_channels(path, channels).reshape(-1, channels).astype(np.float64)
        except DataFileError as error:
            diagnosis.unreadable.append(str(error))
            continue
        total += values.sum(axis=0)
        squares += (values**2).sum(axis=0)
        count += len(values)
    if count:
        mean = total / count
        diagnosis.channel_mean = tuple(round(float(m), 3) for m in mean)
        diagnosis.channel_std = tuple(round(float(s), 3) for s in np.sqrt(np.maximum(squares / count - mean**2, 0)))


def given_palette(d: Diagnosis) -> DatasetInfo | None:
    """The record when its palette was given (a folder's dataset.json, a named dataset's record); None when
    its colours were only generated for the names of a classes.txt, which must never map a mask's colours."""
    if d.record is None or (d.dataset == "folder" and not (d.root / FOLDER_RECORD).is_file()):
        return None
    return d.record


def colours_found(d: Diagnosis, shown: int = 12) -> str:
    """The colours of the RGB masks, most pixels first, with their pixel counts: for the user to confirm."""
    counted = d.colours.most_common()
    text = ", ".join(f"{colour} {pixels:,} px" for colour, pixels in counted[:shown])
    return text + (f", ... ({len(counted)} colours)" if len(counted) > shown else "")


def colour_table(record: DatasetInfo | None) -> dict[RGB, int]:
    """Colour → class index of a record's palette."""
    return {tuple(colour): index for index, colour in enumerate(record.palette)} if record is not None else {}

"""What every annotation tool's export becomes before it is written: classes, images and their shapes.

A reader (one module per tool in this package) turns an export into an :class:`Export`: the
class names in label order (0 is ``background`` where the tool leaves pixels unlabelled), the
colours where the tool keeps them, and one :class:`Sample` per image with a function that
paints its index mask. :func:`write_folder_dataset` writes the folder dataset the readers take.

Overlapping shapes: painted in the order the tool keeps them (CVAT's ``z_order`` first), a
later shape over an earlier one ("later on top", as the tools draw them). Every overlap of
two classes is reported by image and class names; overlaps of one class change nothing.

Polygons are rasterised by pycocotools (``frPyObjects`` + ``decode``), the rule COCO's own
tools and datumaro use, so one polygon is the same mask whichever tool it came from.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from isnet.data.image import DataFileError
from isnet.data.info import RGB, DatasetInfo, make_palette
from isnet.utils.atomic_files import atomic_directory

IGNORE = 255
BACKGROUND = "background"


class ExportError(DataFileError):
    """An annotation export that cannot be read: the message names the file and the problem."""


@dataclass
class Shape:
    """One labelled region: a class index and a boolean mask of the image's size (or a painter of one)."""

    label: int
    mask: np.ndarray  # (H, W) bool


@dataclass
class Sample:
    """One image of an export: where its pixels are, its size, and a function returning its shapes in paint order."""

    image: Path
    name: str  # the image's name in the export, for messages
    height: int
    width: int
    shapes: Callable[[], list[Shape]]
    split: str = "train"
    base: np.ndarray | None = None  # a mask the tool stored whole (VOC, CVAT masks); shapes paint over it


@dataclass
class Export:
    """An annotation tool's export: class names (label order), colours where known, the images, the problems found."""

    source: Path
    classes: list[str]
    samples: list[Sample]
    palette: list[RGB] | None = None
    problems: list[str] = field(default_factory=list)  # images left out, by name, with why
    notes: list[str] = field(default_factory=list)  # what was done that a user should know (overlaps)


def read_json(path: Path):
    """A JSON file's content, or an :class:`ExportError` naming the file and the problem."""
    import json

    try:
        return json.loads(path.read_text(encoding="utf-8-sig"))
    except OSError as error:
        raise ExportError(f"{path}: unreadable: {error.strerror or error}") from None
    except UnicodeDecodeError:
        raise ExportError(f"{path}: not UTF-8 text (not a JSON export?)") from None
    except ValueError as error:
        raise ExportError(f"{path}: not valid JSON: {error}") from None


def require(condition: bool, path: Path, problem: str) -> None:
    """Raise an :class:`ExportError` ``"<path>: <problem>"`` unless ``condition``."""
    if not condition:
        raise ExportError(f"{path}: {problem}")


def polygon_mask(points: Sequence[float], height: int, width: int) -> np.ndarray:
    """A polygon ``x0, y0, x1, y1, ...`` (pixel coordinates) as a (H, W) bool mask, rasterised by pycocotools."""
    from pycocotools import mask as coco_mask

    flat = [float(value) for value in points]
    if len(flat) < 6:  # fewer than three corners cover no area
        return np.zeros((height, width), bool)
    rle = coco_mask.frPyObjects([flat], height, width)
    return coco_mask.decode(rle)[..., 0].astype(bool)


def rectangle_mask(x0: float, y0: float, x1: float, y1: float, height: int, width: int) -> np.ndarray:
    """An axis-aligned rectangle between two corners, rasterised as the polygon of its four corners."""
    return polygon_mask([x0, y0, x1, y0, x1, y1, x0, y1], height, width)


def paint(sample: Sample, classes: Sequence[str]) -> tuple[np.ndarray, list[str]]:
    """The (H, W) uint8 index mask of ``sample`` (0 where nothing is painted) and one note per pair of classes overlapping."""
    labels = np.zeros((sample.height, sample.width), np.uint8) if sample.base is None else sample.base.copy()
    painted = np.zeros(labels.shape, bool) if sample.base is None else sample.base != 0
    overlaps: dict[tuple[int, int], int] = {}
    for shape in sample.shapes():
        if shape.mask.shape != labels.shape:
            raise ExportError(f"{sample.name}: a {classes[shape.label]!r} mask of {shape.mask.shape[1]}×"
                              f"{shape.mask.shape[0]} on an image of {sample.width}×{sample.height}")
        covered = shape.mask & painted
        if covered.any():
            for under in np.unique(labels[covered]):
                if int(under) != shape.label:
                    key = (int(under), shape.label)
                    overlaps[key] = overlaps.get(key, 0) + int((labels[covered] == under).sum())
        labels[shape.mask] = shape.label
        painted |= shape.mask
    notes = [f"{sample.name}: {classes[shape_label]!r} painted over {classes[under]!r} on {count} pixel(s) "
             "(later on top)" for (under, shape_label), count in sorted(overlaps.items())]
    return labels, notes


def dataset_record(export: Export) -> DatasetInfo:
    """The ``dataset.json`` record of an export: its classes, its colours (generated where it has none)."""
    palette = list(export.palette) if export.palette else list(make_palette(len(export.classes)))
    return DatasetInfo(name=export.source.stem or "converted", classes=tuple(export.classes), palette=tuple(palette),
                       label_mapping="stored value k is class k; 255 is ignored (converted from an annotation export)")


def check_output_folder(source: Path, output: Path) -> None:
    """``output`` must be new (or an empty folder) and outside ``source``: the export is never changed."""
    source_folder = source.resolve() if source.is_dir() else source.resolve().parent
    target = output.resolve()
    if target == source_folder or target in source_folder.parents:
        raise ValueError(f"{output}: the dataset must go to a new folder, not one holding the export {source}")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"{output}: already exists and is not an empty folder; name a new folder for the dataset")


def write_folder_dataset(export: Export, output: Path) -> tuple[int, list[str]]:
    """Write ``images/<split>``, ``masks/<split>/<stem>.png``, ``dataset.json`` and ``classes.txt`` to ``output``.

    Built in a new hidden folder beside ``output`` and renamed to it when complete, so a failure
    (a malformed shape half-way, a full disk) leaves nothing. Returns the pairs written and the
    overlap notes.
    """
    from isnet.utils.visualize import label_image

    record = dataset_record(export)
    notes: list[str] = []
    stems: dict[tuple[str, str], str] = {}
    with atomic_directory(output) as building:
        for sample in export.samples:
            key = (sample.split, sample.image.stem)
            if key in stems:
                raise ExportError(f"{export.source}: images {stems[key]!r} and {sample.name!r} have one file stem "
                                  f"{sample.image.stem!r} in split {sample.split!r}; rename one")
            stems[key] = sample.name
            labels, overlaps = paint(sample, export.classes)
            notes += overlaps
            image_dir, mask_dir = building / "images" / sample.split, building / "masks" / sample.split
            image_dir.mkdir(parents=True, exist_ok=True)
            mask_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(sample.image, image_dir / sample.image.name)
            label_image(labels, record.palette).save(mask_dir / f"{sample.image.stem}.png", format="PNG")
        (building / "dataset.json").write_text(record.to_json(), encoding="utf-8")
        (building / "classes.txt").write_text("\n".join(record.classes) + "\n", encoding="utf-8")
    return len(export.samples), notes


def class_index(classes: list[str], name: object, known: bool) -> int | None:
    """The label of class ``name``: its index in ``classes``; a new name is appended unless the classes are ``known``."""
    name = str(name)
    if name in classes:
        return classes.index(name)
    if known:
        return None
    classes.append(name)
    return len(classes) - 1


def initial_classes(given: Sequence[str] | None) -> tuple[list[str], bool]:
    """The class list a reader starts from: the one given (fixed), else just background (names are added as met)."""
    return (list(given), True) if given else ([BACKGROUND], False)


def find_image(name: str, folders: Sequence[Path]) -> Path | None:
    """The file of image ``name`` (a path or URL as the tool wrote it) in ``folders``: by relative path, then base name."""
    relative = Path(name.split("?")[0])
    for folder in folders:
        for candidate in (folder / relative, folder / relative.name):
            if candidate.is_file():
                return candidate
    return None


def image_size(path: Path) -> tuple[int, int]:
    """(height, width) from an image's header."""
    from isnet.data.image import image_size as header_size

    return header_size(path, 1 << 40)

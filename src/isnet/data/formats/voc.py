"""Pascal VOC segmentation masks, and CVAT's "Segmentation mask 1.1" export (the same layout with a ``labelmap.txt``).

The folder holds ``SegmentationClass/<name>.png``, the images in ``JPEGImages/`` and the splits
in ``ImageSets/Segmentation/<split>.txt``. A palette PNG's pixel values are the class indices
(255: boundary / ignored, kept as 255); an RGB mask is mapped to indices by the colours of
``labelmap.txt`` (``name:R,G,B:parts:actions`` per line, in label order), as CVAT writes it.
Without ``labelmap.txt`` the classes are VOC's 21 (or the ``--classes`` given).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isnet.data.formats.common import IGNORE, Export, ExportError, Sample, find_image, require
from isnet.data.image import IMAGE_SUFFIXES, DataFileError, open_image
from isnet.data.info import RGB, make_palette

VOC_CLASSES = ("background", "aeroplane", "bicycle", "bird", "boat", "bottle", "bus", "car", "cat", "chair", "cow",
               "diningtable", "dog", "horse", "motorbike", "person", "pottedplant", "sheep", "sofa", "train",
               "tvmonitor")
LABELMAP = "labelmap.txt"


def read_labelmap(path: Path) -> tuple[list[str], list[RGB]]:
    """Names and colours of a CVAT / datumaro ``labelmap.txt`` (``name:R,G,B:parts:actions``), in label order.

    A label without a colour (``name:::``, as datumaro writes a label map of names only) has the
    VOC colour map's colour of its index, the colour its masks are drawn in.
    """
    names, colours = [], []
    try:
        lines = path.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as error:
        raise ExportError(f"{path}: unreadable label map: {error}") from None
    for number, line in enumerate(lines, 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, rest = line.partition(":")
        colour = rest.split(":")[0]
        try:
            rgb = tuple(int(c) for c in colour.split(",")) if colour.strip() else make_palette(len(names) + 1)[-1]
        except ValueError:
            rgb = ()
        require(bool(name) and len(rgb) == 3 and all(0 <= c <= 255 for c in rgb), path,
                f"line {number} {line!r} is not 'name:R,G,B::'")
        names.append(name)
        colours.append(rgb)  # type: ignore[arg-type]
    require(bool(names), path, "the label map names no class")
    return names, colours


def write_labelmap(path: Path, names: Sequence[str], colours: Sequence[RGB]) -> None:
    lines = ["# label:color_rgb:parts:actions"] + [f"{n}:{r},{g},{b}::" for n, (r, g, b) in zip(names, colours)]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _splits(root: Path) -> dict[str, str]:
    """Mask stem → split, from ``ImageSets/Segmentation/*.txt`` (``default`` and ``trainval`` read as train)."""
    folder = root / "ImageSets" / "Segmentation"
    lists = sorted(folder.glob("*.txt")) if folder.is_dir() else []
    named = {p.stem for p in lists}
    splits: dict[str, str] = {}
    for path in lists:
        if path.stem == "trainval" and named & {"train", "val"}:
            continue
        split = "train" if path.stem in ("default", "trainval") else path.stem
        for line in path.read_text(encoding="utf-8").split():
            splits.setdefault(line.strip(), split)
    return splits


def read_mask(path: Path, classes: Sequence[str], colours: Sequence[RGB] | None) -> np.ndarray:
    """A VOC / CVAT mask as uint8 class indices (255 kept); a DataFileError naming the file for values or colours not in the classes."""
    with open_image(path) as image:
        if image.mode == "P" or image.mode == "L":
            labels = np.asarray(image)
        elif colours is not None:
            rgb = np.asarray(image.convert("RGB"))
            packed = (rgb[..., 0].astype(np.int64) << 16) | (rgb[..., 1].astype(np.int64) << 8) | rgb[..., 2]
            table = {(r << 16) | (g << 8) | b: k for k, (r, g, b) in enumerate(colours)}
            found, inverse = np.unique(packed, return_inverse=True)
            lookup = np.array([table.get(int(v), -1) for v in found])
            if (lookup < 0).any():
                missing = [((int(v) >> 16), (int(v) >> 8) & 255, int(v) & 255) for v in found[lookup < 0]]
                raise DataFileError(f"{path}: colour(s) {missing[:5]} are not in {LABELMAP}")
            labels = lookup[inverse].reshape(rgb.shape[:2]).astype(np.uint8)
        else:
            raise DataFileError(f"{path}: an {image.mode} mask without a {LABELMAP} to map its colours")
    unknown = sorted(set(np.unique(labels).tolist()) - set(range(len(classes))) - {IGNORE})
    if unknown:
        raise DataFileError(f"{path}: value(s) {unknown[:8]} are not classes (0..{len(classes) - 1}, 255 ignored)")
    return labels.astype(np.uint8)


def read_voc(source: Path, images: Sequence[Path] = (), classes: Sequence[str] | None = None) -> Export:
    """Read a VOC / CVAT "Segmentation mask 1.1" folder (``SegmentationClass/``, ``JPEGImages/``, ``labelmap.txt``)."""
    masks_dir = source / "SegmentationClass"
    require(masks_dir.is_dir(), source, "no SegmentationClass/ folder: not a Pascal VOC / CVAT Segmentation mask export")
    colours: list[RGB] | None = None
    if classes:
        names = list(classes)
    elif (source / LABELMAP).is_file():
        names, colours = read_labelmap(source / LABELMAP)
    else:
        names = list(VOC_CLASSES)
    splits = _splits(source)
    folders = [source / "JPEGImages", *images]
    export = Export(source, names, [], palette=colours or list(make_palette(len(names))))
    for mask_path in sorted(masks_dir.glob("*.png")):
        name = mask_path.stem
        image = next((found for suffix in IMAGE_SUFFIXES if (found := find_image(name + suffix, folders))), None)
        if image is None:
            export.problems.append(f"{name}: image not found in {', '.join(map(str, folders))}; left out")
            continue
        try:
            labels = read_mask(mask_path, names, colours)
        except DataFileError as error:
            export.problems.append(f"{error}; left out")
            continue
        export.samples.append(Sample(image, name, *labels.shape, shapes=list, split=splits.get(name, "train"),
                                     base=labels))
    return export

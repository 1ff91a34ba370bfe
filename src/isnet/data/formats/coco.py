"""COCO instances or stuff JSON (``images``, ``annotations``, ``categories``), decoded by pycocotools.

Segmentations may be polygons, uncompressed RLE (``counts`` a list) or compressed RLE
(``counts`` a string); ``iscrowd`` regions are painted like the others. Classes are
``background`` (0) then the categories in id order, or the ``--classes`` given (matched by
name). Annotations are painted in file order, a later one on top of an earlier one.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isnet.data.formats.common import (
    BACKGROUND,
    Export,
    ExportError,
    Sample,
    Shape,
    find_image,
    read_json,
    require,
)


def segmentation_mask(segmentation: object, height: int, width: int) -> np.ndarray:
    """A COCO ``segmentation`` (polygons, uncompressed or compressed RLE) as a (H, W) bool mask, by pycocotools."""
    from pycocotools import mask as coco_mask

    if isinstance(segmentation, list):  # polygons
        polygons = [[float(v) for v in polygon] for polygon in segmentation if len(polygon) >= 6]
        if not polygons:
            return np.zeros((height, width), bool)
        return coco_mask.decode(coco_mask.merge(coco_mask.frPyObjects(polygons, height, width))).astype(bool)
    if not isinstance(segmentation, dict) or "counts" not in segmentation or "size" not in segmentation:
        raise ValueError("a segmentation is neither polygons nor RLE (counts and size)")
    if list(segmentation["size"]) != [height, width]:
        raise ValueError(f"an RLE of size {segmentation['size']} on an image of {height}×{width} (height×width)")
    counts = segmentation["counts"]
    if isinstance(counts, list):
        if sum(counts) != height * width:
            raise ValueError(f"an uncompressed RLE whose counts add to {sum(counts)}, not {height}×{width}")
        rle = coco_mask.frPyObjects(segmentation, height, width)
    else:
        rle = {"size": [height, width], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return coco_mask.decode(rle).astype(bool)


def read_coco(source: Path, images: Sequence[Path] = (), classes: Sequence[str] | None = None) -> Export:
    """Read a COCO JSON file; ``images`` are the folders to find its images in (default: beside it)."""
    data = read_json(source)
    require(isinstance(data, dict) and isinstance(data.get("images"), list) and isinstance(data.get("categories"), list),
            source, "not a COCO JSON file (no 'images' and 'categories' lists)")
    try:
        categories = {int(c["id"]): str(c["name"]) for c in data["categories"]}
        records = {int(i["id"]): i for i in data["images"]}
        for record in records.values():
            record["height"], record["width"] = int(record["height"]), int(record["width"])
            record["file_name"] = str(record["file_name"])
        annotations = [(int(a["image_id"]), int(a["category_id"]), a["segmentation"], int(a.get("id", -1)))
                       for a in data.get("annotations", [])]
    except (KeyError, TypeError, ValueError) as error:
        raise ExportError(f"{source}: a COCO record lacks a field or has a wrong one: {error!r}") from None
    names = list(classes) if classes else [BACKGROUND] + [categories[k] for k in sorted(categories)]
    folders = list(images) or [source.parent, source.parent / "images", source.parent.parent / "images"]
    by_image: dict[int, list[tuple[int, object, int]]] = {}
    problems = []
    for image_id, category, segmentation, annotation_id in annotations:
        if image_id not in records:
            problems.append(f"{source}: annotation {annotation_id} is of image id {image_id}, which is not in 'images'")
            continue
        by_image.setdefault(image_id, []).append((category, segmentation, annotation_id))
    export = Export(source, names, [], problems=problems)
    for image_id, record in records.items():
        name = record["file_name"]
        unknown = sorted({categories.get(c, f"category id {c}") for c, _, _ in by_image.get(image_id, [])
                          if categories.get(c) not in names})
        if unknown:
            problems.append(f"{name}: unknown label(s) {', '.join(map(repr, unknown))}; left out")
            continue
        path = find_image(name, folders)
        if path is None:
            problems.append(f"{name}: image not found in {', '.join(map(str, folders))}; left out")
            continue
        shapes = by_image.get(image_id, [])
        export.samples.append(Sample(path, name, record["height"], record["width"],
                                     _painter(source, name, record, shapes, categories, names)))
    return export


def _painter(source: Path, name: str, record: dict, shapes, categories: dict[int, str], names: list[str]):
    def paint() -> list[Shape]:
        out = []
        for category, segmentation, annotation_id in shapes:
            try:
                mask = segmentation_mask(segmentation, record["height"], record["width"])
            except (ValueError, TypeError, KeyError) as error:
                raise ExportError(f"{source}: annotation {annotation_id} of {name}: {error}") from None
            out.append(Shape(names.index(categories[category]), mask))
        return out

    return paint


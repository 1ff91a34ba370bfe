"""LabelMe: one JSON file per image (``shapes`` with ``label``, ``points``, ``shape_type``; ``imagePath``, size).

Shape types read: ``polygon`` (the points), ``rectangle`` (two opposite corners), ``circle``
(the centre, then a point on the circle: the pixels whose centres lie within that radius).
Other types (lines, points) cover no area and are skipped with a note. Shapes are painted in
file order, a later one on top. Embedded ``imageData`` is not decoded: the image is found by
``imagePath`` beside the JSON (or in the ``--images`` folders).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isnet.data.formats.common import (
    Export,
    ExportError,
    Sample,
    Shape,
    class_index,
    find_image,
    initial_classes,
    polygon_mask,
    read_json,
    rectangle_mask,
)

AREA_SHAPES = ("polygon", "rectangle", "circle")


def circle_mask(centre: Sequence[float], rim: Sequence[float], height: int, width: int) -> np.ndarray:
    """Pixels (x, y) whose distance to ``centre`` is at most the distance from ``centre`` to ``rim``."""
    radius_squared = (rim[0] - centre[0]) ** 2 + (rim[1] - centre[1]) ** 2
    y, x = np.mgrid[:height, :width]
    return (x - centre[0]) ** 2 + (y - centre[1]) ** 2 <= radius_squared


def shape_mask(shape: dict, height: int, width: int) -> np.ndarray:
    """One LabelMe area shape as a (H, W) bool mask."""
    points = [(float(x), float(y)) for x, y in shape["points"]]
    kind = shape.get("shape_type") or "polygon"
    if kind == "rectangle":
        (x0, y0), (x1, y1) = points[:2]
        return rectangle_mask(min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1), height, width)
    if kind == "circle":
        return circle_mask(points[0], points[1], height, width)
    return polygon_mask([c for point in points for c in point], height, width)


def read_labelme(source: Path, images: Sequence[Path] = (), classes: Sequence[str] | None = None) -> Export:
    """Read a folder of LabelMe JSON files (or one file); classes are background then the labels as met, sorted by name."""
    files = sorted(source.glob("*.json")) if source.is_dir() else [source]
    if not files:
        raise ExportError(f"{source}: no LabelMe .json files")
    documents = []
    for path in files:
        document = read_json(path)
        if not isinstance(document, dict) or not isinstance(document.get("shapes"), list):
            raise ExportError(f"{path}: not a LabelMe file (no 'shapes' list)")
        documents.append((path, document))
    names, known = initial_classes(classes)
    if not known:  # every label, sorted, so the class order does not depend on which file came first
        met = {str(s.get("label")) for _, d in documents for s in d["shapes"] if s.get("shape_type", "polygon") in AREA_SHAPES}
        names += sorted(met - set(names))
    export = Export(source, names, [])
    for path, document in documents:
        name = str(document.get("imagePath") or path.with_suffix(".jpg").name)
        areas = [s for s in document["shapes"] if (s.get("shape_type") or "polygon") in AREA_SHAPES]
        skipped = len(document["shapes"]) - len(areas)
        if skipped:
            export.notes.append(f"{path.name}: {skipped} shape(s) that cover no area (lines, points) skipped")
        unknown = sorted({str(s.get("label")) for s in areas if class_index(names, s.get("label"), known) is None})
        if unknown:
            export.problems.append(f"{path.name}: unknown label(s) {', '.join(map(repr, unknown))}; left out")
            continue
        image = find_image(name, [path.parent, *images])
        if image is None:
            export.problems.append(f"{path.name}: image {name!r} not found beside it or in the --images folders; left out")
            continue
        try:
            height, width = int(document["imageHeight"]), int(document["imageWidth"])
        except (KeyError, TypeError, ValueError):
            raise ExportError(f"{path}: no integer imageHeight and imageWidth") from None
        export.samples.append(Sample(image, name, height, width, _painter(path, areas, names, height, width)))
    return export


def _painter(path: Path, areas: list[dict], names: list[str], height: int, width: int):
    def paint() -> list[Shape]:
        out = []
        for number, shape in enumerate(areas):
            try:
                mask = shape_mask(shape, height, width)
            except (KeyError, TypeError, ValueError, IndexError) as error:
                raise ExportError(f"{path}: shape {number} ({shape.get('label')!r}): malformed points: {error}") from None
            out.append(Shape(names.index(str(shape.get("label"))), mask))
        return out

    return paint

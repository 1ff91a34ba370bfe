"""CVAT: "CVAT for images 1.1" XML in (polygons, boxes, masks), "Segmentation mask 1.1" zip out.

The XML holds ``<image name width height>`` elements with ``<polygon label points="x,y;x,y">``,
``<box label xtl ytl xbr ybr>`` and ``<mask label rle left top width height>`` shapes; a mask's
``rle`` is counts of alternating 0 and 1 runs (0 first) over its box, row by row, as CVAT 2
writes it and datumaro reads it. The labels (names, colours ``#rrggbb``) are in ``<meta>``.
Shapes are painted by ``z_order``, then in file order, a later one on top.

"Segmentation mask 1.1" (the layout of :mod:`isnet.data.formats.voc`) is what
:func:`write_segmentation_mask_zip` writes for pre-annotation import.
"""

from __future__ import annotations

import zipfile
from collections.abc import Sequence
from pathlib import Path
from xml.etree import ElementTree

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
    rectangle_mask,
)
from isnet.data.formats.voc import LABELMAP, write_labelmap
from isnet.data.info import RGB


def mask_from_rle(counts: Sequence[int], left: int, top: int, box_width: int, box_height: int,
                  height: int, width: int) -> np.ndarray:
    """A CVAT mask shape (runs 0, 1, 0, ... row by row over its box) as a (H, W) bool mask of the image."""
    if sum(counts) != box_width * box_height:
        raise ValueError(f"mask runs add to {sum(counts)}, not its box's {box_width}×{box_height}")
    if left < 0 or top < 0 or left + box_width > width or top + box_height > height:
        raise ValueError(f"mask box {box_width}×{box_height} at ({left}, {top}) is outside the image {width}×{height}")
    values = np.repeat(np.arange(len(counts)) % 2 == 1, counts)
    mask = np.zeros((height, width), bool)
    mask[top:top + box_height, left:left + box_width] = values.reshape(box_height, box_width)
    return mask


def _labels(root: ElementTree.Element) -> tuple[list[str], list[RGB]]:
    names, colours = [], []
    for label in root.iterfind("./meta//labels/label"):
        name = label.findtext("name")
        if name and name not in names:
            names.append(name)
            colour = (label.findtext("color") or "").lstrip("#")
            colours.append(tuple(int(colour[i:i + 2], 16) for i in (0, 2, 4)) if len(colour) == 6 else None)
    return names, colours


def read_cvat_xml(source: Path, images: Sequence[Path] = (), classes: Sequence[str] | None = None) -> Export:
    """Read a "CVAT for images 1.1" ``annotations.xml``; ``images`` are the folders holding its images."""
    try:
        root = ElementTree.parse(source).getroot()
    except (ElementTree.ParseError, OSError) as error:
        raise ExportError(f"{source}: not a readable CVAT XML file: {error}") from None
    if root.tag != "annotations":
        raise ExportError(f"{source}: not a CVAT for images XML file (its root is <{root.tag}>, not <annotations>)")
    meta_names, meta_colours = _labels(root)
    names, known = initial_classes(classes or (["background"] + [n for n in meta_names if n != "background"]
                                               if meta_names else None))
    palette = None
    if not classes and meta_names and all(meta_colours):
        by_name = dict(zip(meta_names, meta_colours))
        palette = [by_name.get(name, (0, 0, 0)) for name in names]
    folders = list(images) or [source.parent, source.parent / "images"]
    export = Export(source, names, [], palette=palette)
    for element in root.iter("image"):
        name = element.get("name", "")
        shapes = [s for s in element if s.tag in ("polygon", "box", "mask")]
        unknown = sorted({s.get("label", "") for s in shapes if class_index(names, s.get("label", ""), known) is None})
        if unknown:
            export.problems.append(f"{name}: unknown label(s) {', '.join(map(repr, unknown))}; left out")
            continue
        path = find_image(name, folders)
        if path is None:
            export.problems.append(f"{name}: image not found in {', '.join(map(str, folders))}; left out")
            continue
        try:
            height, width = int(element.get("height", "")), int(element.get("width", ""))
        except ValueError:
            raise ExportError(f"{source}: <image name={name!r}> has no integer width and height") from None
        ordered = sorted(shapes, key=lambda s: int(s.get("z_order", "0") or 0))  # a stable sort keeps file order
        export.samples.append(Sample(path, name, height, width, _painter(source, name, ordered, names, height, width)))
    return export


def _painter(source: Path, name: str, shapes: list[ElementTree.Element], names: list[str], height: int, width: int):
    def paint() -> list[Shape]:
        out = []
        for shape in shapes:
            try:
                if shape.tag == "polygon":
                    points = [float(c) for pair in shape.get("points", "").split(";") for c in pair.split(",")]
                    mask = polygon_mask(points, height, width)
                elif shape.tag == "box":
                    mask = rectangle_mask(*(float(shape.get(k, "")) for k in ("xtl", "ytl", "xbr", "ybr")),
                                          height, width)
                else:
                    counts = [int(c) for c in shape.get("rle", "").split(",")]
                    box = (int(float(shape.get(k, ""))) for k in ("left", "top", "width", "height"))
                    mask = mask_from_rle(counts, *box, height, width)
            except ValueError as error:
                raise ExportError(f"{source}: {name}: a <{shape.tag} label={shape.get('label')!r}>: {error}") from None
            out.append(Shape(names.index(shape.get("label", "")), mask))
        return out

    return paint


def write_segmentation_mask_zip(path: Path, masks: Sequence[tuple[str, np.ndarray]], classes: Sequence[str],
                                colours: Sequence[RGB]) -> None:
    """A CVAT "Segmentation mask 1.1" zip: ``labelmap.txt``, the image list and one RGB colour mask per image.

    ``masks`` are (image file name, (H, W) class indices); 255 (ignored) is written black, as background.
    """
    import io
    import tempfile

    from PIL import Image

    table = np.zeros((max(256, len(colours)), 3), np.uint8)  # 16-bit label maps of many classes too
    table[: len(colours)] = np.asarray(colours, np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        labelmap = Path(folder) / LABELMAP
        write_labelmap(labelmap, classes, colours)
        with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.write(labelmap, LABELMAP)
            archive.writestr("ImageSets/Segmentation/default.txt", "".join(f"{Path(n).stem}\n" for n, _ in masks))
            for name, labels in masks:
                buffer = io.BytesIO()
                Image.fromarray(table[np.minimum(labels, len(table) - 1)]).save(buffer, format="PNG")
                archive.writestr(f"SegmentationClass/{Path(name).stem}.png", buffer.getvalue())

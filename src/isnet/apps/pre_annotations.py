"""Predictions back to the labelling tool: images ranked by uncertainty, label maps as pre-annotations.

Runs after ``isnet predict`` has written ``<stem>_labels.png`` (and ``<stem>_confidence.png``,
the calibrated probability of the predicted class, 16-bit) for each image, so it is the same for
whole, batched, tiled and torchrun predictions.

- ``--rank uncertainty``: an image's uncertainty is the mean over its pixels of 1 − p, where p
  is the (calibrated, when the model file carries a temperature) probability of the predicted
  class; with ``--rank-class NAME``, the mean over the pixels predicted as that class (an image
  without any is least uncertain: 0). ``ranked.csv`` lists every image, most uncertain first;
  ``--top N`` keeps the first N for the export.
- ``--export coco``: ``coco_predictions.json``, a COCO file (images, categories, and one
  annotation per class present with a compressed RLE ``segmentation`` and a ``score``), the
  results list pycocotools' ``COCO.loadRes`` takes being its ``annotations``.
- ``--export labelstudio``: ``labelstudio_predictions.json``, tasks with ``predictions`` (brush
  RLE per class, ``model_version``, ``score``) to import as pre-annotations.
- ``--export cvat``: ``cvat_segmentation_mask.zip``, "Segmentation mask 1.1" to upload as annotations.

A class named ``background`` is not exported (its pixels are what no region covers); every
other class present in a label map is one region. Each file is written atomically.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from isnet.utils.atomic_files import write_atomically

EXPORTS = ("coco", "labelstudio", "cvat")
EXPORT_FILES = {"coco": "coco_predictions.json", "labelstudio": "labelstudio_predictions.json",
                "cvat": "cvat_segmentation_mask.zip"}
RANKED_CSV = "ranked.csv"


@dataclass(frozen=True)
class Ranked:
    image: Path
    uncertainty: float
    pixels: int  # the pixels the uncertainty is the mean of


def _read(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def uncertainty(labels: np.ndarray, confidence: np.ndarray, class_index: int | None = None) -> tuple[float, int]:
    """Mean of 1 − p over the image (or over the pixels predicted as ``class_index``), and how many pixels that is.

    Pixels of confidence 0 hold no data (a GeoTIFF's nodata; a prediction's p is at least 1/K)
    and are left out.
    """
    probability = confidence.astype(np.float64) / 65535
    chosen = (confidence > 0) if class_index is None else (labels == class_index) & (confidence > 0)
    count = int(chosen.sum())
    return (float((1 - probability[chosen]).mean()) if count else 0.0), count


def rank_images(images: Sequence[Path], output: Path, class_index: int | None = None) -> list[Ranked]:
    """The images most uncertain first (ties by name), from the label and confidence maps in ``output``."""
    ranked = []
    for image in images:
        labels = _read(output / f"{image.stem}_labels.png")
        value, count = uncertainty(labels, _read(output / f"{image.stem}_confidence.png"), class_index)
        ranked.append(Ranked(image, value, count))
    return sorted(ranked, key=lambda r: (-r.uncertainty, str(r.image)))


def write_ranking(path: Path, ranked: Sequence[Ranked], measure: str) -> Path:
    def write(temporary: Path) -> None:
        with open(temporary, "w", newline="", encoding="utf-8") as handle:
            table = csv.writer(handle)
            table.writerow(["rank", "image", measure, "pixels"])
            table.writerows([k, str(r.image), f"{r.uncertainty:.6f}", r.pixels] for k, r in enumerate(ranked, 1))

    return write_atomically(path, write)


def _regions(labels: np.ndarray, classes: Sequence[str]) -> list[int]:
    """The classes of a label map exported as regions: those present, less background and out-of-range values."""
    return [k for k in np.unique(labels).tolist() if k < len(classes) and classes[k].lower() != "background"]


def coco_document(items: Sequence[tuple[Path, np.ndarray, float | None]], classes: Sequence[str]) -> dict:
    """A COCO file of the label maps: one annotation (compressed RLE) per image and class."""
    from pycocotools import mask as coco_mask

    images, annotations = [], []
    for image_id, (path, labels, score) in enumerate(items, 1):
        height, width = labels.shape
        images.append({"id": image_id, "file_name": path.name, "height": height, "width": width})
        for k in _regions(labels, classes):
            rle = coco_mask.encode(np.asfortranarray(labels == k, dtype=np.uint8))
            annotations.append({"id": len(annotations) + 1, "image_id": image_id, "category_id": k,
                                "segmentation": {"size": [height, width], "counts": rle["counts"].decode("ascii")},
                                "area": float(coco_mask.area(rle)), "bbox": coco_mask.toBbox(rle).tolist(),
                                "iscrowd": 0, "score": 1.0 if score is None else score})
    categories = [{"id": k, "name": name} for k, name in enumerate(classes) if name.lower() != "background"]
    return {"images": images, "annotations": annotations, "categories": categories}


def write_pre_annotations(kind: str, images: Sequence[Path], output: Path, classes: Sequence[str],
                          palette: Sequence[tuple[int, int, int]], *, model_version: str,
                          scores: dict[Path, float] | None = None) -> Path:
    """Write the label maps of ``images`` (read from ``output``) as ``kind``'s pre-annotation import; its path."""
    from isnet.data.formats.cvat import write_segmentation_mask_zip
    from isnet.data.formats.labelstudio import prediction_task

    scores = scores or {}
    items = [(image, _read(output / f"{image.stem}_labels.png"), scores.get(image)) for image in images]
    target = output / EXPORT_FILES[kind]
    if kind == "cvat":
        return write_atomically(target, lambda temporary: write_segmentation_mask_zip(
            temporary, [(path.name, labels) for path, labels, _ in items], classes, palette))
    if kind == "coco":
        document: object = coco_document(items, classes)
    else:
        document = [prediction_task(str(path), labels, classes, model_version, score,
                                    regions=_regions(labels, classes)) for path, labels, score in items]
    text = json.dumps(document)
    return write_atomically(target, lambda temporary: temporary.write_text(text, encoding="utf-8"))


def rank_and_export(images: Sequence[Path], output: Path, classes: Sequence[str],
                    palette: Sequence[tuple[int, int, int]], *, rank: bool, rank_class: str | None, top: int | None,
                    export: str | None, model_version: str) -> list[str]:
    """``--rank`` / ``--export`` after a prediction: what was written, one line each."""
    done = [image for image in images if (output / f"{image.stem}_labels.png").is_file()]
    lines, scores = [], None
    if rank:
        class_index = None
        if rank_class is not None:
            if rank_class not in classes:
                raise ValueError(f"--rank-class {rank_class!r}: not a class of the model ({', '.join(classes[:10])}...)")
            class_index = list(classes).index(rank_class)
        ranked = rank_images(done, output, class_index)
        measure = "mean_1_minus_max_probability" + (f"_of_{rank_class}" if rank_class else "")
        path = write_ranking(output / RANKED_CSV, ranked, measure)
        lines.append(f"ranked {len(ranked)} image(s), most uncertain first ({measure}) → {path}")
        kept = ranked[:top] if top else ranked
        done = [r.image for r in kept]
        scores = {r.image: round(1 - r.uncertainty, 6) for r in kept}
    if export is not None:
        path = write_pre_annotations(export, done, output, classes, palette, model_version=model_version, scores=scores)
        lines.append(f"{len(done)} image(s) as {export} pre-annotations → {path}")
    return lines


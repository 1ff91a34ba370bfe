"""What ``POST /predict`` answers: the label map, the overlay, or per-class areas as JSON.

The label map is the palette-mode PNG that ``isnet predict`` writes (``<stem>_labels.png``,
pixel values = class indices, shown in the model's colours), the overlay the same figure
as its ``<stem>_overlay.png`` (image | overlay, with a legend of the classes present).
The format comes from ``?format=labels|overlay|json``, else from the ``Accept`` header
(``application/json`` → JSON, ``image/png`` or anything → the label map).
"""

from __future__ import annotations

import base64
import io
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from starlette.exceptions import HTTPException

from isnet.utils.visualize import label_image, overlay, save_overlay_with_legend

FORMATS = ("labels", "overlay", "json")
MEDIA_TYPES = {"labels": "image/png", "overlay": "image/png", "json": "application/json"}
_ACCEPTED = {"application/json": "json", "image/png": "labels", "image/*": "labels", "*/*": "labels"}
_PYPLOT = threading.Lock()  # matplotlib's pyplot keeps global state: one figure at a time


def _accepted_media_types(accept: str) -> list[str]:
    """Media types of an ``Accept`` header, most wanted first (``q=0`` left out)."""
    weighted = []
    for position, item in enumerate(accept.split(",")):
        media_type, *parameters = (part.strip() for part in item.split(";"))
        quality = 1.0
        for parameter in parameters:
            key, _, value = parameter.partition("=")
            if key.strip() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if media_type and quality > 0:
            weighted.append((-quality, position, media_type.lower()))
    return [media_type for _, _, media_type in sorted(weighted)]


def choose_format(query: str | None, accept: str | None) -> str:
    """``labels``, ``overlay`` or ``json``; 400 for an unknown ``format``, 406 for an unmet ``Accept``."""
    if query is not None:
        if query not in FORMATS:
            raise HTTPException(400, f"format must be one of {', '.join(FORMATS)}, got {query!r}")
        return query
    for media_type in _accepted_media_types(accept or "*/*"):
        if media_type in _ACCEPTED:
            return _ACCEPTED[media_type]
    raise HTTPException(406, f"cannot answer Accept: {accept}; this endpoint gives image/png or application/json")


def png_bytes(image) -> bytes:
    """A PIL image (or an (H, W, 3) uint8 array) as PNG bytes, saved as ``isnet predict`` saves it."""
    from PIL import Image

    if isinstance(image, np.ndarray):
        image = Image.fromarray(image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def labels_png(labels: np.ndarray, palette: Sequence[tuple[int, int, int]]) -> bytes:
    return png_bytes(label_image(labels, palette))


def overlay_png(
    image: np.ndarray, labels: np.ndarray, classes: Sequence[str], palette: Sequence[tuple[int, int, int]], title: str
) -> bytes:
    """The figure of ``isnet predict``'s ``_overlay.png``, as bytes."""
    with _PYPLOT, tempfile.TemporaryDirectory(prefix="isnet-overlay-") as folder:
        path = save_overlay_with_legend(Path(folder) / "overlay.png", image, labels, classes, palette, title=title)
        return path.read_bytes()


def class_areas(labels: np.ndarray, classes: Sequence[str], palette: Sequence[tuple[int, int, int]]) -> list[dict]:
    """Every class with its colour, pixel count and fraction of the image, in class order."""
    counts = np.bincount(labels.ravel(), minlength=len(classes))[: len(classes)]
    return [
        {"index": index, "name": name, "color": "#{:02x}{:02x}{:02x}".format(*colour),
         "pixels": int(count), "fraction": float(count) / labels.size}
        for index, (name, colour, count) in enumerate(zip(classes, palette, counts))
    ]


def areas_json(
    image: np.ndarray,
    labels: np.ndarray,
    classes: Sequence[str],
    palette: Sequence[tuple[int, int, int]],
    *,
    embed_overlay: bool,
) -> dict:
    """Size and per-class areas; with ``embed_overlay``, the image blended with its labels as a PNG data URL."""
    body = {"height": int(labels.shape[0]), "width": int(labels.shape[1]), "classes": class_areas(labels, classes, palette)}
    if embed_overlay:
        encoded = base64.b64encode(png_bytes(overlay(image, labels, palette))).decode("ascii")
        body["overlay"] = f"data:image/png;base64,{encoded}"
    return body

"""Label Studio: its JSON export (brush and polygon results) in, and its brush RLE for pre-annotations out.

The brush RLE is Label Studio's own bit stream (``rle-pack``, as label-studio-sdk's
``converter.brush.encode_rle`` / ``decode_rle`` write and read it) of the image's RGBA bytes,
row by row, the mask in the alpha channel. Bits are most significant first: a header of the
number of values (32 bits), the word size − 1 (5 bits) and four run-length field sizes − 1
(4 bits each); then chunks of a repeat flag (1 bit), a field-size index (2 bits) and the
count − 1 in that many bits, followed by one value to repeat or ``count`` literal values.

Polygon points are percentages of the image's width and height. Of a task's annotations the
one marked ``ground_truth`` is read, else the last one not cancelled. Results are painted in
their order, a later one on top.
"""

from __future__ import annotations

import re
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
    require,
)

WORD_SIZE = 8
RUN_FIELDS = (3, 4, 8, 16)  # the bits of a chunk's count − 1 (label-studio-sdk's default)


class _Bits:
    """A most-significant-first bit reader over bytes."""

    def __init__(self, data: bytes) -> None:
        self.bits = np.unpackbits(np.frombuffer(data, np.uint8))
        self.position = 0

    def read(self, size: int) -> int:
        field = self.bits[self.position:self.position + size]
        if len(field) < size:
            raise ValueError("the RLE ends in the middle of a field")
        self.position += size
        return int("".join(map(str, field)), 2) if size else 0

    def words(self, count: int, size: int) -> np.ndarray:
        field = self.bits[self.position:self.position + count * size]
        if len(field) < count * size:
            raise ValueError("the RLE ends in the middle of its values")
        self.position += count * size
        weights = 1 << np.arange(size - 1, -1, -1, dtype=np.int64)
        return field.reshape(count, size).astype(np.int64) @ weights


def decode_rle(rle: Sequence[int]) -> np.ndarray:
    """Label Studio's brush RLE (a list of byte values) as the flat uint8 values it encodes."""
    bits = _Bits(bytes(int(b) & 255 for b in rle))
    total, word = bits.read(32), bits.read(5) + 1
    fields = [bits.read(4) + 1 for _ in range(4)]
    out = np.zeros(total, np.uint8)
    i = 0
    while i < total:
        repeat = bits.read(1)
        count = bits.read(fields[bits.read(2)]) + 1
        if i + count > total:
            raise ValueError(f"a run goes past the {total} values the RLE declares")
        out[i:i + count] = bits.read(word) if repeat else bits.words(count, word)
        i += count
    return out


def encode_rle(values: np.ndarray) -> list[int]:
    """Flat uint8 ``values`` as Label Studio's brush RLE: one repeat chunk per run (split at 2**16)."""
    values = np.asarray(values, np.uint8).ravel()
    header = f"{len(values):032b}{WORD_SIZE - 1:05b}" + "".join(f"{size - 1:04b}" for size in RUN_FIELDS)
    parts = [header]
    if len(values):
        starts = np.flatnonzero(np.concatenate([[True], values[1:] != values[:-1]]))
        lengths = np.diff(np.append(starts, len(values)))
        for start, length in zip(starts.tolist(), lengths.tolist()):
            value = f"{int(values[start]):08b}"
            while length:
                count = min(length, 1 << RUN_FIELDS[-1])
                index = next(k for k, size in enumerate(RUN_FIELDS) if count - 1 < (1 << size))
                parts.append(f"1{index:02b}{count - 1:0{RUN_FIELDS[index]}b}{value}")
                length -= count
    bits = "".join(parts)
    bits += "0" * (-len(bits) % 8)
    return list(np.packbits(np.frombuffer(bits.encode("ascii"), np.uint8) - ord("0")).tolist())


def mask_rle(mask: np.ndarray) -> list[int]:
    """A (H, W) bool mask as a brush RLE: RGBA bytes, 255 in every channel where the mask is set."""
    return encode_rle(np.repeat(np.where(mask, 255, 0).astype(np.uint8).ravel(), 4))


def rle_mask(rle: Sequence[int], height: int, width: int) -> np.ndarray:
    """A brush RLE of an image of (height, width) as a (H, W) bool mask (its alpha channel)."""
    values = decode_rle(rle)
    if values.size != height * width * 4:
        raise ValueError(f"a brush RLE of {values.size} values on an image of {width}×{height} (×4 RGBA)")
    return values.reshape(height, width, 4)[..., 3] > 127


def _chosen_annotation(task: dict) -> dict | None:
    annotations = [a for a in task.get("annotations", []) if isinstance(a, dict) and not a.get("was_cancelled")]
    truth = [a for a in annotations if a.get("ground_truth")]
    return (truth or annotations or [None])[-1]


def _image_name(task: dict) -> str:
    values = [v for v in (task.get("data") or {}).values() if isinstance(v, str)]
    return values[0] if values else ""


def _find_upload(name: str, folders: Sequence[Path]) -> Path | None:
    """Label Studio renames uploads ``<8 hex>-<name>``, and local files ``?d=<path>``: both are tried."""
    name = name.split("?d=")[-1]
    return find_image(name, folders) or find_image(re.sub(r"^[0-9a-f]{8}-", "", Path(name).name), folders)


def read_labelstudio(source: Path, images: Sequence[Path] = (), classes: Sequence[str] | None = None) -> Export:
    """Read a Label Studio JSON export (a list of tasks); ``images`` are the folders holding the uploaded images."""
    tasks = read_json(source)
    require(isinstance(tasks, list) and all(isinstance(t, dict) for t in tasks), source,
            "not a Label Studio JSON export (a list of tasks)")
    names, known = initial_classes(classes)
    folders = list(images) or [source.parent, source.parent / "images"]
    export = Export(source, names, [])
    for number, task in enumerate(tasks):
        name = _image_name(task) or f"task {task.get('id', number)}"
        annotation = _chosen_annotation(task)
        if annotation is None:
            export.problems.append(f"{name}: no annotation (task {task.get('id', number)}); left out")
            continue
        results = [r for r in annotation.get("result", []) if r.get("type") in ("brushlabels", "polygonlabels")]
        labels = [((r.get("value") or {}).get(r["type"]) or [None])[0] for r in results]
        unknown = sorted({str(label) for label in labels if label is None or class_index(names, label, known) is None})
        if unknown:
            export.problems.append(f"{name}: unknown label(s) {', '.join(map(repr, unknown))}; left out")
            continue
        path = _find_upload(name, folders)
        if path is None:
            export.problems.append(f"{name}: image not found in {', '.join(map(str, folders))}; left out")
            continue
        try:
            height, width = _size(results, path)
        except (KeyError, TypeError, ValueError) as error:
            raise ExportError(f"{source}: task {task.get('id', number)} ({name}): {error}") from None
        export.samples.append(Sample(path, name, height, width, _painter(source, name, results, names, height, width)))
    return export


def _size(results: list[dict], path: Path) -> tuple[int, int]:
    if results:
        return int(results[0]["original_height"]), int(results[0]["original_width"])
    from isnet.data.formats.common import image_size

    return image_size(path)


def _painter(source: Path, name: str, results: list[dict], names: list[str], height: int, width: int):
    def paint() -> list[Shape]:
        shapes = []
        for result in results:
            value = result["value"]
            label = names.index(str(value[result["type"]][0]))
            try:
                if result["type"] == "brushlabels":
                    require(value.get("format", "rle") == "rle", source, f"{name}: brush format {value.get('format')!r}, not 'rle'")
                    mask = rle_mask(value["rle"], height, width)
                else:
                    points = [float(c) for x, y in value["points"] for c in (x * width / 100, y * height / 100)]
                    mask = polygon_mask(points, height, width)
            except (KeyError, TypeError, ValueError) as error:
                raise ExportError(f"{source}: {name}: a {result['type']} result: {error}") from None
            shapes.append(Shape(label, mask))
        return shapes

    return paint


def prediction_task(image: str, labels: np.ndarray, classes: Sequence[str], model_version: str, score: float | None,
                    *, regions: Sequence[int], from_name: str = "tag", to_name: str = "image") -> dict:
    """A Label Studio task with one brush prediction per class of ``regions`` (import it as pre-annotations)."""
    height, width = labels.shape
    result = [{"id": f"isnet-{k}", "from_name": from_name, "to_name": to_name, "type": "brushlabels",
               "original_width": width, "original_height": height, "image_rotation": 0,
               "value": {"format": "rle", "rle": mask_rle(labels == k), "brushlabels": [classes[k]]}}
              for k in regions]
    prediction = {"model_version": model_version, "result": result}
    if score is not None:
        prediction["score"] = score
    return {"data": {to_name: image}, "predictions": [prediction]}

"""Fixing what the dataset doctor finds: a converted copy of a folder dataset, the input never changed.

:func:`convert_dataset` reads a folder dataset (:func:`isnet.data.doctor.diagnose` first) and
writes a new folder in the layout the readers take: ``images/<split>``, ``masks/<split>/<stem>.png``
(palette PNGs whose pixel values are the class indices), ``dataset.json`` and ``classes.txt``.

- RGB colour masks become index masks through a colour table the user gave: ``colours``, else the
  source's dataset.json when it holds every colour, else (no class names in the folder) the colours
  found (sorted by RGB value, so black is class 0), listed with their pixels, written as the
  record's palette with names ``class_<k>`` to confirm and rename. A classes.txt names classes but
  not their colours: with it and no table the masks are refused rather than matched by guessing.
- RGB masks with three equal channels keep one channel; 16-bit masks become 8-bit.
- Masks holding only 0 and 255 become 0/1 (classes background, foreground).
- ``reduce_zero_label``: stored 0 (unlabelled) becomes the ignore value and k becomes k − 1.
- Ignored pixels are written as the record's ``ignore_index`` (255 unless the source's
  ``dataset.json`` or the colour table says otherwise), which the written ``dataset.json`` keeps.
- ``ignore_values``: these stored values (say 11, CamVid's "unlabelled" just past its 11 classes)
  become the ignore value.
- Images with an EXIF orientation are written upright as PNG; a mask that matched the image's
  stored pixels is turned alike. Other images are copied byte for byte.
- Images with C ≠ 3 channels that the source record does not describe get the measured
  per-channel mean and std in ``dataset.json``.

The copy is written under a temporary name and renamed when complete, so a failed conversion
leaves nothing behind; pairs that cannot be converted (no mask, sizes that differ) are listed.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from isnet.data.channels import upright
from isnet.data.doctor import diagnose
from isnet.data.doctor_scan import UNSPLIT, Diagnosis, colour_table, colours_found, given_palette
from isnet.data.file_inspection import COLOUR, decode_mask, inspect_image
from isnet.data.image import DataFileError, decode_upright, open_image
from isnet.data.info import RGB, DatasetInfo
from isnet.utils.atomic_files import atomic_directory
from isnet.utils.json_text import load_json
from isnet.utils.visualize import label_image

IGNORE = 255  # the largest value an 8-bit mask holds


@dataclass
class Conversion:
    """What :func:`convert_dataset` did: the folder written, its record, the steps taken, what was left out."""

    output: Path
    record: DatasetInfo
    pairs: int = 0
    steps: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)


def _check_folders(source: Path, output: Path) -> None:
    source, target = source.resolve(), output.resolve()
    if target == source or source in target.parents or target in source.parents:
        raise ValueError(f"{output}: the converted copy must go to a folder outside {source} (the input is never changed)")
    if output.exists() and (not output.is_dir() or any(output.iterdir())):
        raise ValueError(f"{output}: already exists and is not an empty folder; name a new folder for the copy")


def _colour_record(d: Diagnosis, given: DatasetInfo | None, ignored: Sequence[RGB]) -> tuple[DatasetInfo, str]:
    """The record whose palette maps the colour masks to indices, and a sentence saying where it came from."""
    found = sorted(colour for colour in d.colours if colour not in ignored)
    for record, origin in ((given, "the colour table given"), (given_palette(d), "the source record's palette")):
        if record is None:
            continue
        unknown = [colour for colour in found if colour not in colour_table(record)]
        if not unknown:
            return record, f"RGB colour masks mapped to indices with {origin}"
        if record is given:
            shown = ", ".join(map(str, unknown[:8])) + (" ..." if len(unknown) > 8 else "")
            raise ValueError(f"{len(unknown)} colour(s) of the masks are not in the colour table: {shown}; add them, "
                             "or map them to ignore with --ignore-colour R,G,B")
    if len(found) > IGNORE:
        raise ValueError(f"the colour masks hold {len(found)} colours, more than 255 classes: not colour-coded masks "
                         "(photos, or masks blurred by resizing?)")
    if d.record is not None:  # names without colours: never matched by guessing
        raise ValueError(f"{d.root / 'classes.txt'} names {d.record.num_classes} classes but not their colours, and the "
                         f"RGB masks hold {len(found)}: give each class's colour with --colours DATASET_JSON (classes "
                         f"and palette in label order); the colours found: {colours_found(d)}")
    record = DatasetInfo(name=d.root.name, classes=tuple(f"class_{k}" for k in range(len(found))), palette=tuple(found))
    return record, (f"RGB colour masks mapped to indices: the {len(found)} colours found, sorted by RGB value, are "
                    f"classes class_0.. in dataset.json; confirm them and name them there: {colours_found(d)}")


def _value_table(d: Diagnosis, reduce_zero_label: bool, ignore: int,
                 ignore_values: Sequence[int] = ()) -> tuple[np.ndarray | None, str | None]:
    """A stored value → new value table (None: keep the values) and the sentence saying what it does;
    ``ignore`` is the ignore value of the source and of the copy."""
    if ignore_values:
        if reduce_zero_label or d.binary_0_255:
            raise ValueError("--ignore-value goes alone: not with --reduce-zero-label or masks of 0 and 255")
        table = np.arange(65536, dtype=np.int64)
        table[list(ignore_values)] = ignore
        return table, f"stored {', '.join(map(str, ignore_values))} mapped to {ignore} (ignored)"
    if d.binary_0_255:
        table = np.arange(65536, dtype=np.int64)
        table[IGNORE] = 1
        return table, "masks of 0 and 255 mapped to 0 and 1 (background, foreground)"
    if reduce_zero_label:
        table = np.arange(-1, 65535, dtype=np.int64)
        table[0], table[ignore] = ignore, ignore
        return table, f"stored 0 (unlabelled) mapped to {ignore} (ignored), k to k − 1 (reduce zero label)"
    return None, None


def _output_record(d: Diagnosis, colour_record: DatasetInfo | None, reduce_zero_label: bool) -> DatasetInfo:
    record = colour_record or d.record
    if d.binary_0_255 and (record is None or record.num_classes != 2):
        record = DatasetInfo(name=d.root.name, classes=("background", "foreground"), palette=((0, 0, 0), (255, 255, 255)))
    if record is None:
        raise ValueError(f"{d.root}: no classes.txt or dataset.json, and the masks are not colour-coded: the class "
                         "names are unknown; write classes.txt (one name per line, in label order) first")
    if d.channel_mean is not None and record.in_channels == 3:
        record = replace(record, mean=d.channel_mean, std=d.channel_std)
    return record


def _convert_mask(path: Path, table: dict[RGB, int] | None, values: np.ndarray | None) -> np.ndarray:
    """A mask file as uint8 class indices and the ignore value, or a DataFileError naming it."""
    pixels, encoding, _ = decode_mask(path)
    if encoding == COLOUR:
        packed = (pixels[..., 0].astype(np.int64) << 16) | (pixels[..., 1].astype(np.int64) << 8) | pixels[..., 2]
        found, inverse = np.unique(packed, return_inverse=True)
        lookup = np.array([table.get((int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255), -1) for v in found])
        if (lookup < 0).any():
            missing = [(int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255) for v in found[lookup < 0]]
            raise DataFileError(f"{path}: colours {missing[:5]} are not in the colour table")
        return lookup[inverse].reshape(pixels.shape[:2]).astype(np.uint8)
    labels = pixels.astype(np.int64)
    if values is not None:
        labels = values[labels]
    if labels.size and (labels.min() < 0 or labels.max() > IGNORE):
        raise DataFileError(f"{path}: values {labels.min()}..{labels.max()} do not fit 0..255 after conversion")
    return labels.astype(np.uint8)


def _write_image(path: Path, target_dir: Path) -> tuple[Path, int]:
    """Copy an image, or write it upright as PNG when it carries an EXIF orientation; (written file, orientation)."""
    info = inspect_image(path)
    if info.orientation == 1:
        return Path(shutil.copy2(path, target_dir / path.name)), 1
    target = target_dir / f"{path.stem}.png"
    with open_image(path) as image:
        picture = decode_upright(image, path)
        if picture.mode not in ("1", "L", "LA", "I", "I;16", "P", "RGB", "RGBA"):
            picture = picture.convert("RGB")
        picture.save(target, format="PNG")
    return target, info.orientation


def convert_dataset(
    source: str | Path,
    output: str | Path,
    *,
    colours: DatasetInfo | None = None,
    ignore_colours: Sequence[RGB] = (),
    reduce_zero_label: bool = False,
    ignore_values: Sequence[int] = (),
    progress: bool = False,
) -> Conversion:
    """Write a converted copy of the folder dataset ``source`` to ``output`` (see the module's docstring)."""
    source, output = Path(source), Path(output)
    _check_folders(source, output)
    d = diagnose(source, "folder", progress=progress)
    lossy = [str(mask.path) for mask in d.masks if mask.lossy]
    if lossy:
        raise DataFileError(f"{len(lossy)} mask(s) are JPEG (lossy: class values changed along borders), e.g. "
                            f"{lossy[0]}; export them as PNG from the annotation tool, then convert")
    colour_record, steps = None, []
    if any(mask.encoding == COLOUR for mask in d.masks):
        colour_record, step = _colour_record(d, colours, tuple(ignore_colours))
        steps.append(step)
    record = _output_record(d, colour_record, reduce_zero_label)
    values, step = _value_table(d, reduce_zero_label, record.ignore_index, ignore_values)
    steps += [step] if step else []
    ignored = {tuple(c): record.ignore_index for c in ignore_colours}
    table = {**colour_table(colour_record), **ignored} if colour_record else None
    conversion = Conversion(output, record, steps=steps)
    conversion.left_out = [*d.unreadable, *d.size_mismatches]
    for split in d.splits:
        conversion.left_out += [f"{image}: no mask (expected {mask})" for image, mask in split.pairing.missing]
        conversion.left_out += [f"{mask}: no image" for mask in split.pairing.orphans]

    rotated = 0
    with atomic_directory(output) as partial:  # the whole dataset appears at once, or nothing does
        for split in d.splits:
            name = split.name if split.name != UNSPLIT else "train"
            image_dir, mask_dir = partial / "images" / name, partial / "masks" / name
            image_dir.mkdir(parents=True)
            mask_dir.mkdir(parents=True)
            for image_path, mask_path in split.pairing.pairs:
                if image_path in d.unusable:
                    continue
                labels = _convert_mask(mask_path, table, values)
                written, orientation = _write_image(image_path, image_dir)
                if orientation != 1:
                    rotated += 1
                    info = inspect_image(written)
                    if labels.shape != info.shape:  # the mask matched the stored pixels: turn it alike
                        labels = np.ascontiguousarray(upright(labels, orientation))
                label_image(labels, record.palette).save(mask_dir / f"{written.stem}.png", format="PNG")
                conversion.pairs += 1
        (partial / "dataset.json").write_text(record.to_json(), encoding="utf-8")
        (partial / "classes.txt").write_text("\n".join(record.classes) + "\n", encoding="utf-8")
    if rotated:
        conversion.steps.append(f"{rotated} image(s) with an EXIF orientation written upright as PNG")
    if d.channel_mean is not None and record.mean == d.channel_mean:
        conversion.steps.append(f"{record.in_channels}-channel images: measured mean {list(record.mean)} and std "
                                f"{list(record.std)} written to dataset.json")
    if any(split.name == UNSPLIT for split in d.splits):
        conversion.steps.append("images/ and masks/ without split folders written as the split train")
    return conversion


def read_colour_table(path: str | Path) -> DatasetInfo:
    """A colour table for :func:`convert_dataset`: a dataset.json record (classes and palette in label order)."""
    from isnet.data.folder import folder_record

    path = Path(path)
    if path.is_dir():
        return folder_record(path)
    try:
        data = load_json(path.read_text(encoding="utf-8"))
        if isinstance(data, dict):
            data.setdefault("name", path.stem)  # a colour table needs no name of its own
        return DatasetInfo.from_json(json.dumps(data))
    except (OSError, ValueError, TypeError) as error:
        raise ValueError(f"{path}: not a dataset.json colour table (classes and palette): {error}") from None



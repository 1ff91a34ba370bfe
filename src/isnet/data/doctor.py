"""The dataset doctor: what would make training on a dataset fail or go silently wrong, found before it runs.

:func:`diagnose` reads a dataset's files once (:func:`isnet.data.doctor_scan.scan`) and turns
what it saw into findings, each with what to do about it. ``isnet data check`` prints them and
writes a report (:mod:`isnet.data.doctor_report`); ``isnet data convert``
(:mod:`isnet.data.convert`) fixes what can be fixed mechanically.

Severity ``error``: training would stop on it or, worse, run and learn the wrong thing (an RGB
mask, a 0/255 mask read as background + ignore, values beyond the classes, a mask that does not
line up with its image); ``isnet data check`` exits 1. ``warning``: legal but probably not what
was meant (a class no training mask shows, a class 0 named "unlabelled", an alpha channel that
is dropped). ``note``: how the data will be read, for the record.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isnet.data.class_weights import median_frequency_from_counts
from isnet.data.doctor_scan import UNSPLIT, Diagnosis, Finding, colour_table, colours_found, given_palette, scan
from isnet.data.file_inspection import COLOUR, GREY_RGB, SIXTEEN_BIT

SHOWN_FILES = 20  # files named per finding in the report (the screen shows fewer)
UNLABELLED_NAMES = {"unlabelled", "unlabeled", "void", "ignore", "ignored", "other", "others", "unknown", "none",
                    "undefined", "unlabelled pixels"}
IMBALANCE = 10  # a class this many times rarer than the most frequent one makes class weights worth a try


def convert_command(diagnosis: Diagnosis, *options: str) -> str:
    """The ``isnet data convert`` line that writes a fixed copy beside the dataset."""
    target = diagnosis.root.parent / f"{diagnosis.root.name}_converted"
    return " ".join(["isnet data convert", str(diagnosis.root), str(target), *options])


def _finding(severity: str, problem: str, action: str, files: Sequence[str] = ()) -> Finding:
    return Finding(severity, problem, action, list(files[:SHOWN_FILES]), len(files))


def diagnose(root: str | Path, dataset: str = "folder", *, progress: bool = False) -> Diagnosis:
    """Read every file of the dataset at ``root`` (a folder dataset, or one of :data:`isnet.data.DATASETS`)
    once; what was found, with the findings (``.ok``: no error among them)."""
    diagnosis = scan(root, dataset, progress=progress)
    add_findings(diagnosis)
    return diagnosis


def add_findings(diagnosis: Diagnosis) -> None:
    """Fill ``diagnosis.findings``, errors first."""
    found = [*_layout(diagnosis), *_files(diagnosis), *_masks(diagnosis), *_values(diagnosis),
             *_classes(diagnosis), *_images(diagnosis)]
    order = {"error": 0, "warning": 1, "note": 2}
    diagnosis.findings = sorted(found, key=lambda finding: order[finding.severity])


def _layout(d: Diagnosis) -> list[Finding]:
    found = []
    for problem in d.reader_errors:
        if d.dataset == "folder":
            action = ("write classes.txt (one class name per line, in label order; for binary masks: background, "
                      "then the foreground's name) or a dataset.json; `isnet data convert` writes dataset.json "
                      "from the colours of RGB masks")
        else:
            action = f"give the layout the {d.dataset} reader expects (see the message), or check it as --dataset folder"
        found.append(_finding("error", problem, action))
    if d.dataset != "folder":
        return found
    if d.mask_folder != "masks":
        found.append(_finding("error", f"the masks are in {d.mask_folder}/, but a folder dataset reads masks/",
                              f"rename {d.root / d.mask_folder} to {d.root / 'masks'}, or run `{convert_command(d)}`"))
    if any(split.name == UNSPLIT for split in d.splits):
        found.append(_finding("error", "images/ holds the images itself, but training reads images/<split> "
                              "(e.g. images/train, images/val)",
                              f"move images and masks into train and val folders, or run `{convert_command(d)}` "
                              "(writes them as the split train)"))
    return found


def _files(d: Diagnosis) -> list[Finding]:
    found = []
    for split in d.splits:
        pairing, where = split.pairing, f"{split.name or 'images'}: "
        if pairing.missing:
            found.append(_finding("error", f"{where}{len(pairing.missing)} image(s) without a mask",
                                  "add the masks (same stem as the image), or remove the images (a partly "
                                  "extracted archive?)", [f"{image} (expected {mask})" for image, mask in pairing.missing]))
        if pairing.orphans:
            found.append(_finding("error", f"{where}{len(pairing.orphans)} mask(s) without an image",
                                  "add the images, or remove the masks", [str(mask) for mask in pairing.orphans]))
        if pairing.shared:
            found.append(_finding("error", f"{where}{len(pairing.shared)} image(s) share a stem with another image",
                                  "rename or remove one of each pair: both would use one mask",
                                  [f"{a} and {b}" for a, b, _ in pairing.shared]))
    # JPEG masks cannot be converted (their finding says so); other formats are written as PNG
    other_suffix = [str(mask.path) for mask in d.masks if mask.path.suffix.lower() != ".png" and not mask.lossy]
    if d.dataset == "folder" and other_suffix:
        suffixes = ", ".join(sorted({Path(path).suffix for path in other_suffix}))
        found.append(_finding("error", f"{len(other_suffix)} mask(s) stored as {suffixes}: a folder dataset reads "
                              "<stem>.png", f"run `{convert_command(d)}` (writes PNG masks)", other_suffix))
    if d.unreadable:
        found.append(_finding("error", f"{len(d.unreadable)} file(s) cannot be read", "replace or remove them",
                              d.unreadable))
    if d.size_mismatches:
        found.append(_finding("error", f"{len(d.size_mismatches)} mask(s) of another size than their image",
                              "re-export those masks at the image's size (a resized image, or the wrong mask?)",
                              d.size_mismatches))
    if d.exif_mismatches:
        found.append(_finding("error", f"{len(d.exif_mismatches)} image(s) carry an EXIF rotation that their mask "
                              "does not: the mask matches the stored pixels, the image is used as displayed",
                              f"run `{convert_command(d)}`: it writes the image upright and turns its mask alike",
                              d.exif_mismatches))
    return found


def _masks(d: Diagnosis) -> list[Finding]:
    found = []
    by_encoding: dict[str, list[str]] = {}
    for mask in d.masks:
        by_encoding.setdefault(mask.encoding, []).append(str(mask.path))
    lossy = [str(mask.path) for mask in d.masks if mask.lossy]
    if lossy:
        found.append(_finding("error", f"{len(lossy)} mask(s) stored as JPEG, whose lossy compression changes class "
                              "values along region borders", "export the masks again as PNG from the annotation "
                              "tool: the lost values cannot be recovered", lossy))
    if COLOUR in by_encoding:
        colours = d.colours
        table = colour_table(given_palette(d))
        unknown = [colour for colour in colours if colour not in table]
        if table and not unknown:
            action = f"run `{convert_command(d)}`: every colour is in the record's palette, which maps them to indices"
        elif table:
            shown = ", ".join(map(str, unknown[:5]))
            action = (f"{len(unknown)} colour(s) are not in the record's palette ({shown}); add them to "
                      f"dataset.json, or map them to ignore: `{convert_command(d, '--ignore-colour R,G,B')}`")
        elif d.record is not None:  # names without colours: which colour is which class is not guessed
            action = (f"{d.root / 'classes.txt'} names {d.record.num_classes} classes but not their colours; write "
                      f"each class's colour into a dataset.json (classes and palette in label order) and run "
                      f"`{convert_command(d, '--colours', 'DATASET_JSON')}`; the colours found: {colours_found(d)}")
        else:
            action = (f"run `{convert_command(d)}`: it makes the {len(colours)} colours found the classes "
                      f"class_0.. (by RGB value) of dataset.json, for you to confirm and name; the colours: "
                      f"{colours_found(d)}; or give your colour table with --colours")
        found.append(_finding("error", f"{len(by_encoding[COLOUR])} mask(s) are RGB colour images "
                              f"({len(colours)} colours): the readers take one channel of class indices", action,
                              by_encoding[COLOUR]))
    if GREY_RGB in by_encoding:
        found.append(_finding("error", f"{len(by_encoding[GREY_RGB])} mask(s) are RGB images whose three channels "
                              "are equal (index maps saved as RGB)", f"run `{convert_command(d)}` (keeps one channel)",
                              by_encoding[GREY_RGB]))
    if SIXTEEN_BIT in by_encoding:
        found.append(_finding("note", f"{len(by_encoding[SIXTEEN_BIT])} mask(s) are 16-bit",
                              "read exactly while their values fit 0..255; the converted copy is 8-bit",
                              by_encoding[SIXTEEN_BIT]))
    return found


def _values(d: Diagnosis) -> list[Finding]:
    found = []
    if d.binary_0_255:
        found.append(_finding("error", "every mask holds only 0 and 255: 255 is read as 'ignore', so the model "
                              "would learn background only", f"run `{convert_command(d)}`: it maps 255 to 1 and "
                              "writes the classes background, foreground", [str(m.path) for m in d.masks]))
    if d.record is None:
        return found
    num_classes = d.record.num_classes
    if num_classes == 1:
        found.append(_finding("error", f"the record names one class ({d.record.classes[0]}): a model needs two or more",
                              "for binary masks name two classes, background first (classes.txt: background, "
                              f"{d.record.classes[0]}); binary segmentation is the 2-class model"))
    if d.invalid:
        values = sorted(d.invalid)
        files = sorted({path for paths in d.invalid.values() for path in paths})
        shown = ", ".join(map(str, values[:10])) + (", ..." if len(values) > 10 else "")
        if values == [num_classes]:  # just past the classes: the unlabelled value, most likely, not a shift
            action = (f"if {num_classes} marks unlabelled pixels, run `{convert_command(d, '--ignore-value', str(num_classes))}` "
                      f"({num_classes} becomes {d.record.ignore_index}, ignored); if instead 0 marks them and k is "
                      f"class k − 1 (ADE20K style), run `{convert_command(d, '--reduce-zero-label')}`")
        else:
            action = ("name the missing classes in the record (classes.txt / dataset.json), or map these values to "
                      f"{d.record.ignore_index} (ignored)")
        found.append(_finding("error", f"stored values {shown} are outside the {num_classes} classes (0..{num_classes - 1}, "
                              f"{d.record.ignore_index} = ignore): training stops at the first such mask", action, files))
    first = " ".join(d.record.classes[0].replace("_", " ").lower().split())
    if first in UNLABELLED_NAMES:
        found.append(_finding("warning", f"class 0 is named {d.record.classes[0]!r}: the model learns it as a class "
                              "and it is scored in the mIoU", "if it marks unlabelled pixels, run "
                              f"`{convert_command(d, '--reduce-zero-label')}` and drop it from the class list"))
    return found


def _classes(d: Diagnosis) -> list[Finding]:
    found = []
    if d.record is None or not d.record.num_classes:
        return found
    names = d.record.classes
    train = d.train_split
    for split in d.splits:
        if split.pixels is None or not split.pixels.sum():
            continue
        absent = [names[k] for k in np.flatnonzero(split.pixels == 0)]
        if not absent:
            continue
        if split is train:
            problem, consequence = "training", "the model never sees them and cannot learn them"
        else:
            problem, consequence = f"'{split.name}'", "their IoU is NaN there and the mIoU averages the other classes"
        found.append(_finding("warning", f"{len(absent)} class(es) appear in no {problem} mask: {', '.join(absent[:12])}"
                              + (", ..." if len(absent) > 12 else ""), consequence + "; check the class list and "
                              "the split"))
    if train is not None and train.pixels is not None and train.pixels.sum():
        present = train.pixels[train.pixels > 0]
        if present.max() > IMBALANCE * present.min():
            weights = median_frequency_from_counts(train.pixels, train.pixels_of_images_with)
            rare = names[int(np.argmin(np.where(train.pixels > 0, train.pixels, np.inf)))]
            found.append(_finding("note", f"imbalanced classes: the most frequent has {present.max() / present.min():.0f}× "
                                  f"the pixels of the rarest ({rare})",
                                  "try `isnet train ... --set class_weights=median_frequency` (weights "
                                  + ", ".join(f"{n} {w:.2f}" for n, w in zip(names, weights)) + ")"))
    return found


def _images(d: Diagnosis) -> list[Finding]:
    found = []
    record_channels = d.record.in_channels if d.record is not None else 3
    modes = Counter(image.mode for image in d.images)
    by_mode: dict[str, list[str]] = {}
    for image in d.images:
        by_mode.setdefault(image.mode, []).append(str(image.path))
    turned_masks = {entry.split(" is ")[0] for entry in d.exif_mismatches}  # reported as errors already
    rotated = [str(image.path) for image in d.images if image.orientation != 1 and str(image.path) not in turned_masks]
    if rotated:
        found.append(_finding("note", f"{len(rotated)} image(s) carry an EXIF orientation and are used as displayed",
                              f"nothing to do while their masks match the displayed image; `{convert_command(d)}` "
                              "writes them upright", rotated))
    measured = ""
    if d.channel_mean is not None:
        measured = f" (measured on the training images: mean {list(d.channel_mean)}, std {list(d.channel_std)})"
    if record_channels != 3:
        wrong = [str(image.path) for image in d.images if image.channels != record_channels]
        if wrong:
            found.append(_finding("error", f"{len(wrong)} image(s) do not have the record's {record_channels} channels",
                                  "store every image with the same channels", wrong))
        found.append(_finding("note", f"images are read as {record_channels} channels, normalised with the record's "
                              f"mean {list(d.record.mean)} and std {list(d.record.std)}{measured}",
                              "the model takes in_channels = "
                              f"{record_channels}; RGB weights get their first convolution inflated"))
        return found
    stacks = [image for image in d.images if image.mode == "stack"]
    if stacks:
        channels = Counter(image.channels for image in stacks).most_common(1)[0][0]
        found.append(_finding("error", f"{len(stacks)} image(s) have {channels} channels, which RGB reading cannot take",
                              f"give dataset.json a mean and std of {channels} values each{measured}, or run "
                              f"`{convert_command(d)}`, which writes them", [str(image.path) for image in stacks]))
    with_alpha = by_mode.get("RGBA", []) + by_mode.get("LA", []) + by_mode.get("PA", [])
    if with_alpha:
        found.append(_finding("warning", f"{len(with_alpha)} image(s) have an alpha channel, which is dropped",
                              "if it holds data (e.g. near infrared as the 4th channel), give dataset.json a mean and "
                              "std of 4 values: the model then takes 4 channels", with_alpha))
    grey = by_mode.get("L", []) + by_mode.get("1", []) + [p for m, ps in by_mode.items() if m.startswith("I") for p in ps]
    if grey:
        found.append(_finding("note", f"{len(grey)} grayscale image(s) (modes {', '.join(m for m in modes if m in ('L', '1') or m.startswith('I'))})",
                              "read as RGB with three equal channels (16-bit scaled to 8 bits); for full 16-bit "
                              "precision give dataset.json a mean and std of 1 value", grey))
    return found

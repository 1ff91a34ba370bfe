"""``isnet data check`` / ``isnet data convert``: find what would spoil training on a dataset, and fix it in a copy."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

HELP = "check a dataset before training (check), or write a fixed copy of it (convert)"
CHECK_HELP = ("read every file of a dataset and report what would make training fail or go silently wrong, "
              "each with what to do; exit 1 when something would (report.md and a class-frequency chart)")
CONVERT_HINT = ("write a fixed copy of a folder dataset: RGB colour masks to index masks, 0/255 to 0/1, "
                "ADE-style shift (--reduce-zero-label), EXIF orientation applied; the input is never changed")


def colour(text: str) -> tuple[int, int, int]:
    """``R,G,B`` with three integers 0..255."""
    parts = text.replace(" ", "").split(",")
    try:
        values = tuple(int(part) for part in parts)
    except ValueError:
        values = ()
    if len(values) != 3 or not all(0 <= value <= 255 for value in values):
        raise argparse.ArgumentTypeError(f"{text!r} is not a colour R,G,B of three integers 0..255")
    return values  # type: ignore[return-value]


def mask_value(text: str) -> int:
    """A stored mask value to ignore: an integer 0..254 (255 is ignored already)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if not 0 <= value < 255:
        raise argparse.ArgumentTypeError(f"{text} is not a mask value 0..254 (255 is ignored already)")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from isnet.data import DATASET_NAMES

    commands = parser.add_subparsers(dest="data_command", required=True)
    check = commands.add_parser("check", help=CHECK_HELP, description=CHECK_HELP)
    check.add_argument("data_root", help="the dataset folder")
    check.add_argument("--dataset", choices=DATASET_NAMES, default="folder",
                       help="folder: images/<split>, masks/<split>, classes.txt or dataset.json (default); "
                            "or a named dataset, read by its reader")
    check.add_argument("--output", default="outputs/data_check", help="folder for report.md and class_frequencies.png")
    from isnet.data.formats import FORMATS

    convert = commands.add_parser("convert", help=CONVERT_HINT, description=CONVERT_HINT)
    convert.add_argument("data_root", help="a folder dataset (images/, masks/, with or without split folders); "
                                           "with --from, the annotation tool's export (a file, folder or zip)")
    convert.add_argument("output", help="a new folder for the converted copy")
    convert.add_argument("--colours", metavar="DATASET_JSON",
                         help="colour table of RGB masks: a dataset.json (class names and palette in label order)")
    convert.add_argument("--ignore-colour", action="append", type=colour, default=[], metavar="R,G,B",
                         help="map this mask colour to the ignore value (the record's ignore_index, 255 by default), "
                              "e.g. 0,0,0 for unlabelled; repeatable")
    convert.add_argument("--ignore-value", action="append", type=mask_value, default=[], metavar="N",
                         help="map this stored mask value to the ignore value (255 unless the record says otherwise), e.g. 11 for CamVid's unlabelled; repeatable")
    convert.add_argument("--reduce-zero-label", action="store_true",
                         help="stored 0 means unlabelled (ADE20K style): 0 → the ignore value (255 by default), k → k − 1")
    tool = convert.add_argument_group("an annotation tool's export (see the README: From labelling tool to model and back)")
    tool.add_argument("--from", dest="tool", choices=FORMATS,
                      help="coco: instances/stuff JSON; cvat: annotations.xml or Segmentation mask 1.1 zip; labelme: "
                           "a folder of per-image JSON; labelstudio: JSON export; voc: SegmentationClass palette PNGs")
    tool.add_argument("--images", action="append", default=[], metavar="DIR",
                      help="a folder holding the export's images (default: beside the export); repeatable")
    tool.add_argument("--classes", metavar="FILE",
                      help="class names in label order, one a line (0 is usually background); labels not in it are "
                           "reported as unknown (default: the export's labels, background first)")


def run(args: argparse.Namespace) -> int:
    return _check(args) if args.data_command == "check" else _convert(args)


def _check(args: argparse.Namespace) -> int:
    from isnet.data.doctor import diagnose
    from isnet.data.doctor_report import diagnosis_text, write_report

    diagnosis = diagnose(args.data_root, args.dataset, progress=True)
    report = write_report(diagnosis, args.output)
    print(diagnosis_text(diagnosis, report))
    return 0 if diagnosis.ok else 1


def _convert(args: argparse.Namespace) -> int:
    from isnet.data.convert import convert_dataset, read_colour_table

    if args.tool is not None:
        return _convert_export(args)
    table = read_colour_table(args.colours) if args.colours else None
    conversion = convert_dataset(args.data_root, args.output, colours=table, ignore_colours=args.ignore_colour,
                                 reduce_zero_label=args.reduce_zero_label, ignore_values=args.ignore_value,
                                 progress=True)
    print(f"wrote {conversion.pairs} image/mask pairs to {conversion.output} "
          f"({conversion.record.num_classes} classes: {', '.join(conversion.record.classes[:8])}"
          f"{', ...' if conversion.record.num_classes > 8 else ''})")
    for step in conversion.steps:
        print(f"  {step}")
    return _check_converted(conversion.output, conversion.left_out)


def _convert_export(args: argparse.Namespace) -> int:
    """``--from TOOL``: an annotation tool's export to a folder dataset, then ``data check`` on it."""
    from isnet.data.folder import read_class_names
    from isnet.data.formats import convert_export
    from isnet.utils.errors import ConfigError

    if args.colours or args.ignore_colour or args.reduce_zero_label:
        raise ConfigError("--colours, --ignore-colour and --reduce-zero-label fix a folder dataset; an export (--from) "
                          "carries its classes: convert it, then convert the folder again if needed")
    classes = read_class_names(Path(args.classes)) if args.classes else None
    export, pairs, notes = convert_export(args.tool, args.data_root, args.output, images=args.images, classes=classes)
    shown = ", ".join(export.classes[:8]) + (", ..." if len(export.classes) > 8 else "")
    print(f"wrote {pairs} image/mask pairs from the {args.tool} export {args.data_root} to {args.output} "
          f"({len(export.classes)} classes: {shown})")
    for note in notes:
        print(f"  {note}")
    return _check_converted(Path(args.output), export.problems)


def _check_converted(output: Path, left_out: list[str]) -> int:
    """Say what was left out, run ``data check`` on the written folder; 0 when nothing was left out and it is clean."""
    from isnet.data.doctor import diagnose
    from isnet.data.doctor_report import diagnosis_text

    if left_out:
        print(f"{len(left_out)} pair(s) left out:", file=sys.stderr)
        for reason in left_out:
            print(f"  {reason}", file=sys.stderr)
    check = diagnose(output, "folder")
    print(f"isnet data check {output}:")
    print(diagnosis_text(check))
    return 0 if check.ok and not left_out else 1

"""``isnet data check`` / ``isnet data convert``: find what would spoil training on a dataset, and fix it in a copy."""

from __future__ import annotations

import argparse
import sys

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
    convert = commands.add_parser("convert", help=CONVERT_HINT, description=CONVERT_HINT)
    convert.add_argument("data_root", help="a folder dataset (images/, masks/, with or without split folders)")
    convert.add_argument("output", help="a new folder for the converted copy")
    convert.add_argument("--colours", metavar="DATASET_JSON",
                         help="colour table of RGB masks: a dataset.json (class names and palette in label order)")
    convert.add_argument("--ignore-colour", action="append", type=colour, default=[], metavar="R,G,B",
                         help="map this mask colour to 255 (ignored), e.g. 0,0,0 for unlabelled; repeatable")
    convert.add_argument("--ignore-value", action="append", type=mask_value, default=[], metavar="N",
                         help="map this stored mask value to 255 (ignored), e.g. 11 for CamVid's unlabelled; repeatable")
    convert.add_argument("--reduce-zero-label", action="store_true",
                         help="stored 0 means unlabelled (ADE20K style): 0 → 255 (ignored), k → k − 1")


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
    from isnet.data.doctor import diagnose
    from isnet.data.doctor_report import diagnosis_text

    table = read_colour_table(args.colours) if args.colours else None
    conversion = convert_dataset(args.data_root, args.output, colours=table, ignore_colours=args.ignore_colour,
                                 reduce_zero_label=args.reduce_zero_label, ignore_values=args.ignore_value,
                                 progress=True)
    print(f"wrote {conversion.pairs} image/mask pairs to {conversion.output} "
          f"({conversion.record.num_classes} classes: {', '.join(conversion.record.classes[:8])}"
          f"{', ...' if conversion.record.num_classes > 8 else ''})")
    for step in conversion.steps:
        print(f"  {step}")
    if conversion.left_out:
        print(f"{len(conversion.left_out)} pair(s) left out:", file=sys.stderr)
        for reason in conversion.left_out:
            print(f"  {reason}", file=sys.stderr)
    check = diagnose(conversion.output, "folder")
    print(f"isnet data check {conversion.output}:")
    print(diagnosis_text(check))
    return 0 if check.ok and not conversion.left_out else 1

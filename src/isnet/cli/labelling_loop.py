"""``isnet predict --rank uncertainty --top N --export TOOL``: the options, and what runs after the predictions."""

from __future__ import annotations

import argparse
from pathlib import Path

from isnet.cli.common import positive_int, usage_error


def add_labelling_arguments(parser: argparse.ArgumentParser) -> None:
    from isnet.apps.pre_annotations import EXPORTS

    loop = parser.add_argument_group("back to the labelling tool (see the README: From labelling tool to model and back)")
    loop.add_argument("--export", choices=EXPORTS,
                      help="also write the label maps as that tool's pre-annotation import: coco_predictions.json, "
                           "labelstudio_predictions.json or cvat_segmentation_mask.zip")
    loop.add_argument("--rank", choices=("uncertainty",),
                      help="write ranked.csv: images by mean 1 − (calibrated) probability of the predicted class, "
                           "most uncertain first (implies --confidence)")
    loop.add_argument("--rank-class", metavar="NAME", help="rank by the uncertainty of the pixels predicted as this class")
    loop.add_argument("--top", type=positive_int, metavar="N", help="with --rank: export only the N most uncertain images")


def check_labelling_arguments(args: argparse.Namespace) -> None:
    if (args.top or args.rank_class) and not args.rank:
        usage_error("--top and --rank-class go with --rank uncertainty")
    if args.rank:
        args.confidence = True  # the ranking reads the confidence maps


def labelling_outputs(args: argparse.Namespace, paths: list[Path], output: Path, classes, palette) -> None:
    """``--rank`` / ``--export``: the ranked list and the pre-annotations, from the label and confidence maps written."""
    from isnet.apps.pre_annotations import rank_and_export

    model_version = Path(args.checkpoint).stem if args.checkpoint else (args.model or "isnet")
    for line in rank_and_export(paths, output, list(classes), palette, rank=bool(args.rank), rank_class=args.rank_class,
                                top=args.top, export=args.export, model_version=model_version):
        print(line)

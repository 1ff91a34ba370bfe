"""``isnet eval``: score a model on a dataset and write a report with plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


from isnet.cli.common import (
    add_inference_arguments,
    add_model_arguments,
    add_threads_argument,
    add_threshold_argument,
    inference_config,
    load_predictor_from_args,
    positive_int,
    protocol_line,
    test_resize,
    thresholded,
    usage_error,
)

HELP = "score a model on a dataset; writes a report with plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from isnet.data import DATASET_NAMES
    from isnet.deploy.fast_paths import add_runtime_arguments

    add_model_arguments(parser)
    parser.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    parser.add_argument("--data-root", required=True)
    parser.add_argument("--split", help="default: the dataset's validation split")
    parser.add_argument("--fit", type=positive_int, nargs=2, metavar=("LONG", "SHORT"), help="test-time resize box")
    parser.add_argument("--protocol", choices=("released", "custom"), default="custom",
                        help="released: the dataset's published ms+flip protocol; custom: the flags below")
    parser.add_argument("--output", default="outputs/eval")
    parser.add_argument("--per-image", action="store_true",
                        help="also per_image.csv (mIoU, accuracy, worst class of each image), a histogram of "
                             "per-image mIoU and worst/: the --worst images of lowest mIoU as panels")
    parser.add_argument("--worst", type=positive_int, default=8, metavar="N", help="images drawn by --per-image")
    add_runtime_arguments(parser, default_precision="fp32")
    add_inference_arguments(parser)
    add_threads_argument(parser)
    add_threshold_argument(parser)


def eval_data(args: argparse.Namespace, predictor):
    """The evaluation data settings and the test resize, ``(fit, resize_to, where it comes from)``.

    ``--fit`` wins; else the resize the model's dataset record carries (the one its training
    evaluated at); else the data's: a named dataset's record, a folder's ``dataset.json``,
    else none (images as they are).
    """
    from dataclasses import replace

    from isnet.data import DATASETS
    from isnet.data.folder import FOLDER_RECORD, folder_record
    from isnet.training.config import DataConfig

    if args.dataset != "folder":
        data, source = DataConfig.of(DATASETS[args.dataset], root=args.data_root), f"the {args.dataset} record"
    elif (Path(args.data_root) / FOLDER_RECORD).is_file():
        data, source = DataConfig.of(folder_record(args.data_root), root=args.data_root), f"{args.data_root}/{FOLDER_RECORD}"
    else:
        data, source = DataConfig(dataset="folder", root=args.data_root), "the folder (no dataset.json): images as they are"
    resize_to = data.dataset_record().test.resize_to if data.eval_fit_size is None else None
    resize = test_resize(args, predictor, (data.eval_fit_size, resize_to, source))
    return replace(data, eval_fit_size=resize[0]), resize


def run(args: argparse.Namespace) -> int:

    from isnet.evaluation import evaluate, write_report
    from isnet.evaluation.report import write_summary
    from isnet.evaluation.boundary import BoundaryIoU
    from isnet.evaluation.per_image import PerImageScores
    from isnet.evaluation.calibration import CalibrationBins, write_calibration_report

    predictor = thresholded(load_predictor_from_args(args), args)
    data, resize = eval_data(args, predictor)
    split = args.split or data.val_split
    dataset = data.build(split, train=False)
    num_classes = predictor.config.num_classes
    if dataset.info.num_classes != num_classes:
        print(f"isnet eval: {args.checkpoint or args.weights or args.model} predicts {num_classes} classes but "
              f"{args.data_root} ({args.dataset}) has {dataset.info.num_classes}; nothing was evaluated",
              file=sys.stderr)
        return 1
    channels = predictor.config.backbone.in_channels
    if dataset.info.in_channels != channels:
        print(f"isnet eval: {args.checkpoint or args.weights or args.model} takes {channels} image channels but "
              f"{args.data_root} ({args.dataset}) has {dataset.info.in_channels}; nothing was evaluated", file=sys.stderr)
        return 1
    if args.protocol == "released":
        config = dataset.info.test.multi_scale
        if config is None:
            usage_error(f"--protocol released: {args.dataset} has no released multi-scale protocol; "
                         "give --scales / --flip / --mode instead")
    else:
        config = inference_config(args, dataset.info.flip_pairs)
    protocol = protocol_line(resize, config)
    print(protocol, file=sys.stderr)
    bins = CalibrationBins()  # samples carry IGNORE_INDEX where the files store the record's ignore value
    boundary = BoundaryIoU(num_classes)
    per_image = PerImageScores(num_classes, worst=args.worst) if args.per_image else None
    matrix = evaluate(predictor, dataset, num_classes, config, device=predictor.device, progress=True, calibration=bins,
                      observers=[boundary] + ([per_image] if per_image else []))
    summary = write_report(matrix, dataset.info.classes, args.output, title=f"{data.dataset} {split}", boundary=boundary)
    print((Path(args.output) / "scores.txt").read_text())
    print(write_calibration_report(bins, args.output, summary, title=f"{data.dataset} {split}"))
    if summary:  # the exact path that gave these numbers
        summary["path"] = {"model": predictor.source, "runtime": predictor.runtime, "precision": predictor.precision,
                           "device": str(predictor.device), "temperature": predictor.temperature, "protocol": protocol}
        write_summary(Path(args.output), summary)
    print(f"path: {predictor.describe()}; {protocol}")
    print(f"report: {args.output} (per_class_iou.png, confusion_matrix.png, reliability.png, per_class.csv)")
    if per_image is not None:
        panels = per_image.write(args.output, dataset.info.classes, dataset.info.palette, title=f"{data.dataset} {split}")
        print(f"per image: {args.output}/per_image.csv, per_image_miou.png; the {len(panels)} worst in "
              f"{args.output}/worst/")
    return 0 if summary else 1

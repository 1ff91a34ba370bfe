"""``isnet eval``: score a model on a dataset and write a report with plots."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from isnet.cli.common import (
    add_inference_arguments,
    add_model_arguments,
    add_threshold_argument,
    calibrated,
    inference_config,
    load_model_from_args,
    positive_int,
    resolve_device,
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
    add_runtime_arguments(parser)
    add_inference_arguments(parser)
    add_threshold_argument(parser)


def eval_data(args: argparse.Namespace, model: torch.nn.Module):
    """The evaluation data settings and a sentence saying where the test protocol comes from.

    A named dataset is tested by its record's protocol; a folder by its ``dataset.json``, else
    by the protocol the checkpoint's record carries, else as its images are. ``--fit`` wins.
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
        checkpoint_record = getattr(model, "dataset", None)
        if checkpoint_record is not None and checkpoint_record.test.fit_size is not None:
            data = replace(data, eval_fit_size=checkpoint_record.test.fit_size)
            source = f"the dataset record of {args.checkpoint or args.weights}"
    if args.fit is not None:
        data, source = replace(data, eval_fit_size=tuple(args.fit)), getattr(args, "fit_source", "--fit")
    resize = f"fit {data.eval_fit_size[0]}×{data.eval_fit_size[1]}" if data.eval_fit_size else "no resize"
    return data, f"test resize: {resize} (from {source})"


def run(args: argparse.Namespace) -> int:
    from isnet.evaluation import evaluate, write_report
    from isnet.evaluation.boundary import BoundaryIoU
    from isnet.evaluation.per_image import PerImageScores
    from isnet.evaluation.calibration import CalibrationBins, write_calibration_report

    device = resolve_device(args)
    model = thresholded(calibrated(load_model_from_args(args), args), args)
    data, protocol = eval_data(args, model)
    split = args.split or data.val_split
    dataset = data.build(split, train=False)
    num_classes = model.config.num_classes
    if dataset.info.num_classes != num_classes:
        print(f"isnet eval: {args.checkpoint or args.weights or args.model} predicts {num_classes} classes but "
              f"{args.data_root} ({args.dataset}) has {dataset.info.num_classes}; nothing was evaluated",
              file=sys.stderr)
        return 1
    channels = model.config.backbone.in_channels
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
    print(protocol)
    bins = CalibrationBins(ignore_index=dataset.info.ignore_index)
    boundary = BoundaryIoU(num_classes, ignore_index=dataset.info.ignore_index)
    per_image = PerImageScores(num_classes, dataset.info.ignore_index, args.worst) if args.per_image else None
    matrix = evaluate(model.to(device), dataset, num_classes, config, device=device, progress=True, calibration=bins,
                      observers=[boundary] + ([per_image] if per_image else []))
    summary = write_report(matrix, dataset.info.classes, args.output, title=f"{data.dataset} {split}", boundary=boundary)
    print((Path(args.output) / "scores.txt").read_text())
    print(write_calibration_report(bins, args.output, summary, title=f"{data.dataset} {split}"))
    print(f"report: {args.output} (per_class_iou.png, confusion_matrix.png, reliability.png, per_class.csv)")
    if per_image is not None:
        panels = per_image.write(args.output, dataset.info.classes, dataset.info.palette, title=f"{data.dataset} {split}")
        print(f"per image: {args.output}/per_image.csv, per_image_miou.png; the {len(panels)} worst in "
              f"{args.output}/worst/")
    return 0 if summary else 1

"""``isnet train``: train (or resume) a recipe; under ``torchrun`` on several processes."""

from __future__ import annotations

import argparse

from isnet.cli.common import (
    add_threads_argument,
    key_value,
    non_negative_int,
    positive_int,
    recipe_name,
    usage_error,
)
from isnet.utils.precision import Precision

HELP = "train (or resume) a recipe; use torchrun for several processes"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from isnet.data import DATASET_NAMES

    parser.add_argument("--recipe", required=True, type=recipe_name, help="see `isnet recipes`")
    parser.add_argument("--data-root")
    parser.add_argument("--dataset", choices=DATASET_NAMES,
                        help="train the recipe's model on another dataset (its data settings and class count)")
    parser.add_argument("--init-from", metavar="WEIGHTS",
                        help="start from these weights (a .safetensors, a released .pth or name), re-initialising "
                             "the tensors whose shape differs (e.g. the classifiers, for other classes); weights "
                             "of which most tensors do not fit (another architecture) are refused")
    parser.add_argument("--init-from-partial", action="store_true", default=None,  # None: the recipe's value
                        help="with --init-from: start even when most tensors do not fit (they are re-initialised)")
    parser.add_argument("--output", help="run folder; an existing run there is resumed exactly (config.json keeps "
                                         "the run as started; changed settings are named)")
    parser.add_argument("--allow-changed-data", action="store_true",
                        help="resume a run on another dataset (name, folder or class list) than it started on; "
                             "refused without this")
    parser.add_argument("--max-iters", type=positive_int)
    parser.add_argument("--batch-size", type=positive_int, help="global batch size")
    parser.add_argument("--precision", choices=[str(p) for p in Precision],
                        help="autocast; auto: bf16 where this machine's measured peaks say it pays, else fp32")
    parser.add_argument("--weights-backbone", help="ImageNet checkpoint for the backbone")
    parser.add_argument("--workers", type=non_negative_int)
    parser.add_argument("--seed", type=non_negative_int)
    add_kit_arguments(parser)
    parser.add_argument("--set", action="append", metavar="KEY=VALUE", type=key_value,
                        help="override any TrainConfig field, e.g. --set lr=0.02 --set data.crop_size=[256,256]")
    add_threads_argument(parser)


# The training kit's options → their TrainConfig fields (README "Training on your data").
KIT_FLAGS = {"loss": "loss", "ema": "ema", "best_on": "best_on", "early_stop": "early_stop",
             "tracker": "trackers", "tracking_uri": "tracking_uri"}


def add_kit_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--loss", metavar="EXPR",
                        help="objective on every output: a weighted sum of ce, dice, focal(gamma=2), lovasz, "
                             "ohem(thresh=0.7,min_kept=100000), e.g. 'ce+0.5*dice' (default: ce)")
    parser.add_argument("--ema", type=float, metavar="DECAY",
                        help="keep an exponential moving average of the weights (e.g. 0.999): evaluated and "
                             "saved as model.safetensors, the raw weights as model_raw.safetensors")
    parser.add_argument("--best-on", metavar="METRIC",
                        help="what chooses best.safetensors: mIoU (default), iou:CLASS, foreground_f1, "
                             "boundary_iou, loss (validation cross-entropy)")
    parser.add_argument("--early-stop", type=non_negative_int, metavar="N",
                        help="stop after N evaluations without improvement of --best-on")
    parser.add_argument("--tracker", action="append", choices=("mlflow", "wandb", "tensorboard"),
                        help="log parameters, metrics, images and the model to an experiment tracker (repeatable)")
    parser.add_argument("--tracking-uri", metavar="URI",
                        help="where the trackers write: an MLflow tracking URI, a W&B or TensorBoard folder")


def _train_config(args: argparse.Namespace):
    from isnet.training.kit_options import check_best_on
    from isnet.training.overrides import parse_overrides, with_overrides
    from isnet.utils.errors import ConfigError
    from isnet.training.recipes import recipe

    config = recipe(args.recipe)
    if args.dataset is not None:
        config = _on_dataset(config, args.dataset, args.data_root)
    overrides = parse_overrides(args.set or [])
    for flag, key in (("data_root", "data.root"), ("output", "output_dir"), ("max_iters", "max_iters"),
                      ("batch_size", "batch_size"), ("precision", "precision"), ("weights_backbone", "weights_backbone"),
                      ("workers", "num_workers"), ("seed", "seed"), ("init_from", "init_from"),
                      ("init_from_partial", "init_from_partial")):
        if getattr(args, flag, None) is not None:
            overrides[key] = getattr(args, flag)
    given = {}
    for flag, key in KIT_FLAGS.items():
        if getattr(args, flag, None) is not None:
            overrides[key] = given[key] = tuple(args.tracker) if flag == "tracker" else getattr(args, flag)
    try:
        config = with_overrides(config, overrides)
        if "best_on" in given and given["best_on"].startswith("iou:"):  # a class of the data
            check_best_on(config.best_on, num_classes=config.model.num_classes,
                          classes=tuple(config.data.dataset_record().classes))
    except ConfigError as error:  # name the option the user typed
        flag = next((f for f, key in KIT_FLAGS.items() if key == error.field and key in given), None)
        if flag is None:
            raise
        raise ConfigError(f"--{flag.replace('_', '-')} {error.problem}") from None
    if config.init_from_partial and not config.init_from:
        usage_error("--init-from-partial goes with --init-from WEIGHTS: it allows weights of which most tensors do not fit")
    return config


def _on_dataset(config, dataset: str, root: str | None):
    """A recipe moved to another dataset: that dataset's data settings and class count (stated)."""
    from dataclasses import replace

    from isnet.data import DATASETS
    from isnet.data.folder import folder_record
    from isnet.training.config import DataConfig

    if dataset == "folder":
        if root is None:
            usage_error("--dataset folder needs --data-root")
        record = folder_record(root)
        data = DataConfig.of(record, root=root, crop_size=config.data.crop_size, fit_size=config.data.fit_size,
                             scale_range=config.data.scale_range)
    else:
        record = DATASETS[dataset]
        data = DataConfig.of(record)
    if record.num_classes != config.model.num_classes:
        print(f"--dataset {dataset}: model.num_classes {config.model.num_classes} → {record.num_classes} "
              f"({record.name}); start from other weights with --init-from")
    backbone = config.model.backbone
    if record.in_channels != backbone.in_channels:
        print(f"--dataset {dataset}: model.backbone.in_channels {backbone.in_channels} → {record.in_channels} "
              f"(the length of mean/std in its record); RGB weights get their first convolution inflated")
        backbone = replace(backbone, in_channels=record.in_channels)
    return replace(config, data=data, model=config.model.replace(num_classes=record.num_classes, backbone=backbone))


def run(args: argparse.Namespace) -> int:
    from isnet.training.loop import train

    from isnet.training.kit import require_trackers

    config = _train_config(args)
    require_trackers(config.trackers)  # before any work: a missing one names its extra
    summary = train(config, allow_changed_data=args.allow_changed_data)
    if summary:
        print(f"final mIoU {100 * summary['mIoU']:.2f}; run in {config.output_dir}")
    return 0

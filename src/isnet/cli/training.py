"""The ``isnet`` commands about data and training: ``demo``, ``train``, ``eval``, ``recipes``, ``presets``."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

from isnet.cli.common import inference_config, load_model_from_args, resolve_device, usage_error


def cmd_demo(args: argparse.Namespace) -> int:
    """Train a small ISNet on generated scenes and compare it with the untrained model."""
    from isnet.apps.demo import run_demo

    result = run_demo(args.output, max_iters=args.iters)
    # The demo doubles as a smoke test of training: it fails unless training clearly helped.
    return 0 if result["trained_mIoU"] >= result["untrained_mIoU"] + 0.2 else 1


def _train_config(args: argparse.Namespace):
    from isnet.training.recipes import recipe
    from isnet.training.overrides import parse_overrides, with_overrides

    config = recipe(args.recipe)
    if args.dataset is not None:
        config = _on_dataset(config, args.dataset, args.data_root)
    overrides = parse_overrides(args.set or [])
    for flag, key in (("data_root", "data.root"), ("output", "output_dir"), ("max_iters", "max_iters"),
                      ("batch_size", "batch_size"), ("precision", "precision"), ("weights_backbone", "weights_backbone"),
                      ("workers", "num_workers"), ("seed", "seed"), ("init_from", "init_from")):
        if getattr(args, flag, None) is not None:
            overrides[key] = getattr(args, flag)
    return with_overrides(config, overrides)


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
    return replace(config, data=data, model=config.model.replace(num_classes=record.num_classes))


def cmd_train(args: argparse.Namespace) -> int:
    from isnet.training.loop import train

    config = _train_config(args)
    summary = train(config)
    if summary:
        print(f"final mIoU {100 * summary['mIoU']:.2f}; run in {config.output_dir}")
    return 0


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


def cmd_eval(args: argparse.Namespace) -> int:
    from isnet.evaluation import evaluate, write_report

    device = resolve_device(args)
    model = load_model_from_args(args)
    data, protocol = eval_data(args, model)
    split = args.split or data.val_split
    dataset = data.build(split, train=False)
    num_classes = model.config.num_classes
    if dataset.info.num_classes != num_classes:
        print(f"isnet eval: {args.checkpoint or args.weights or args.model} predicts {num_classes} classes but "
              f"{args.data_root} ({args.dataset}) has {dataset.info.num_classes}; nothing was evaluated",
              file=sys.stderr)
        return 1
    if args.protocol == "released":
        config = dataset.info.test.multi_scale
        if config is None:
            usage_error(f"--protocol released: {args.dataset} has no released multi-scale protocol; "
                         "give --scales / --flip / --mode instead")
    else:
        config = inference_config(args, dataset.info.flip_pairs)
    print(protocol)
    matrix = evaluate(model.to(device), dataset, num_classes, config, device=device, progress=True)
    summary = write_report(matrix, dataset.info.classes, args.output, title=f"{data.dataset} {split}")
    print((Path(args.output) / "scores.txt").read_text())
    print(f"report: {args.output} (per_class_iou.png, confusion_matrix.png, per_class.csv)")
    return 0 if summary else 1


def cmd_recipes(args: argparse.Namespace) -> int:
    from isnet.training.recipes import recipe_names

    for name in recipe_names():
        print(name)
    return 0


def cmd_presets(args: argparse.Namespace) -> int:
    """Each named model with its dataset record; released weights with the scores they were published with."""
    from isnet.weights.presets import PRESETS
    from isnet.weights.released import WEIGHTS

    def score(value: float | None) -> str:
        return "—" if value is None else f"{value:.2f}"

    for name in sorted(PRESETS):
        dataset = PRESETS[name].dataset
        line = f"{name:42s} {dataset.name} ({dataset.num_classes} classes)"
        if name in WEIGHTS:
            weights = WEIGHTS[name]
            single, multi = weights.zoo_miou
            line += f"; released weights: mIoU {score(single)} single-scale / {score(multi)} ms+flip (model zoo)"
            if weights.paper_miou is not None:
                line += f", {score(weights.paper_miou)} in the paper"
        print(line)
    return 0

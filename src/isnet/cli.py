"""The ``isnet`` command line: ``demo``, ``train``, ``eval``, ``predict``, ``export``, ``quantize``, ``bench``, ``presets``, ``recipes``."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import NoReturn

import numpy as np
import torch

def _usage_error(message: str) -> NoReturn:
    """A mistake in the command line: said in one line, exit code 2 (as argparse does)."""
    print(f"isnet: error: {message}", file=sys.stderr)
    raise SystemExit(2)


def _device(args: argparse.Namespace) -> torch.device:
    """``--device``, default a GPU when there is one; fp16 only on a GPU."""
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        _usage_error(f"--device {args.device}: no CUDA device is available here")
    if getattr(args, "precision", "fp32") == "fp16" and device.type != "cuda":
        _usage_error("--precision fp16 needs a GPU (--device cuda); on a CPU use bf16 or fp32")
    return device


def _load_model(args: argparse.Namespace) -> torch.nn.Module:
    """The model a command runs: ``--checkpoint``, or ``--model`` with ``--weights``.

    A model without weights is refused unless ``--allow-random``: predictions of random
    weights look like predictions.
    """
    from .checkpoint import load_model
    from .presets import create_model

    if getattr(args, "runtime", "torch") == "onnx":
        from .onnx_runtime import OnnxSegmentor

        if args.checkpoint or not args.weights or not str(args.weights).endswith(".onnx"):
            _usage_error("--runtime onnx reads the model from --weights MODEL.onnx (written by `isnet export`)")
        return OnnxSegmentor(args.weights)
    if getattr(args, "runtime", "torch") in ("auto", "openvino"):
        from .fast_paths import GRAPH_SUFFIXES, graph_runtime

        if args.runtime == "openvino" or Path(str(args.weights)).suffix in GRAPH_SUFFIXES and not args.checkpoint:
            try:  # an exported model (.onnx, or .xml from `isnet quantize`) in OpenVINO or ONNX Runtime
                return graph_runtime(args.checkpoint or args.weights, args.runtime, precision=getattr(args, "precision", "fp32"))
            except (ValueError, FileNotFoundError) as error:
                _usage_error(str(error))
    if args.checkpoint:
        model = load_model(args.checkpoint)
    elif not args.model:
        _usage_error("which model? give --checkpoint FILE.safetensors, or --model NAME with --weights")
    elif args.weights or args.allow_random:
        model = create_model(args.model, weights=args.weights)
    else:
        _usage_error(
            f"--model {args.model} has no weights: give --weights (a file, or the name of released weights: "
            "see `isnet presets`), or --allow-random to run randomly initialised weights on purpose"
        )
    if getattr(args, "precision", "fp32") == "auto":  # the fastest float32-accurate path measured here
        from .fast_paths import fast_model

        return fast_model(model, runtime=getattr(args, "runtime", "auto"), compile=getattr(args, "compile", False),
                          device=_device(args), log=lambda line: print(line, file=sys.stderr))
    if getattr(args, "precision", "fp32") != "fp32" or getattr(args, "compile", False):
        from .runtime import FastSegmentor

        return FastSegmentor(model, precision=args.precision, compile=args.compile)
    return model


def _class_names(model: torch.nn.Module, args: argparse.Namespace) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and colours: the model's dataset record, else the checkpoint's names, else generic."""
    from .checkpoint import read_safetensors
    from .predict_files import model_classes

    classes, palette = model_classes(model)
    if getattr(model, "dataset", None) is None and getattr(args, "checkpoint", None):
        _, metadata = read_safetensors(args.checkpoint)
        names = json.loads(metadata.get("classes", "[]"))
        if len(names) == len(classes):
            classes = names
    return classes, palette


def _add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("whole", "slide"), default="whole")
    parser.add_argument("--crop", type=int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--stride", type=int, nargs=2, default=(341, 341), metavar=("H", "W"))
    parser.add_argument("--scales", type=float, nargs="+", default=(1.0,))
    parser.add_argument("--flip", action="store_true", help="average with the mirrored image")


def _inference_config(args: argparse.Namespace, flip_pairs=()):
    from .inference import InferenceConfig

    return InferenceConfig(
        mode=args.mode,
        crop=tuple(args.crop),
        stride=tuple(args.stride),
        scales=tuple(args.scales),
        flip=args.flip,
        flip_pairs=tuple(flip_pairs),
        probs_before_resize=len(args.scales) > 1 or args.flip,
    )


def cmd_predict(args: argparse.Namespace) -> int:
    from .data.image import find_images
    from .predict_files import segment_files

    device = _device(args)
    model = _load_model(args)
    if isinstance(model, torch.nn.Module):
        model = model.to(device)
    classes, palette = _class_names(model, args)
    paths = find_images(args.inputs)
    if not paths:
        print(f"no images found in {', '.join(map(str, args.inputs))}", file=sys.stderr)
        return 2
    failures = segment_files(
        model, paths, Path(args.output), _inference_config(args), classes, palette, max_pixels=args.max_pixels
    )
    if failures:
        print(f"{len(failures)} of {len(paths)} file(s) could not be segmented:", file=sys.stderr)
        for path, reason in failures:
            print(f"  {reason}", file=sys.stderr)
        return 1
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """Train a small ISNet on generated scenes and compare it with the untrained model."""
    from .demo import run_demo

    result = run_demo(args.output, max_iters=args.iters)
    # The demo doubles as a smoke test of training: it fails unless training clearly helped.
    return 0 if result["trained_mIoU"] >= result["untrained_mIoU"] + 0.2 else 1


def _train_config(args: argparse.Namespace):
    from .recipes import recipe
    from .training.overrides import parse_overrides, with_overrides

    config = recipe(args.recipe)
    if args.dataset is not None:
        config = _on_dataset(config, args.dataset, args.data_root)
    try:
        overrides = parse_overrides(args.set or [])
    except ValueError as error:
        raise SystemExit(str(error)) from None
    for flag, key in (("data_root", "data.root"), ("output", "output_dir"), ("max_iters", "max_iters"),
                      ("batch_size", "batch_size"), ("precision", "precision"), ("weights_backbone", "weights_backbone"),
                      ("workers", "num_workers"), ("seed", "seed"), ("init_from", "init_from")):
        if getattr(args, flag, None) is not None:
            overrides[key] = getattr(args, flag)
    return with_overrides(config, overrides)


def _on_dataset(config, dataset: str, root: str | None):
    """A recipe moved to another dataset: that dataset's data settings and class count (stated)."""
    from dataclasses import replace

    from .data import DATASETS
    from .data.folder import folder_record
    from .training.config import DataConfig

    if dataset == "folder":
        if root is None:
            _usage_error("--dataset folder needs --data-root")
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
    from .train import train

    if args.precision == "auto":  # TrainConfig holds what auto resolves to
        from .precision import resolve_training_precision

        args.precision = resolve_training_precision("auto", "cuda" if torch.cuda.is_available() else "cpu")
    config = _train_config(args)
    summary = train(config)
    if summary:
        print(f"final mIoU {100 * summary['mIoU']:.2f}; run in {config.output_dir}")
    return 0


def _eval_data(args: argparse.Namespace, model: torch.nn.Module):
    """The evaluation data settings and a sentence saying where the test protocol comes from.

    A named dataset is tested by its record's protocol; a folder by its ``dataset.json``, else
    by the protocol the checkpoint's record carries, else as its images are. ``--fit`` wins.
    """
    from dataclasses import replace

    from .data import DATASETS
    from .data.folder import FOLDER_RECORD, folder_record
    from .training.config import DataConfig

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
        data, source = replace(data, eval_fit_size=tuple(args.fit)), "--fit"
    resize = f"fit {data.eval_fit_size[0]}×{data.eval_fit_size[1]}" if data.eval_fit_size else "no resize"
    return data, f"test resize: {resize} (from {source})"


def cmd_eval(args: argparse.Namespace) -> int:
    from .evaluation import evaluate, write_report

    device = _device(args)
    model = _load_model(args)
    data, protocol = _eval_data(args, model)
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
            _usage_error(f"--protocol released: {args.dataset} has no released multi-scale protocol; "
                         "give --scales / --flip / --mode instead")
    else:
        config = _inference_config(args, dataset.info.flip_pairs)
    print(protocol)
    matrix = evaluate(model.to(device), dataset, num_classes, config, device=device, progress=True)
    summary = write_report(matrix, dataset.info.classes, args.output, title=f"{data.dataset} {split}")
    print((Path(args.output) / "scores.txt").read_text())
    print(f"report: {args.output} (per_class_iou.png, confusion_matrix.png, per_class.csv)")
    return 0 if summary else 1


def cmd_recipes(args: argparse.Namespace) -> int:
    from .recipes import recipe_names

    for name in recipe_names():
        print(name)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Speed and memory against the published implementation (see :mod:`isnet.bench.suite`)."""
    from .bench.suite import run_from_args

    return run_from_args(args)


def cmd_export(args: argparse.Namespace) -> int:
    """Write the model as ONNX or as a ``torch.export`` program, with dynamic batch and size."""
    from .export import export_onnx, export_program
    from .numerics import relative_error

    model = _load_model(args).eval()
    output = Path(args.output)
    fmt = args.format or ("torch-export" if output.suffix == ".pt2" else "onnx")
    if fmt == "onnx":
        path = export_onnx(model, output, sample_size=tuple(args.size))
    else:
        path = export_program(model, output, sample_size=tuple(args.size))
    print(f"wrote {path} ({fmt}, dynamic batch and size)")
    if args.check:
        image = torch.randn(1, 3, *args.size)
        with torch.no_grad():
            expected = model.logits(image)
        if fmt == "onnx":
            from .onnx_runtime import OnnxSegmentor

            actual = OnnxSegmentor(path).logits(image)
        else:
            with torch.no_grad():
                actual = torch.export.load(str(path)).module()(image)
        error = relative_error(actual, expected)
        print(f"check: exported vs PyTorch, max error {error:.1e} of the largest logit")
        return 0 if error <= 1e-3 else 1
    return 0


def cmd_quantize(args: argparse.Namespace) -> int:
    """INT8 for CPUs (OpenVINO + NNCF), calibrated on your images, checked against float32 (:mod:`isnet.quantize_command`)."""
    from .quantize_command import run

    return run(args, _load_model(args).eval(), _eval_data)


def cmd_presets(args: argparse.Namespace) -> int:
    """Each named model with its dataset record; released weights with the scores they were published with."""
    from .presets import PRESETS
    from .released import WEIGHTS

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


def add_model_arguments(parser: argparse.ArgumentParser, *, device: bool = True) -> None:
    """Which model a command runs: ``--checkpoint`` (ours), or ``--model`` with ``--weights``."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="one of our .safetensors checkpoints (carries its configuration and classes)")
    source.add_argument("--model", help="preset name (see `isnet presets`); needs --weights or --allow-random")
    parser.add_argument("--weights", help="weights for --model: a released .pth, a .safetensors, or released weights' "
                                          "name (fetched once when online)")
    parser.add_argument("--allow-random", action="store_true",
                        help="run --model without weights (random predictions), on purpose")
    if device:
        parser.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")


def build_parser() -> argparse.ArgumentParser:
    from .data import DATASET_NAMES
    from .fast_paths import add_runtime_arguments
    from . import __version__

    parser = argparse.ArgumentParser(prog="isnet", description=__doc__)
    parser.add_argument("--version", action="version", version=f"isnet {__version__} (torch {torch.__version__})")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train a small ISNet on generated scenes (offline, a few minutes)")
    demo.add_argument("--output", default="outputs/demo")
    demo.add_argument("--iters", type=int, default=600)
    demo.set_defaults(run=cmd_demo)

    train = commands.add_parser("train", help="train (or resume) a recipe; use torchrun for several processes")
    train.add_argument("--recipe", required=True, help="see `isnet recipes`")
    train.add_argument("--data-root")
    train.add_argument("--dataset", choices=DATASET_NAMES,
                       help="train the recipe's model on another dataset (its data settings and class count)")
    train.add_argument("--init-from", metavar="WEIGHTS",
                       help="start from these weights (a .safetensors, a released .pth or name), re-initialising "
                            "the tensors whose shape differs (e.g. the classifiers, for other classes)")
    train.add_argument("--output", help="run folder; an existing run there is resumed")
    train.add_argument("--max-iters", type=int)
    train.add_argument("--batch-size", type=int, help="global batch size")
    train.add_argument("--precision", choices=("auto", "fp32", "bf16", "fp16"), help="auto: bf16 where this machine's peaks say it pays")
    train.add_argument("--weights-backbone", help="ImageNet checkpoint for the backbone")
    train.add_argument("--workers", type=int)
    train.add_argument("--seed", type=int)
    train.add_argument("--set", action="append", metavar="KEY=VALUE",
                       help="override any TrainConfig field, e.g. --set lr=0.02 --set data.crop_size=[256,256]")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("eval", help="score a model on a dataset; writes a report with plots")
    add_model_arguments(evaluate)
    evaluate.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    evaluate.add_argument("--data-root", required=True)
    evaluate.add_argument("--split", help="default: the dataset's validation split")
    evaluate.add_argument("--fit", type=int, nargs=2, metavar=("LONG", "SHORT"), help="test-time resize box")
    evaluate.add_argument("--protocol", choices=("released", "custom"), default="custom",
                          help="released: the dataset's published ms+flip protocol; custom: the flags below")
    evaluate.add_argument("--output", default="outputs/eval")
    add_runtime_arguments(evaluate)
    _add_inference_arguments(evaluate)
    evaluate.set_defaults(run=cmd_eval)

    complexity = commands.add_parser(
        "complexity", help="Table 2: parameters, multiply-adds and latency of ILCM, SLCM and the peer modules",
        add_help=False,
    )
    complexity.set_defaults(run=None)

    recipes = commands.add_parser("recipes", help="list the training recipes")
    recipes.set_defaults(run=cmd_recipes)

    predict = commands.add_parser("predict", help="segment images or folders of images")
    predict.add_argument("inputs", nargs="+", help="image files or folders")
    add_model_arguments(predict)
    predict.add_argument("--output", default="outputs/predict")
    add_runtime_arguments(predict)
    predict.add_argument("--compile", action="store_true", help="torch.compile the model (pays off for many images of one size)")
    predict.add_argument("--max-pixels", type=int, help="refuse larger images (default 100 million)")
    _add_inference_arguments(predict)
    predict.set_defaults(run=cmd_predict)

    export = commands.add_parser("export", help="export a model to ONNX or torch.export (dynamic batch and size)")
    add_model_arguments(export, device=False)
    export.add_argument("--output", required=True, help="MODEL.onnx or PROGRAM.pt2")
    export.add_argument("--format", choices=("onnx", "torch-export"), help="default: from the output's suffix")
    export.add_argument("--size", type=int, nargs=2, default=(512, 512), metavar=("H", "W"), help="sample size for tracing")
    export.add_argument("--check", action="store_true", help="compare the exported model with PyTorch on a random image")
    export.set_defaults(run=cmd_export)

    from .quantize_command import add_arguments as add_quantize_arguments

    quantize = commands.add_parser("quantize", help="INT8 model for CPUs (OpenVINO + NNCF), calibrated on your images")
    add_model_arguments(quantize, device=False)
    add_quantize_arguments(quantize, DATASET_NAMES)
    quantize.set_defaults(run=cmd_quantize)

    from .bench import add_arguments as add_bench_arguments

    bench = commands.add_parser("bench", help="speed and memory against the published implementation")
    add_bench_arguments(bench)
    bench.set_defaults(run=cmd_bench)

    presets = commands.add_parser("presets", help="list the named model configurations")
    presets.set_defaults(run=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["complexity"]:  # has its own argument parser
        from .bench.complexity import main as complexity_main

        return complexity_main(argv[1:])
    args = build_parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

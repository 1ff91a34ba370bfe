"""The ``isnet`` command line: ``demo``, ``train``, ``eval``, ``predict``, ``export``, ``bench``, ``presets``, ``recipes``."""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path

import numpy as np
import torch

# Option types: a bad value is a usage error (exit 2) naming the option, before anything runs.


def _integer(text: str, minimum: int, rule: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < minimum:
        raise argparse.ArgumentTypeError(f"{text} {rule}")
    return value


def positive_int(text: str) -> int:
    """A count: an integer ≥ 1."""
    return _integer(text, 1, "is not a positive integer")


def non_negative_int(text: str) -> int:
    """An integer ≥ 0 (a seed, a number of workers)."""
    return _integer(text, 0, "is negative")


def positive_float(text: str) -> float:
    """A finite number > 0 (a scale)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text} is not a finite number > 0")
    return value


def recipe_name(text: str) -> str:
    """A training recipe of ``isnet recipes``."""
    from .recipes import recipe_names

    names = recipe_names()
    if text not in names:
        import difflib

        close = difflib.get_close_matches(text, names, n=3)
        raise argparse.ArgumentTypeError(
            f"unknown recipe {text!r}" + (f"; did you mean {', '.join(close)}?" if close else "; see `isnet recipes`")
        )
    return text


def key_value(text: str) -> str:
    """``KEY=VALUE`` of ``--set`` (the value is checked against the field's type when the config is built)."""
    key, sep, _ = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"{text!r} is not KEY=VALUE (e.g. lr=0.01)")
    return text


class Parser(argparse.ArgumentParser):
    """argparse, with a usage error told in one line (and the way to the full help)."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message}\n(see {self.prog} --help)\n")


def _load_model(args: argparse.Namespace) -> torch.nn.Module:
    from .checkpoint import load_model
    from .presets import create_model

    if getattr(args, "runtime", "torch") == "onnx":
        from .onnx_runtime import OnnxSegmentor

        if args.checkpoint or not args.weights or not str(args.weights).endswith(".onnx"):
            raise SystemExit("--runtime onnx reads the model from --weights MODEL.onnx (written by `isnet export`)")
        return OnnxSegmentor(args.weights)
    model = load_model(args.checkpoint) if args.checkpoint else create_model(args.model, weights=args.weights)
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
    parser.add_argument("--crop", type=positive_int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--stride", type=positive_int, nargs=2, default=(341, 341), metavar=("H", "W"))
    parser.add_argument("--scales", type=positive_float, nargs="+", default=(1.0,))
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
    from .errors import ConfigError
    from .predict_files import segment_files

    output = Path(args.output)
    if output.exists() and not output.is_dir():
        raise ConfigError(f"--output {output}: is a file, not a folder; name a folder for the label maps and overlays")
    model = _load_model(args)
    classes, palette = _class_names(model, args)
    paths = find_images(args.inputs, exclude=output)
    if not paths:
        print(f"no images found in {', '.join(map(str, args.inputs))}", file=sys.stderr)
        return 2
    failures = segment_files(
        model, paths, output, _inference_config(args), classes, palette, max_pixels=args.max_pixels
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
    try:
        overrides = parse_overrides(args.set or [])
    except ValueError as error:
        raise SystemExit(str(error)) from None
    for flag, key in (("data_root", "data.root"), ("output", "output_dir"), ("max_iters", "max_iters"),
                      ("batch_size", "batch_size"), ("precision", "precision"), ("weights_backbone", "weights_backbone"),
                      ("workers", "num_workers"), ("seed", "seed")):
        if getattr(args, flag, None) is not None:
            overrides[key] = getattr(args, flag)
    return with_overrides(config, overrides)


def cmd_train(args: argparse.Namespace) -> int:
    from .train import train

    config = _train_config(args)
    summary = train(config)
    if summary:
        print(f"final mIoU {100 * summary['mIoU']:.2f}; run in {config.output_dir}")
    return 0


def cmd_eval(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from .data import DATASETS
    from .evaluation import evaluate, write_report
    from .training.config import DataConfig

    model = _load_model(args)
    record = DATASETS.get(args.dataset)
    data = DataConfig(dataset="folder", root=args.data_root) if record is None else DataConfig.of(record, root=args.data_root)
    if args.fit is not None:
        data = replace(data, eval_fit_size=tuple(args.fit))
    dataset = data.build(args.split or data.val_split, train=False)
    config = dataset.info.test.multi_scale if args.protocol == "released" else None
    config = config or _inference_config(args, dataset.info.flip_pairs)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    matrix = evaluate(model.to(device), dataset, model.config.num_classes, config, device=device, progress=True)
    summary = write_report(matrix, dataset.info.classes, args.output, title=f"{data.dataset} {args.split or data.val_split}")
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


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """Which model a command runs: ``--checkpoint`` (ours), or ``--model`` with optional ``--weights``."""
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--checkpoint", help="one of our .safetensors checkpoints (carries its configuration)")
    source.add_argument("--model", default="isnet_resnet50os8_ade20k", help="preset name (see `isnet presets`)")
    parser.add_argument("--weights", help="weights for --model: a released .pth or a .safetensors")


def build_parser() -> argparse.ArgumentParser:
    from .data import DATASET_NAMES
    parser = Parser(prog="isnet", description=__doc__)
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also: ISNET_DEBUG=1)")
    commands = parser.add_subparsers(dest="command", required=True)

    demo = commands.add_parser("demo", help="train a small ISNet on generated scenes (offline, a few minutes)")
    demo.add_argument("--output", default="outputs/demo")
    demo.add_argument("--iters", type=positive_int, default=600)
    demo.set_defaults(run=cmd_demo)

    train = commands.add_parser("train", help="train (or resume) a recipe; use torchrun for several processes")
    train.add_argument("--recipe", required=True, type=recipe_name, help="see `isnet recipes`")
    train.add_argument("--data-root")
    train.add_argument("--output", help="run folder; an existing run there is resumed")
    train.add_argument("--max-iters", type=positive_int)
    train.add_argument("--batch-size", type=positive_int, help="global batch size")
    train.add_argument("--precision", choices=("fp32", "bf16", "fp16"))
    train.add_argument("--weights-backbone", help="ImageNet checkpoint for the backbone")
    train.add_argument("--workers", type=non_negative_int)
    train.add_argument("--seed", type=non_negative_int)
    train.add_argument("--set", action="append", metavar="KEY=VALUE", type=key_value,
                       help="override any TrainConfig field, e.g. --set lr=0.02 --set data.crop_size=[256,256]")
    train.set_defaults(run=cmd_train)

    evaluate = commands.add_parser("eval", help="score a model on a dataset; writes a report with plots")
    add_model_arguments(evaluate)
    evaluate.add_argument("--dataset", required=True, choices=DATASET_NAMES)
    evaluate.add_argument("--data-root", required=True)
    evaluate.add_argument("--split", help="default: the dataset's validation split")
    evaluate.add_argument("--fit", type=positive_int, nargs=2, metavar=("LONG", "SHORT"), help="test-time resize box")
    evaluate.add_argument("--protocol", choices=("released", "custom"), default="custom",
                          help="released: the dataset's published ms+flip protocol; custom: the flags below")
    evaluate.add_argument("--output", default="outputs/eval")
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
    predict.add_argument("--runtime", choices=("torch", "onnx"), default="torch",
                         help="onnx: run --weights MODEL.onnx (from `isnet export`) in ONNX Runtime")
    predict.add_argument("--precision", choices=("fp32", "bf16", "fp16"), default="fp32",
                         help="compute precision (bf16 on CPU or GPU, fp16 on GPU)")
    predict.add_argument("--compile", action="store_true", help="torch.compile the model (pays off for many images of one size)")
    predict.add_argument("--max-pixels", type=positive_int, help="refuse larger images (default 100 million)")
    _add_inference_arguments(predict)
    predict.set_defaults(run=cmd_predict)

    export = commands.add_parser("export", help="export a model to ONNX or torch.export (dynamic batch and size)")
    add_model_arguments(export)
    export.add_argument("--output", required=True, help="MODEL.onnx or PROGRAM.pt2")
    export.add_argument("--format", choices=("onnx", "torch-export"), help="default: from the output's suffix")
    export.add_argument("--size", type=positive_int, nargs=2, default=(512, 512), metavar=("H", "W"), help="sample size for tracing")
    export.add_argument("--check", action="store_true", help="compare the exported model with PyTorch on a random image")
    export.set_defaults(run=cmd_export)

    from .bench import add_arguments as add_bench_arguments

    bench = commands.add_parser("bench", help="speed and memory against the published implementation")
    add_bench_arguments(bench)
    bench.set_defaults(run=cmd_bench)

    presets = commands.add_parser("presets", help="list the named model configurations")
    presets.set_defaults(run=cmd_presets)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run a command. A known error (a bad file, bad data, a bad option, a mismatched checkpoint,
    a full disk, a refused permission) is printed in a few lines naming the file or option and
    the problem: exit status 2 for usage errors, 1 otherwise. ``--debug`` (anywhere on the
    command line) or ``ISNET_DEBUG=1`` lets the traceback through instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("ISNET_DEBUG", "") not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    if argv[:1] == ["complexity"]:  # has its own argument parser
        from .bench.complexity import main as complexity_main

        return complexity_main(argv[1:])
    args = build_parser().parse_args(argv)
    if debug:
        return args.run(args)
    from .errors import report_error

    try:
        return args.run(args)
    except BaseException as error:  # noqa: B036 - the error boundary: every known error in words
        return report_error(error, f"isnet {args.command}")


if __name__ == "__main__":
    sys.exit(main())

"""What the ``isnet`` commands share: option types, the model arguments and their loading, inference flags.

A bad option value is a usage error (exit 2) naming the option, raised before anything runs;
``isnet.cli.commands.main`` is the error boundary that prints it.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
from typing import NoReturn

import torch

from isnet.utils.precision import require_device


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
    from isnet.training.recipes import recipe_names

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


def usage_error(message: str) -> NoReturn:
    """A mistake in the command line: told in one line by the error boundary, exit code 2."""
    from isnet.utils.errors import ConfigError

    raise ConfigError(message)


def resolve_device(args: argparse.Namespace) -> torch.device:
    """``--device``, default a GPU when there is one; fp16 only on a GPU."""
    device = torch.device(getattr(args, "device", None) or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda" and not torch.cuda.is_available():
        usage_error(f"--device {args.device}: no CUDA device is available here")
    try:
        require_device(getattr(args, "precision", "fp32"), device)
    except ValueError as error:
        usage_error(f"--precision {error} (--device cuda)")
    return device


def calibrated(model, args: argparse.Namespace):
    """``model`` with the temperature of its file applied, when ``isnet calibrate`` stored one (said on stderr)."""
    from isnet.weights.calibration import read_calibration, with_calibration

    source = getattr(args, "checkpoint", None) or getattr(args, "weights", None)
    record = read_calibration(source) if source else None
    if record is None:
        return model
    print(f"note: {source} is calibrated: its logits are divided by the temperature {record['temperature']:.4g} "
          "fitted by isnet calibrate", file=sys.stderr)
    return with_calibration(model, source)


def load_model_from_args(args: argparse.Namespace) -> torch.nn.Module:
    """The model a command runs: ``--checkpoint``, or ``--model`` with ``--weights``.

    A model without weights is refused unless ``--allow-random``: predictions of random
    weights look like predictions.
    """
    from isnet.deploy.fast_paths import graph_runtime
    from isnet.deploy.runtimes import RUNTIMES, readers_of
    from isnet.weights.checkpoint import load_model
    from isnet.weights.presets import create_model

    runtime = getattr(args, "runtime", "torch")
    exported = bool(args.weights and readers_of(args.weights)) and not args.checkpoint
    if runtime in RUNTIMES or (exported and runtime == "auto"):
        # an exported model: --weights MODEL.onnx (`isnet export`) or MODEL.xml (`isnet quantize`)
        if args.checkpoint:
            usage_error(f"--runtime {runtime} reads --weights MODEL.onnx (`isnet export`) or MODEL.xml (`isnet quantize`); "
                        "--checkpoint is for our .safetensors files")
        from isnet.utils.errors import CheckpointError

        try:
            model = graph_runtime(args.weights, runtime, precision=getattr(args, "precision", "fp32"))
        except CheckpointError:  # a damaged or mistaken file, not a usage error
            raise
        except (ValueError, FileNotFoundError) as error:
            usage_error(str(error))
        if model.config is None:
            usage_error(f"{args.weights}: carries no isnet configuration (classes, model): export it with `isnet export`")
        return model
    if args.checkpoint:
        model = load_model(args.checkpoint)
    elif not args.model:
        usage_error("which model? give --checkpoint FILE.safetensors, or --model NAME with --weights")
    elif args.weights or args.allow_random:
        model = create_model(args.model, weights=args.weights)
    else:
        usage_error(
            f"--model {args.model} has no weights: give --weights (a file, or the name of released weights: "
            "see `isnet presets`), or --allow-random to run randomly initialised weights on purpose"
        )
    precision = getattr(args, "precision", "fp32")
    if precision == "auto":  # the fastest float32-accurate path measured on this machine
        from isnet.deploy.fast_paths import fast_model

        return fast_model(model, runtime=runtime, compile=getattr(args, "compile", False), device=resolve_device(args),
                          log=lambda line: print(line, file=sys.stderr))
    if precision == "bf16":
        from isnet.utils.machine import slow_bf16_note

        note = slow_bf16_note(resolve_device(args))
        if note:
            print(f"note: {note}", file=sys.stderr)
    if precision != "fp32" or getattr(args, "compile", False):
        from isnet.deploy.runtimes.pytorch import FastSegmentor

        return FastSegmentor(model, precision=precision, compile=getattr(args, "compile", False))
    return model


def class_names(model: torch.nn.Module, args: argparse.Namespace) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and colours: the model's dataset record, else the checkpoint's names, else generic."""
    from isnet.apps.predict_files import model_classes
    from isnet.weights.checkpoint import read_safetensors

    classes, palette = model_classes(model)
    if getattr(model, "dataset", None) is None and getattr(args, "checkpoint", None):
        from isnet.utils.errors import CheckpointError

        _, metadata = read_safetensors(args.checkpoint)
        try:
            names = json.loads(metadata.get("classes", "[]"))
        except json.JSONDecodeError as error:
            raise CheckpointError(f"{args.checkpoint}: unreadable class names in the metadata ({error})") from None
        if isinstance(names, list) and len(names) == len(classes) and all(isinstance(name, str) for name in names):
            classes = names
    return classes, palette


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--mode", choices=("whole", "slide"), default="whole")
    parser.add_argument("--crop", type=positive_int, nargs=2, default=(512, 512), metavar=("H", "W"))
    parser.add_argument("--stride", type=positive_int, nargs=2, default=(341, 341), metavar=("H", "W"))
    parser.add_argument("--scales", type=positive_float, nargs="+", default=(1.0,))
    parser.add_argument("--flip", action="store_true", help="average with the mirrored image")


def inference_config(args: argparse.Namespace, flip_pairs=()):
    from isnet.inference.engine import InferenceConfig

    return InferenceConfig(
        mode=args.mode,
        crop=tuple(args.crop),
        stride=tuple(args.stride),
        scales=tuple(args.scales),
        flip=args.flip,
        flip_pairs=tuple(flip_pairs),
        probs_before_resize=len(args.scales) > 1 or args.flip,
    )


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


def add_threshold_argument(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--threshold", type=probability, metavar="T",
                        help="binary models: label the foreground where its probability exceeds T (default: the "
                             "threshold `isnet calibrate --threshold-for f1` stored in the file, else 0.5)")


def probability(text: str) -> float:
    """A number strictly between 0 and 1."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not between 0 and 1")
    return value


def thresholded(model, args: argparse.Namespace):
    """A binary model labelling by ``--threshold``, else by the threshold its file stores (said on stderr), else 0.5."""
    from isnet.inference.threshold import ForegroundThreshold
    from isnet.weights.decision_threshold import read_threshold

    source = getattr(args, "checkpoint", None) or getattr(args, "weights", None)
    num_classes = model.config.num_classes if getattr(model, "config", None) is not None else None
    if args.threshold is not None and num_classes != 2:
        usage_error(f"--threshold {args.threshold}: {source} predicts {num_classes} classes; a threshold is for "
                    "binary models (background, foreground)")
    threshold = args.threshold
    if threshold is None:
        record = read_threshold(source)
        if record is None:
            return model
        threshold = float(record["threshold"])
        print(f"note: {source} labels the foreground where its probability exceeds {threshold:.4g} (the F1-optimal "
              "threshold of isnet calibrate; --threshold to change it)", file=sys.stderr)
    return model if threshold == 0.5 else ForegroundThreshold(model, threshold)

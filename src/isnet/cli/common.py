"""What the ``isnet`` commands share: option types, the model arguments and their loading, inference flags.

A bad option value is a usage error (exit 2) naming the option, raised before anything runs;
``isnet.cli.commands.main`` is the error boundary that prints it.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import NoReturn

import torch

from isnet.utils.json_text import load_json
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


def non_negative_float(text: str) -> float:
    """A finite number ≥ 0 (a wait that may be none)."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not math.isfinite(value) or value < 0:
        raise argparse.ArgumentTypeError(f"{text} is not a finite number ≥ 0")
    return value


def port_number(text: str) -> int:
    """A TCP port: an integer 1 … 65535."""
    value = _integer(text, 1, "is not a port (1 … 65535)")
    if value > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (1 … 65535)")
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


def load_predictor_from_args(
    args: argparse.Namespace, *, precision: str | None = None, runtime: str | None = None, device: str | None = None
):
    """The model a command runs (:func:`isnet.deploy.load_predictor`): ``--checkpoint``, or
    ``--model`` with ``--weights``, at ``--precision`` in ``--runtime`` on ``--device``, with the
    temperature its file carries; what was chosen is said on stderr.

    A model without weights is refused unless ``--allow-random``: predictions of random
    weights look like predictions.
    """
    from isnet.deploy.predictor import load_predictor
    from isnet.deploy.runtimes import RUNTIMES
    from isnet.utils.errors import CheckpointError

    runtime = runtime or getattr(args, "runtime", "auto")
    precision = precision or getattr(args, "precision", "fp32")
    if args.checkpoint:
        if runtime in RUNTIMES:
            usage_error(f"--runtime {runtime} reads --weights MODEL.onnx (`isnet export`) or MODEL.xml (`isnet quantize`); "
                        "--checkpoint is for our .safetensors files")
        from isnet.weights.inspection import FileKind, file_kind, not_the_expected_kind, require_file

        path = Path(args.checkpoint)
        require_file(path, FileKind.SAFETENSORS)
        if file_kind(path) is not FileKind.SAFETENSORS:  # a run folder, a training checkpoint, a .pth, a graph: named
            raise CheckpointError(not_the_expected_kind(path, FileKind.SAFETENSORS))
        source, weights = args.checkpoint, None
    elif getattr(args, "weights", None) and (runtime in RUNTIMES or _is_graph(args.weights)):
        source, weights = args.weights, None  # an exported model: MODEL.onnx (`isnet export`) or MODEL.xml (`isnet quantize`)
    elif not getattr(args, "model", None):
        usage_error("which model? give --checkpoint FILE.safetensors, or --model NAME with --weights")
    elif args.weights or args.allow_random:
        source, weights = args.model, args.weights
    else:
        usage_error(
            f"--model {args.model} has no weights: give --weights (a file, or the name of released weights: "
            "see `isnet presets`), or --allow-random to run randomly initialised weights on purpose"
        )
    try:
        predictor = load_predictor(source, weights=weights, precision=precision, runtime=runtime,
                                   device=device or resolve_device(args), compile=getattr(args, "compile", False),
                                   threads=getattr(args, "threads", None), log=lambda line: print(line, file=sys.stderr))
    except CheckpointError:  # a damaged or mistaken file, not a usage error
        raise
    except (ValueError, FileNotFoundError) as error:
        if source is not args.weights:  # a model file's own errors are told as they are by the boundary
            raise
        usage_error(str(error))  # an exported graph in the wrong runtime or precision
    if predictor.config is None:
        usage_error(f"{source}: carries no isnet configuration (classes, model): export it with `isnet export`")
    return predictor


def float_model(predictor, command: str) -> torch.nn.Module:
    """The PyTorch model in float32 behind ``predictor``, for a command that transforms it (export, quantize)."""
    from isnet.inference.predictor import ModulePredictor

    if not isinstance(predictor, ModulePredictor):
        usage_error(f"isnet {command}: give a float model (--checkpoint FILE.safetensors, or --model with --weights), "
                    "not an exported graph")
    return predictor.module.eval()


def _is_graph(path: str) -> bool:
    from isnet.deploy.runtimes import readers_of

    return bool(readers_of(path))


def class_names(model: torch.nn.Module, args: argparse.Namespace) -> tuple[list[str], list[tuple[int, int, int]]]:
    """Class names and colours: the model's dataset record, else the checkpoint's names, else generic."""
    from isnet.apps.predict_files import model_classes
    from isnet.weights.checkpoint import read_safetensors

    classes, palette = model_classes(model)
    if getattr(model, "dataset", None) is None and getattr(args, "checkpoint", None):
        from isnet.utils.errors import CheckpointError

        _, metadata = read_safetensors(args.checkpoint)
        try:
            names = load_json(metadata.get("classes", "[]"))
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


def add_threads_argument(parser: argparse.ArgumentParser) -> None:
    """``--threads N``: the CPU threads PyTorch (and ONNX Runtime / OpenVINO) compute with."""
    parser.add_argument("--threads", type=positive_int,
                        help="CPU threads to compute with (PyTorch's, and the runtime's for ONNX/OpenVINO); "
                             "default: PyTorch's choice (the cores)")


def apply_threads(args: argparse.Namespace) -> None:
    """Set ``--threads`` before a command computes; where no thread count was chosen (``--threads``,
    ``OMP_NUM_THREADS``), note a machine much busier than its cores."""
    from isnet.utils.machine import busy_machine_note

    threads = getattr(args, "threads", None)
    if threads:
        torch.set_num_threads(threads)
    elif hasattr(args, "threads") and not os.environ.get("OMP_NUM_THREADS"):  # a command that computes, threads unchosen
        note = busy_machine_note()
        if note:
            print(f"note: {note}", file=sys.stderr)


def test_resize(args: argparse.Namespace, predictor, fallback: tuple = (None, None, "nothing recorded: images as they are")):
    """The test-time resize a command applies: ``(fit_size, resize_to, where it comes from)``.

    ``--fit`` wins; else the resize the model's dataset record carries (the one training
    evaluated at), so that one checkpoint gives one number from every command; else
    ``fallback`` (the evaluation data's record).
    """
    if getattr(args, "fit", None) is not None:
        return tuple(args.fit), None, getattr(args, "fit_source", "--fit")
    record = getattr(predictor, "dataset", None)
    if record is not None and (record.test.fit_size is not None or record.test.resize_to is not None):
        return record.test.fit_size, record.test.resize_to, f"the dataset record of {predictor.source or 'the model'}"
    return fallback


def protocol_line(resize: tuple, config) -> str:
    """One line naming the test protocol a command applies and where its resize comes from."""
    fit, resize_to, source = resize
    words = f"fit {fit[0]}×{fit[1]}" if fit else f"resize to {resize_to[0]}×{resize_to[1]}" if resize_to else "no resize"
    views = "whole image" if config.mode == "whole" else f"sliding {config.crop[0]}×{config.crop[1]} windows"
    scales = ", ".join(f"{scale:g}" for scale in config.scales)
    return f"test protocol: {views}, scale {scales}, {'flip' if config.flip else 'no flip'}; test resize: {words} (from {source})"


def tiled_protocol_line(resize: tuple, tiles) -> str:
    """The test protocol of ``predict --tile``, and that a resize the model records is not applied."""
    fit, resize_to, source = resize
    line = (f"test protocol: {tiles.tile[0]}×{tiles.tile[1]} tiles every {tiles.stride[0]}×{tiles.stride[1]} pixels "
            f"({tiles.blend} blend), scale 1, no flip, at each image's own size")
    if fit or resize_to:
        words = f"fit {fit[0]}×{fit[1]}" if fit else f"resize to {resize_to[0]}×{resize_to[1]}"
        line += f"; the test resize of {source} ({words}) is not applied: drop --tile to predict as the model was evaluated"
    return line


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


def thresholded(predictor, args: argparse.Namespace):
    """``predictor`` labelling by ``--threshold`` when given (a binary model; the threshold its file stores
    is applied by the loader already)."""
    if args.threshold is None:
        return predictor
    try:
        return predictor.with_threshold(args.threshold)
    except ValueError as error:
        usage_error(f"--threshold {args.threshold}: {error}")

"""``isnet export``: the model as ONNX or a ``torch.export`` program, with dynamic batch and size."""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from isnet.cli.common import (
    add_model_arguments,
    add_threads_argument,
    float_model,
    load_predictor_from_args,
    positive_int,
)

HELP = "export a model to ONNX or torch.export (dynamic batch and size)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_model_arguments(parser, device=False)
    parser.add_argument("--output", required=True, help="MODEL.onnx or PROGRAM.pt2")
    parser.add_argument("--format", choices=("onnx", "torch-export"), help="default: from the output's suffix")
    parser.add_argument("--size", type=positive_int, nargs=2, default=(512, 512), metavar=("H", "W"), help="sample size for tracing")
    parser.add_argument("--check", action="store_true", help="compare the exported model with PyTorch on a random image")
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Write the model as ONNX or as a ``torch.export`` program, with dynamic batch and size."""
    from isnet.deploy.export import export_onnx, export_program, load_program
    from isnet.utils.numerics import relative_error

    model = float_model(load_predictor_from_args(args, precision="fp32", runtime="auto", device="cpu"), "export")
    output = Path(args.output)
    fmt = args.format or ("torch-export" if output.suffix == ".pt2" else "onnx")
    if fmt == "onnx":
        path = export_onnx(model, output, sample_size=tuple(args.size))
    else:
        path = export_program(model, output, sample_size=tuple(args.size))
    print(f"wrote {path} ({fmt}, dynamic batch and size)")
    if args.check:
        image = torch.randn(1, model.config.backbone.in_channels, *args.size)
        with torch.no_grad():
            expected = model.logits(image)
        if fmt == "onnx":
            from isnet.deploy.runtimes.onnxruntime import OnnxSegmentor

            actual = OnnxSegmentor(path).logits(image)
        else:
            with torch.no_grad():
                actual = load_program(path)[0].module()(image)
        error = relative_error(actual, expected)
        print(f"check: exported vs PyTorch, max error {error:.1e} of the largest logit")
        return 0 if error <= 1e-3 else 1
    return 0

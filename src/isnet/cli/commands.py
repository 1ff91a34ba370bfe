"""The ``isnet`` command line: the command table and the one error boundary.

Each command is a module of this package with ``HELP``, ``add_arguments(parser)`` and
``run(args) -> int``; a new command is one module and one line of :data:`COMMANDS`.
"""

from __future__ import annotations

import argparse
import os
import sys
from types import ModuleType

import torch

from isnet.cli import (
    calibrate,
    data,
    demo,
    evaluate,
    export,
    predict,
    presets,
    quantize,
    recipes,
    serve,
    train,
)
from isnet.cli.common import Parser

COMMANDS: dict[str, ModuleType] = {
    "demo": demo,
    "data": data,
    "train": train,
    "eval": evaluate,
    "calibrate": calibrate,
    "predict": predict,
    "serve": serve,
    "export": export,
    "quantize": quantize,
    "presets": presets,
    "recipes": recipes,
}


def build_parser() -> argparse.ArgumentParser:
    from isnet import __version__

    parser = Parser(prog="isnet", description=f"ISNet semantic segmentation: {', '.join(COMMANDS)}")
    parser.add_argument("--version", action="version", version=f"isnet {__version__} (torch {torch.__version__})")
    parser.add_argument("--debug", action="store_true", help="show the traceback of an error (also: ISNET_DEBUG=1)")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for name, command in COMMANDS.items():
        sub = subparsers.add_parser(name, help=command.HELP, description=command.HELP)
        command.add_arguments(sub)
        sub.set_defaults(run=command.run)
    return parser


# Commands of earlier versions that now live in the checkout's benchmarks/ (docs/benchmarks.md).
MOVED = {"bench": "run `python -m benchmarks --quick --threads 1` from a checkout of the repository",
         "complexity": "run `python -m benchmarks.complexity` from a checkout of the repository"}


def main(argv: list[str] | None = None) -> int:
    """Run a command. A known error (a bad file, bad data, a bad option, a mismatched checkpoint,
    a full disk, a refused permission) is printed in a few lines naming the file or option and
    the problem: exit status 2 for usage errors, 1 otherwise. ``--debug`` (anywhere on the
    command line) or ``ISNET_DEBUG=1`` lets the traceback through instead."""
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv or os.environ.get("ISNET_DEBUG", "") not in ("", "0")
    argv = [arg for arg in argv if arg != "--debug"]
    parser = build_parser()
    if argv and argv[0] in MOVED:
        parser.error(f"isnet {argv[0]} moved out of the installed package: {MOVED[argv[0]]}")
    args = parser.parse_args(argv)
    from isnet.cli.common import apply_threads

    apply_threads(args)  # --threads, before anything computes
    if debug:
        return args.run(args)
    from isnet.utils.errors import report_error

    try:
        return args.run(args)
    except BaseException as error:  # noqa: B036 - the error boundary: every known error in words
        return report_error(error, f"isnet {args.command}")

"""``isnet demo``: train a small ISNet on generated scenes, offline (see :mod:`isnet.apps.demo`)."""

from __future__ import annotations

import argparse

from isnet.cli.common import add_threads_argument, positive_int

HELP = "train a small ISNet on generated scenes (offline, a few minutes)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--output", default="outputs/demo")
    parser.add_argument("--iters", type=positive_int, default=600)
    add_threads_argument(parser)


def run(args: argparse.Namespace) -> int:
    """Train a small ISNet on generated scenes and compare it with the untrained model."""
    from isnet.apps.demo import run_demo

    result = run_demo(args.output, max_iters=args.iters)
    # The demo doubles as a smoke test of training: it fails unless training clearly helped.
    return 0 if result["trained_mIoU"] >= result["untrained_mIoU"] + 0.2 else 1

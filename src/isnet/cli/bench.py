"""``isnet bench``: speed and memory against the published implementation (see :mod:`isnet.apps.bench.suite`)."""

from __future__ import annotations

import argparse

HELP = "speed and memory against the published implementation"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from isnet.apps.bench import add_arguments as add_bench_arguments

    add_bench_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from isnet.apps.bench.suite import run_from_args

    return run_from_args(args)

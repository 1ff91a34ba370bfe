"""``isnet complexity``: the paper's Table 2 (see :mod:`isnet.apps.bench.complexity`, which parses its own options)."""

from __future__ import annotations

import argparse

HELP = "Table 2: parameters, multiply-adds and latency of ILCM, SLCM and the peer modules"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """None here: ``args.options`` holds the rest of the command line for the benchmark's own parser."""


def run(args: argparse.Namespace) -> int:
    from isnet.apps.bench.complexity import main

    return main(args.options)

"""Speed and memory benchmarks against the published implementation (``isnet bench``).

:mod:`~isnet.bench.published` restates the authors' forward pass as the baseline,
:mod:`~isnet.bench.workload` builds the model and inputs, :mod:`~isnet.bench.measure` says
how time, memory and FLOPs are measured, :mod:`~isnet.bench.suite` runs the cases.
"""

from __future__ import annotations

import argparse

CASES = ("peak", "infer512", "slcm", "whole1024", "train", "onnx")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``isnet bench`` (kept here so the command line imports nothing heavy)."""
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: under 10 minutes on 2 CPU cores")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="intra-op threads for every contender (default: torch's)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile contenders")
    parser.add_argument("--output", help="write every figure as JSON here")
    parser.add_argument("--markdown", help="write the tables as Markdown here")

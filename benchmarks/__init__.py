"""Every benchmark of the project, each runnable from a checkout as ``python -m benchmarks.<name>``.

Speed and memory against the published implementation (``python -m benchmarks``):
:mod:`~benchmarks.published` restates the authors' forward pass as the baseline,
:mod:`~benchmarks.workload` builds the model and inputs, :mod:`~benchmarks.contenders`
sets up both sides, :mod:`~benchmarks.measure` says how time, memory and FLOPs are
measured, :mod:`~benchmarks.cases` runs the cases, :mod:`~benchmarks.report` writes the
tables and :mod:`~benchmarks.suite` ties them together (:mod:`~benchmarks.child` runs one
configuration in a fresh process).

The paper's Table 2 (``python -m benchmarks.complexity``): :mod:`~benchmarks.complexity` counts and times,
:mod:`~benchmarks.complexity_report` prints and plots.

Every CPU path (``python -m benchmarks --cases runtimes [trained]``): :mod:`~benchmarks.runtimes`
(ours, ``auto``, ONNX Runtime, OpenVINO fp32 and INT8, beside the published baseline).

Studies: :mod:`~benchmarks.bf16_agreement` (where bfloat16 loses argmax agreement),
:mod:`~benchmarks.int8_sensitivity` (which parts INT8 must leave in float),
:mod:`~benchmarks.camvid_ablation` (Tables 1 and 3 in miniature on CamVid),
:mod:`~benchmarks.onnx_memory` (ONNX Runtime and OpenVINO peak memory with ILCM in blocks of queries).
"""

from __future__ import annotations

import argparse

CASES = ("peak", "infer512", "slcm", "whole1024", "train", "onnx", "runtimes", "trained")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``python -m benchmarks`` (kept here so the command line imports nothing heavy)."""
    parser.add_argument("--quick", action="store_true", help="fewer repetitions: under 10 minutes on 2 CPU cores")
    parser.add_argument("--cases", nargs="+", choices=CASES, default=list(CASES))
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--threads", type=int, help="intra-op threads for every contender (default: torch's)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile contenders")
    parser.add_argument("--output", help="write every figure as JSON here")
    parser.add_argument("--markdown", help="write the tables as Markdown here")
    trained = parser.add_argument_group("case trained: every CPU path on a trained model (runs when --checkpoint is given)")
    trained.add_argument("--checkpoint", help="a trained model (our safetensors)")
    trained.add_argument("--calibration", help="folder of calibration images for the INT8 contenders")
    trained.add_argument("--dataset", help="held-out data: this dataset's validation split (with --data-root)")
    trained.add_argument("--data-root")

"""Every benchmark of the project, each runnable as ``python -m isnet.apps.bench.<name>``.

Speed and memory against the published implementation (``isnet bench``):
:mod:`~isnet.apps.bench.published` restates the authors' forward pass as the baseline,
:mod:`~isnet.apps.bench.workload` builds the model and inputs, :mod:`~isnet.apps.bench.contenders`
sets up both sides, :mod:`~isnet.apps.bench.measure` says how time, memory and FLOPs are
measured, :mod:`~isnet.apps.bench.cases` runs the cases, :mod:`~isnet.apps.bench.report` writes the
tables and :mod:`~isnet.apps.bench.suite` ties them together (:mod:`~isnet.apps.bench.child` runs one
configuration in a fresh process).

The paper's Table 2 (``isnet complexity``): :mod:`~isnet.apps.bench.complexity` counts and times,
:mod:`~isnet.apps.bench.complexity_report` prints and plots.

Every CPU path (``isnet bench --cases runtimes [trained]``): :mod:`~isnet.apps.bench.runtimes`
(ours, ``auto``, ONNX Runtime, OpenVINO fp32 and INT8, beside the published baseline).

Studies: :mod:`~isnet.apps.bench.bf16_agreement` (where bfloat16 loses argmax agreement),
:mod:`~isnet.apps.bench.int8_sensitivity` (which parts INT8 must leave in float),
:mod:`~isnet.apps.bench.camvid_ablation` (Tables 1 and 3 in miniature on CamVid),
:mod:`~isnet.apps.bench.onnx_memory` (ONNX Runtime's peak memory with ILCM's query blocks).
"""

from __future__ import annotations

import argparse

CASES = ("peak", "infer512", "slcm", "whole1024", "train", "onnx", "runtimes", "trained")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``isnet bench`` (kept here so the command line imports nothing heavy)."""
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

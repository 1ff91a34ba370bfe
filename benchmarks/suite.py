"""The speed and memory benchmarks: ours against the published computation, side by side.

``python -m benchmarks`` (or ``python -m benchmarks.suite``) runs every case; ``python -m benchmarks --quick``
the same cases with fewer repetitions (under 10 minutes on 2 CPU cores), and prints its
headline ratios on its last line. Cases (:mod:`benchmarks.cases`):

- ``peak``: the machine's float32 and bfloat16 matrix-multiply peaks (GFLOP/s);
- ``infer512``: ResNet-50-D8, 512×512, K = 150, stage-1 argmax over ≥ 30 classes: the
  published forward (float32) against ours in float32 and bfloat16 (and compiled);
- ``slcm``: SLCM alone (C = 512, 128×128, K = 150, ≥ 30 classes): the region aggregation,
  ``A_sl`` (aggregation + attention) and the whole module with its fusion conv;
- ``whole1024``: ResNet-50-D8, one 1024×2048 image, K = 19: time and peak memory, each
  configuration in a fresh process: the published fp32, ours fp32 and bf16, and on a CPU
  ``isnet export``'s graph in ONNX Runtime and OpenVINO and ``isnet quantize``'s INT8 model;
- ``train``: one SGD step on 2×512×512 crops (K = 150), images per second;
- ``onnx``: ONNX Runtime against PyTorch float32 on the reference fixtures and on the
  512×512 model: agreement and latency;
- ``runtimes``: every CPU path on the 512×512 model beside the published baseline: ours fp32,
  ``auto``, ONNX Runtime and OpenVINO fp32, OpenVINO INT8 and ours INT8
  (:mod:`benchmarks.runtimes`);
- ``trained``: the same on a trained model (``--checkpoint``, ``--calibration``,
  ``--dataset``, ``--data-root``), with mIoU; skipped without ``--checkpoint``.

Every figure of :func:`run` lands in one JSON document (``--output``) and in a Markdown
table (``--markdown``, :mod:`benchmarks.report`), which ``docs/benchmarks.md`` reproduces.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from benchmarks import CASES, add_arguments
from benchmarks.cases import (
    case_infer512,
    case_onnx,
    case_peak,
    case_slcm,
    case_train,
    case_whole1024,
)
from benchmarks.report import headline, machine_description, markdown
from benchmarks.runtimes import case_runtimes, case_trained
from benchmarks.workload import benchmark_model


def run(cases: tuple[str, ...] = CASES, *, quick: bool = False, device: str = "cpu", compile: bool = True, log=print,
        trained: dict | None = None) -> dict:
    """Run the benchmark cases; return every figure (see the module docstring)."""
    started = time.perf_counter()
    report: dict[str, Any] = {
        "machine": machine_description(device),
        "quick": quick,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cases": {},
    }
    peak = case_peak(quick, device)
    report["cases"]["peak"] = peak
    log(f"[peak] fp32 {peak['fp32']:.0f} GFLOP/s, bf16 {peak['bf16']:.0f} GFLOP/s; auto → {peak.get('auto')}")
    model150: torch.nn.Module | None = None

    def ade_model() -> torch.nn.Module:  # shared by infer512, train and onnx
        nonlocal model150
        if model150 is None:
            model150 = benchmark_model(150).to(device)
        return model150

    with tempfile.TemporaryDirectory(prefix="isnet-bench-") as tmp:
        workdir = Path(tmp)
        for case in cases:
            if case == "peak":
                continue
            start = time.perf_counter()
            if case == "infer512":
                result = case_infer512(quick, device, peak, compile and not quick, ade_model())
            elif case == "slcm":
                result = case_slcm(quick, device, peak)
            elif case == "whole1024":
                result = case_whole1024(quick, device, peak, workdir)
            elif case == "train":
                result = case_train(quick, device, peak, ade_model())
            elif case == "onnx":
                result = case_onnx(quick, device, workdir, report["cases"].get("infer512"), ade_model().cpu())
            elif case == "runtimes":
                result = case_runtimes(quick, ade_model().cpu(), workdir, log)
            elif case == "trained":
                if not trained or not trained.get("checkpoint"):
                    log("[trained] skipped: no --checkpoint")
                    continue
                result = case_trained(**trained, workdir=workdir, log=log)
            else:
                raise ValueError(f"unknown case {case!r}; choose from {', '.join(CASES)}")
            result["case_seconds"] = time.perf_counter() - start
            report["cases"][case] = result
            log(f"[{case}] done in {result['case_seconds']:.0f} s")
    report["seconds"] = time.perf_counter() - started
    report["headline"] = headline(report)
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks", description="speed and memory against the published implementation")
    add_arguments(parser)
    return run_from_args(parser.parse_args(argv))


def run_from_args(args: argparse.Namespace) -> int:
    if args.threads:
        torch.set_num_threads(args.threads)
    trained = {key: getattr(args, key) for key in ("checkpoint", "calibration", "dataset", "data_root")}
    if trained["checkpoint"] and not all(trained.values()):
        raise SystemExit("python -m benchmarks: --checkpoint needs --calibration, --dataset and --data-root")
    cases = tuple(args.cases) + (("trained",) if trained["checkpoint"] and "trained" not in args.cases else ())
    report = run(cases, quick=args.quick, device=args.device, compile=not args.no_compile, trained=trained)
    text = markdown(report)
    if args.output:
        Path(args.output).parent.mkdir(parents=True, exist_ok=True)
        Path(args.output).write_text(json.dumps(report, indent=1))
    if args.markdown:
        Path(args.markdown).parent.mkdir(parents=True, exist_ok=True)
        Path(args.markdown).write_text(text + "\n")
    print(text)  # ends with the headline line
    return 0


__all__ = ["CASES", "run", "main", "markdown", "headline"]

if __name__ == "__main__":
    sys.exit(main())

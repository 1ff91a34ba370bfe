"""The bench's CPU-path cases: arguments reach them, and their tables and headline print."""

from __future__ import annotations

import argparse
import inspect
import os

from benchmarks import add_arguments, report, runtimes, suite


def _rows(names: list[str]) -> list[dict]:
    rows = [{"name": name, "seconds": 1.0 + index, "agreement_vs_fp32": 0.99, "miou": 45.1, "miou_change": 0.02,
             "error_vs_published": 1e-3} for index, name in enumerate(names)]
    runtimes._ratios(rows)
    return rows


NAMES = ["published fp32", "ours fp32", "auto (openvino fp32)", "onnxruntime fp32", "openvino fp32",
         "openvino int8 (NNCF defaults)", "ours int8 (isnet quantize)"]


def test_tables_name_the_machine_and_every_path():
    peaks = {"matmul": {"fp32": 50.0, "bf16": 1.0, "fp16": 1.0}, "conv": {"fp32": 60.0, "bf16": 9.0, "fp16": 9.0},
             "openvino conv": {"fp32": 60.0, "int8": 110.0}}
    document = {
        "machine": "AMD EPYC, 2 logical cores (avx2), torch 2", "threads": 1, "quick": True, "seconds": 60.0,
        "cases": {
            "peak": {"fp32": 50.0, "bf16": 1.0, "peaks": peaks, "auto": "openvino fp32"},
            "runtimes": {"rows": _rows(NAMES)},
            "trained": {"rows": _rows(NAMES), "checkpoint": "model.safetensors", "images": 101, "calibration_images": 300,
                        "size": "fit 240×180", "dataset": "camvid"},
        },
    }
    document["headline"] = report.headline(document)
    text = report.markdown(document)
    assert "`precision=auto` picks: openvino fp32" in text and "| openvino conv | 60.0 | – | – | 110.0 |" in text
    for title in ("Every CPU path, ResNet-50-D8", "Every CPU path on model.safetensors"):
        line = next(line for line in text.splitlines() if title in line)
        assert "AMD EPYC, 2 logical cores (avx2)" in line  # the CPU and its flags in every table's header
    assert all(f"| {name} |" in text for name in NAMES)
    assert "INT8 (ours)" in document["headline"] and "auto (openvino fp32)" in document["headline"]


def test_trained_case_options_reach_it(monkeypatch):
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    args = parser.parse_args(["--cases", "peak", "--checkpoint", "m.safetensors", "--calibration", "train",
                              "--dataset", "camvid", "--data-root", "data"])
    seen = {}
    monkeypatch.setattr(suite, "case_peak", lambda quick, device: {"fp32": 1.0, "bf16": 1.0, "auto": "torch fp32"})
    monkeypatch.setattr(suite, "case_trained", lambda **kwargs: seen.update(kwargs) or {"rows": _rows(NAMES)})
    monkeypatch.setattr(suite, "markdown", lambda document: "")
    assert suite.run_from_args(args) == 0
    assert set(seen) - {"workdir", "log"} <= set(inspect.signature(runtimes.case_trained).parameters)
    assert seen["checkpoint"] == "m.safetensors" and seen["calibration"] == "train" and seen["data_root"] == "data"


def test_the_bench_finds_the_checkouts_own_reference_fixture():
    """The benchmarks' ONNX case checks the exported graph against the authors' outputs in
    tests/fixtures/reference; a wrong path there silently checked nothing."""
    from benchmarks.cases import DEFAULT_FIXTURES

    stems = {path.stem for path in DEFAULT_FIXTURES.glob("*.npz")}
    assert stems and all((DEFAULT_FIXTURES / f"{stem}{suffix}").is_file() for stem in stems for suffix in (".pth", ".json"))


def test_child_processes_run_this_isnet():
    from isnet.utils.child_process import child_environment, package_root

    assert (package_root() / "isnet" / "__init__.py").is_file()
    assert child_environment({"PYTHONPATH": "elsewhere"})["PYTHONPATH"].split(os.pathsep) == [str(package_root()), "elsewhere"]

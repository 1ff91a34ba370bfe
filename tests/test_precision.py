"""precision="auto": what it picks from a measurement, the cache, and the paths it builds."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from isnet.deploy import fast_paths
from isnet.deploy import profile as precision
from isnet.utils import machine
from isnet.weights.checkpoint import save_model
from isnet.utils.numerics import relative_error
from isnet.deploy.profile import MachineProfile, choose
from isnet.deploy.runtimes.pytorch import FastSegmentor
from isnet.model.segmentor import build_model

sys.path.insert(0, str(Path(__file__).parent))
from training_helpers import tiny_config  # noqa: E402

PEAKS = {"matmul": {"fp32": 100.0, "bf16": 200.0, "fp16": 20.0}, "conv": {"fp32": 100.0, "bf16": 150.0, "fp16": 20.0}}


@pytest.fixture
def cache(tmp_path, monkeypatch) -> Path:
    monkeypatch.setenv("ISNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("ISNET_AUTO_PATH", raising=False)
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def tiny() -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(tiny_config(Path("."), Path(".")).model).eval()


def test_auto_never_leaves_float32_for_less_than_the_margin():
    assert choose({"torch fp32": 1.0, "openvino fp32": 0.97, "onnxruntime fp32": 0.99}) == "torch fp32"
    assert choose({"torch fp32": 1.0, "openvino fp32": 0.80, "onnxruntime fp32": 0.90}) == "openvino fp32"
    assert choose({"torch fp32": 1.0, "torch bf16": 2.0, "openvino fp32": 1.1}) == "torch fp32"  # slower paths never
    assert choose({"torch fp32": 1.0, "torch bf16": 0.5, "openvino fp32": 0.4}, ("torch",)) == "torch bf16"


def test_bf16_counts_only_where_both_peaks_pay():
    assert MachineProfile(key={}, peaks=PEAKS).bf16_pays()
    emulated = {kind: {**values, "bf16": values["fp32"] / 20} for kind, values in PEAKS.items()}
    assert not MachineProfile(key={}, peaks=emulated).bf16_pays()


def test_the_machine_is_measured_once_and_cached(cache, monkeypatch):
    calls = []
    monkeypatch.setattr(precision, "measure_peaks", lambda device: calls.append("peaks") or PEAKS)

    def paths(device, bf16):
        calls.append(("paths", bf16))
        return {"torch fp32": 1.0, "torch bf16": 0.6, "onnxruntime fp32": 0.9, "openvino fp32": 0.7}

    monkeypatch.setattr(precision, "measure_paths", paths)
    lines = []
    assert precision.inference_path(log=lines.append) == "torch bf16"
    assert calls == ["peaks", ("paths", True)] and "measuring this machine once" in lines[0]
    assert precision.inference_path() == "torch bf16" and len(calls) == 2  # from the cache
    assert precision.inference_path(runtimes=("openvino", "onnxruntime")) == "openvino fp32"
    assert machine.resolve_training_precision("auto") == "bf16" and len(calls) == 2
    assert machine.resolve_training_precision("fp32") == "fp32"
    for path in cache.glob("machine-*.json"):
        path.write_text("{damaged")
    precision.inference_path()
    assert len(calls) == 4  # measured again


def test_asking_for_bf16_where_it_does_not_pay_says_so(cache, monkeypatch, tiny, tmp_path, capsys):
    from isnet.cli import main

    emulated = {kind: {**values, "bf16": values["fp32"] / 20} for kind, values in PEAKS.items()}
    monkeypatch.setattr(precision, "measure_peaks", lambda device: emulated)
    monkeypatch.setattr(precision, "measure_paths", lambda device, bf16: {"torch fp32": 1.0})
    precision.profile("cpu")  # this machine, measured: bf16 at 1/20 of float32
    checkpoint = save_model(tiny, tmp_path / "tiny.safetensors")
    image = tmp_path / "x.png"
    Image.fromarray(np.zeros((24, 32, 3), np.uint8)).save(image)
    arguments = ["predict", str(image), "--checkpoint", str(checkpoint), "--device", "cpu", "--output", str(tmp_path / "out")]
    assert main(arguments + ["--precision", "bf16"]) == 0
    assert "note: bf16 convolutions run at 5 GFLOP/s on this CPU against 100 in float32" in capsys.readouterr().err
    monkeypatch.setattr(precision, "measure_peaks", lambda device: PEAKS)
    precision.profile("cpu", refresh=True)  # a CPU where bf16 pays: no note
    assert main(arguments + ["--precision", "bf16"]) == 0
    assert "note:" not in capsys.readouterr().err


def test_auto_path_can_be_pinned(cache, monkeypatch):
    monkeypatch.setenv("ISNET_AUTO_PATH", "onnxruntime fp32")
    assert precision.inference_path() == "onnxruntime fp32"
    assert precision.inference_path(runtimes=("torch",)) == "torch fp32"
    monkeypatch.setenv("ISNET_AUTO_PATH", "tpu int4")
    with pytest.raises(ValueError, match="ISNET_AUTO_PATH"):
        precision.inference_path()


@pytest.mark.parametrize("path", ["torch fp32", "onnxruntime fp32", "openvino fp32"])
def test_every_auto_path_computes_the_float32_logits(tiny, cache, monkeypatch, path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    monkeypatch.setenv("ISNET_AUTO_PATH", path)
    runner = fast_paths.fast_model(tiny)
    images = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        expected = tiny.logits(images)
    assert relative_error(runner.logits(images), expected) < 1e-4
    assert runner.config == tiny.config
    assert isinstance(runner, FastSegmentor) == (path == "torch fp32")


def test_the_exported_graph_is_cached_per_weights(tiny, cache, monkeypatch):
    pytest.importorskip("onnx")
    first = fast_paths.exported_graph(tiny)
    monkeypatch.setattr("isnet.deploy.export.export_onnx", lambda *a, **k: pytest.fail("exported again"))
    assert fast_paths.exported_graph(tiny) == first
    other = build_model(tiny.config).eval()
    assert fast_paths.weights_digest(other) != fast_paths.weights_digest(tiny)


def test_corrupt_cached_graph_is_exported_again(tiny, cache):
    """A damaged file in our own cache (a cut, a flipped bit) is made again, not reported as the user's."""
    first = fast_paths.exported_graph(tiny)
    intact = first.read_bytes()
    damaged = bytearray(intact)
    damaged[len(damaged) // 2] ^= 0x10
    first.write_bytes(bytes(damaged))
    said = []
    assert fast_paths.exported_graph(tiny, log=said.append) == first
    assert first.read_bytes() != bytes(damaged) and "damaged ONNX model" in said[0] and "exporting it again" in said[0]
    runner = fast_paths.graph_runtime(first, "onnx")
    images = torch.randn(1, 3, 40, 56)
    with torch.no_grad():
        assert relative_error(runner.logits(images), tiny.logits(images)) < 1e-4


def test_a_graph_file_runs_in_the_runtime_it_needs(tiny, cache, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    from isnet.deploy.export import export_onnx
    from isnet.deploy.runtimes.onnxruntime import OnnxSegmentor
    from isnet.deploy.runtimes.openvino import OpenVinoSegmentor

    path = export_onnx(tiny, tmp_path / "tiny.onnx", sample_size=(48, 64))
    assert isinstance(fast_paths.graph_runtime(path, "auto"), OnnxSegmentor)  # nothing measured: ONNX Runtime
    assert isinstance(fast_paths.graph_runtime(path, "openvino"), OpenVinoSegmentor)
    for runtime, precision_, message in (("torch", "auto", "--runtime torch"), ("auto", "bf16", "--precision bf16")):
        with pytest.raises(ValueError, match=message):
            fast_paths.graph_runtime(path, runtime, precision=precision_)
    with pytest.raises(ValueError, match="MODEL.xml"):
        fast_paths.graph_runtime(tmp_path / "model.safetensors", "openvino")


def test_cli_predicts_and_evaluates_with_auto_and_openvino(tiny, tmp_path, monkeypatch, capsys):
    pytest.importorskip("openvino")
    from isnet.cli import main
    from isnet.data import synthetic

    synthetic.write_dataset(tmp_path / "data", num_train=1, num_val=2, height=48, width=64)
    checkpoint = save_model(tiny, tmp_path / "tiny.safetensors")
    image = tmp_path / "x.png"
    Image.fromarray(np.random.randint(0, 255, (30, 41, 3), np.uint8)).save(image)
    monkeypatch.setenv("ISNET_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("ISNET_AUTO_PATH", "openvino fp32")
    assert main(["predict", str(image), "--checkpoint", str(checkpoint), "--output", str(tmp_path / "out")]) == 0
    assert "precision auto: openvino fp32" in capsys.readouterr().err
    assert np.asarray(Image.open(tmp_path / "out" / "x_labels.png")).shape == (30, 41)
    onnx_path = next((tmp_path / "cache" / "graphs").glob("*.onnx"))
    assert main(["eval", "--weights", str(onnx_path), "--runtime", "openvino", "--dataset", "folder",
                 "--data-root", str(tmp_path / "data"), "--output", str(tmp_path / "eval")]) == 0
    assert "mIoU" in capsys.readouterr().out
    # a checkpoint is not a graph file: a usage error naming the option
    assert main(["predict", str(image), "--checkpoint", str(checkpoint), "--runtime", "openvino", "--output", str(tmp_path)]) == 2
    assert "--runtime openvino reads --weights MODEL.onnx" in capsys.readouterr().err


def test_cli_trains_in_the_measured_precision(cache, monkeypatch, tmp_path, capsys):
    from cli_helpers import tiny_training

    from isnet.cli import main
    from isnet.data import synthetic

    synthetic.write_dataset(tmp_path / "data", num_train=4, num_val=1, height=48, width=64)
    # A CPU where bf16 pays: training reads PyTorch's peaks (utils/machine.py), whatever this machine's are
    # (the test once patched the deploy profile's peaks, which training never reads, and so followed the machine).
    monkeypatch.setattr(machine, "measure_torch_peaks", lambda device: PEAKS)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    arguments = tiny_training(tmp_path / "data", tmp_path / "run", "--precision", "auto", max_iters=1)
    assert main([str(argument) for argument in arguments]) == 0
    assert "precision auto: training in bf16" in capsys.readouterr().err
    assert json.loads((tmp_path / "run" / "config.json").read_text())["precision"] == "bf16"  # what the run records
    monkeypatch.setenv("ISNET_AUTO_PATH", "torch fp32")  # pinned: no measurement
    arguments = tiny_training(tmp_path / "data", tmp_path / "pinned", "--precision", "auto", max_iters=1)
    assert main([str(argument) for argument in arguments]) == 0
    assert json.loads((tmp_path / "pinned" / "config.json").read_text())["precision"] == "fp32"


@pytest.mark.parametrize("missing", [None, "onnx", "openvino"])
def test_the_probe_times_the_runtimes_that_can_run_here(monkeypatch, tiny, tmp_path, missing):
    """A runtime is a candidate only when it and the ``onnx`` package that writes its graph are
    installed: a user with ONNX Runtime but without ``onnx`` still gets a PyTorch path."""
    pytest.importorskip("onnxruntime")
    pytest.importorskip("openvino")
    import isnet.weights.presets

    from isnet.deploy.runtimes import OpenVinoSegmentor

    real_version = precision.installed_version
    monkeypatch.setattr(precision, "installed_version", lambda name: None if name == missing else real_version(name))
    if missing == "openvino":
        monkeypatch.setattr(OpenVinoSegmentor, "requires", ("openvino_not_installed",))
    monkeypatch.setattr(isnet.weights.presets, "create_model", lambda name: tiny)  # the probe's model, small
    candidates = precision.probe_candidates("cpu", bf16=False, workdir=tmp_path, size=(32, 32))
    expected = {None: ["torch fp32", "onnxruntime fp32", "openvino fp32"], "onnx": ["torch fp32"],
                "openvino": ["torch fp32", "onnxruntime fp32"]}[missing]
    assert list(candidates) == expected
    with torch.no_grad():
        outputs = [run() for run in candidates.values()]
    assert all(relative_error(output, outputs[0]) < 1e-4 for output in outputs)

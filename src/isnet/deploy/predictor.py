"""One way to get a runnable model: :func:`load_predictor`.

Every command (``predict``, ``eval``, ``calibrate``, ``quantize``, ``export``, ``serve``),
Ray, video, tiled prediction and the Python API load their model here, so the weights or
graph, the precision, the runtime, the calibration a file carries and the device are decided
in one place, and every path answers the one call contract of
:class:`~isnet.inference.predictor.Predictor`::

    from isnet import load_predictor

    predictor = load_predictor("model.safetensors")  # its temperature applied, if calibrated
    probabilities = predictor.probabilities(images)   # (N, K, H, W) at the input size
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from isnet.deploy.fast_paths import fast_model, graph_runtime
from isnet.deploy.runtimes import RUNTIMES, readers_of
from isnet.inference.predictor import ModulePredictor, Predictor
from isnet.utils.precision import Precision, require_device
from isnet.weights.calibration import calibration_from_metadata
from isnet.weights.decision_threshold import threshold_from_metadata
from isnet.weights.model_records import file_metadata


def load_predictor(
    source: str | Path | nn.Module,
    *,
    weights: str | Path | None = None,
    precision: Precision | str = Precision.FP32,
    runtime: str = "auto",
    device: torch.device | str | None = None,
    compile: bool = False,
    threads: int | None = None,
    log: Callable[[str], None] | None = None,
) -> Predictor:
    """The model of ``source`` ready to run, as ``precision`` and ``runtime`` ask.

    ``source``: one of our ``.safetensors`` files, an exported graph (``.onnx`` of ``isnet
    export``, ``.xml`` of ``isnet quantize``), a preset name with ``weights`` (a file or
    released weights' name), or a model in memory. A file that ``isnet calibrate`` stored a
    temperature in gives calibrated logits and probabilities. ``precision``: fp32 (default),
    bf16, fp16 (GPU) or auto (the fastest float32-accurate path measured on this machine).
    ``runtime``: auto, torch, or a graph runtime (onnx, openvino). ``device``: default a GPU
    when there is one (a graph computes on the CPU). ``threads``: PyTorch's and the runtime's
    CPU threads. ``log`` hears what was chosen (default: nothing is said).

    Raises ``ValueError`` (a ``CheckpointError`` for a bad file) for what cannot run.
    """
    precision = str(Precision.of(precision))
    if threads:
        torch.set_num_threads(threads)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    say = log or (lambda line: None)
    calibration_file = weights if weights is not None else source
    graph = None if isinstance(source, nn.Module) else weights or source
    if graph is not None and (readers_of(graph) or runtime in RUNTIMES):
        predictor: Predictor = graph_runtime(graph, runtime, precision=precision, threads=threads)
        predictor.source = str(graph)
    else:
        model = _float_model(source, weights)
        predictor = _torch_predictor(model, precision=precision, runtime=runtime, device=device, compile=compile,
                                     threads=threads, say=say)
        predictor.source = str(weights or source) if not isinstance(source, nn.Module) else None
    metadata = file_metadata(calibration_file) if isinstance(calibration_file, (str, Path)) else {}  # the header, once
    record = calibration_from_metadata(metadata, source=calibration_file)
    if record is not None:
        say(f"note: {calibration_file} is calibrated: its logits are divided by the temperature "
            f"{record['temperature']:.4g} fitted by isnet calibrate")
        predictor = predictor.with_temperature(record["temperature"])
    decision = threshold_from_metadata(metadata, source=calibration_file)
    if decision is not None:
        say(f"note: {calibration_file} labels the foreground where its probability exceeds {decision['threshold']:.4g} "
            "(the F1-optimal threshold isnet calibrate stored; --threshold, or with_threshold(), to change it)")
        predictor = predictor.with_threshold(decision["threshold"])
    return predictor


def _float_model(source: str | Path | nn.Module, weights: str | Path | None) -> nn.Module:
    """The PyTorch model of ``source``: as it is, read from our file, or a preset built with ``weights``."""
    from isnet.weights.checkpoint import load_model
    from isnet.weights.presets import create_model

    if isinstance(source, nn.Module):
        return source
    if str(source).endswith(".safetensors") and weights is None:
        return load_model(source)
    return create_model(str(source), weights=weights)


def _torch_predictor(
    model: nn.Module,
    *,
    precision: str,
    runtime: str,
    device: torch.device,
    compile: bool,
    threads: int | None,
    say: Callable[[str], None],
) -> Predictor:
    """``model`` on the path ``precision`` asks for (auto: measured on this machine, maybe a graph runtime)."""
    require_device(precision, device)
    if precision == "auto":
        runner = fast_model(model, runtime=runtime, compile=compile, device=device, log=say)
        if isinstance(runner, Predictor):  # an exported graph in a runtime
            return runner
        return ModulePredictor(runner.to(device), device=device, precision=str(runner.precision))
    if precision == "bf16":
        from isnet.utils.machine import slow_bf16_note

        note = slow_bf16_note(device)
        if note:
            say(f"note: {note}")
    if precision != "fp32" or compile:
        from isnet.deploy.runtimes.pytorch import FastSegmentor

        model = FastSegmentor(model, precision=precision, compile=compile)
    return ModulePredictor(model, device=device, precision=precision)

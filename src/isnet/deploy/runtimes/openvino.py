"""Prediction through OpenVINO: the CPU runtime Intel users deploy with, and our INT8 path.

:class:`OpenVinoSegmentor` runs an ONNX graph written by :func:`isnet.deploy.export.export_onnx` or
an OpenVINO IR (``.xml`` + ``.bin``, e.g. the INT8 model of ``isnet quantize``) with the
interface of :class:`~isnet.deploy.runtimes.base.RuntimeSegmentor` (``logits``, ``config``,
``dataset``, ``probabilities``), so ``isnet predict/eval --runtime openvino`` and the
inference protocols use it unchanged.

The model's configuration and dataset record travel in the file: ONNX metadata properties
(``isnet export``) or, in an IR, the model's ``rt_info`` under ``isnet`` (:func:`save_ir`).
Everything that is not quantised computes in float32 (``INFERENCE_PRECISION_HINT=f32``):
OpenVINO would otherwise switch float layers to bfloat16 on CPUs that have it, and the
parts an INT8 model keeps in float are kept there for their accuracy.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from isnet.deploy.runtimes.base import RuntimeSegmentor
from isnet.deploy.runtimes.messages import runtime_words
from isnet.utils.atomic_files import atomic_paths
from isnet.utils.errors import CheckpointError
from isnet.utils.seal import PLACEHOLDER, SEAL_KEY, seal
from isnet.weights.inspection import FileKind, require_kind

RT_INFO_SECTION = "isnet"  # rt_info["isnet"][key] = metadata value
QUANTIZED_OPS = ("FakeQuantize", "FakeConvert")
IR_SEAL_SECTION = (f"<{RT_INFO_SECTION}>".encode(), f"</{RT_INFO_SECTION}>".encode())  # our rt_info, not "framework"


@functools.cache
def core() -> Any:
    """The process's one ``openvino.Core``: compiled models never outlive the core that made them."""
    import openvino as ov

    return ov.Core()


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The metadata properties of an ONNX file (the configuration and dataset record ``isnet export`` writes)."""
    import onnx

    try:
        return {entry.key: entry.value for entry in onnx.load(str(path), load_external_data=False).metadata_props}
    except Exception as error:  # protobuf's DecodeError, onnx's own types
        raise CheckpointError(f"{path}: damaged ONNX model: unreadable ({runtime_words(error)})") from None


def ir_metadata(model: Any) -> dict[str, str]:
    """The metadata an OpenVINO model carries in its ``rt_info`` (see :func:`save_ir`)."""
    if not model.has_rt_info([RT_INFO_SECTION]):
        return {}
    section = model.get_rt_info()[RT_INFO_SECTION]  # a dict of OVAny values
    return {key: value.astype(str) for key, value in section.items()}


def save_ir(model: Any, path: str | Path, metadata: Mapping[str, str]) -> Path:
    """Write ``model`` as an OpenVINO IR (``path`` ``.xml`` and its ``.bin``) with ``metadata`` in its rt_info.

    Weights are stored as they are (no float16 compression: float parts stay float32).
    """
    import openvino as ov

    path = Path(path)
    _drop_copied_seal(model)
    for key, value in {**metadata, SEAL_KEY: PLACEHOLDER}.items():
        model.set_rt_info(value, [RT_INFO_SECTION, key])
    # Both written under temporary names of one stem (OpenVINO puts the .bin beside the .xml), then
    # renamed: the .bin first, so that a kill between leaves a pair whose seal names the mismatch.
    with atomic_paths(path.with_suffix(".bin"), path) as (weights, temporary):
        ov.save_model(model, str(temporary), compress_to_fp16=False)
        seal(temporary, (weights,))  # the .xml and its .bin, sealed together
    return path


def _drop_copied_seal(model: Any) -> None:
    """Remove the seal of the ONNX graph a model was read from (OpenVINO copies ONNX metadata into
    ``rt_info["framework"]``): it sealed the ONNX file, not this IR."""
    if not model.has_rt_info(["framework", SEAL_KEY]):
        return
    info = model.get_rt_info()
    kept = {key: value.astype(str) for key, value in info["framework"].items() if key != SEAL_KEY}
    del info["framework"]
    for key, value in kept.items():
        model.set_rt_info(value, ["framework", key])


def is_quantized(model: Any) -> bool:
    """Whether an OpenVINO model has quantised operations (made by NNCF)."""
    return any(op.get_type_name() in QUANTIZED_OPS for op in model.get_ops())


def read_model(path: str | Path) -> tuple[Any, dict[str, str]]:
    """An OpenVINO model from an ONNX file or an IR, with the metadata it carries."""
    path = Path(path)
    if path.suffix not in (".onnx", ".xml"):
        raise ValueError(f"{path}: OpenVINO reads an ONNX file (.onnx) or an IR (.xml + .bin)")
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    weights = path.with_suffix(".bin")
    if path.suffix == ".onnx":
        require_kind(path, FileKind.ONNX)
    else:
        require_kind(path, FileKind.OPENVINO_IR, (weights,), IR_SEAL_SECTION)
        _require_well_formed(path)
    try:
        model = core().read_model(str(path), *(() if path.suffix == ".onnx" else (str(weights),)))
    except RuntimeError as error:  # OpenVINO reports every problem of a file as a RuntimeError
        kind = "ONNX model" if path.suffix == ".onnx" else "OpenVINO IR"
        raise CheckpointError(f"{path}: damaged {kind}: OpenVINO cannot read it ({runtime_words(error)})") from None
    return model, (onnx_metadata(path) if path.suffix == ".onnx" else ir_metadata(model))


def _require_well_formed(path: Path) -> None:
    """A :class:`CheckpointError` unless the IR's ``.xml`` parses, before OpenVINO tries every frontend on it
    (and prints their complaints)."""
    from xml.etree import ElementTree

    try:
        root = ElementTree.parse(path).getroot()
    except (ElementTree.ParseError, UnicodeDecodeError) as error:
        raise CheckpointError(f"{path}: damaged OpenVINO IR: not well-formed XML ({error})") from None
    if root.tag != "net":
        raise CheckpointError(f"{path}: not an OpenVINO IR: its XML root is <{root.tag}>, not <net>")


class OpenVinoSegmentor(RuntimeSegmentor):
    """An OpenVINO compiled model standing in for a segmentor (inference only, CPU).

    ``source`` is a path (``.onnx`` or ``.xml``) or an ``openvino.Model`` with its
    ``metadata``. ``precision`` says what the graph computes in: ``int8`` for a quantised
    model (float parts in float32), else ``fp32``.
    """

    name = "openvino"
    profile_name = "openvino"
    reads = (".xml", ".onnx")  # its own IR, and ONNX
    requires = ("openvino",)

    def __init__(self, source: str | Path | Any, *, threads: int | None = None, metadata: Mapping[str, str] | None = None) -> None:
        if isinstance(source, (str, Path)):
            self.path = Path(source)
            model, metadata = read_model(source)
        else:
            self.path, model, metadata = Path("<in memory>"), source, metadata or {}
        self._read_metadata(metadata)
        self.precision = "int8" if is_quantized(model) else "fp32"
        properties: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
        if threads:
            properties["INFERENCE_NUM_THREADS"] = threads
        try:
            self.compiled = core().compile_model(model, "CPU", properties)
        except RuntimeError as error:
            raise CheckpointError(f"{self.path}: OpenVINO cannot compile this model ({runtime_words(error)})") from None

    def run(self, images: np.ndarray) -> np.ndarray:
        return self.compiled(images)[0]


def convolution_probe(int8: bool):
    """For the machine's peaks: ``make(n)`` → (FLOPs, call) of OpenVINO's 3×3 convolution,
    256→256 channels on n×n, in float32 or INT8 (quantised input and weights, as NNCF writes them)."""
    import openvino.opset13 as ops

    def make(n: int):
        channels = 256
        images = ops.parameter([1, channels, n, n], np.float32)
        weight = _probe_weight((channels, channels, 3, 3), int8)
        output = ops.convolution(_probe_input(images, int8), weight, [1, 1], [1, 1], [1, 1], [1, 1])
        return 2 * n * n * channels * channels * 9, _compiled_call(output, images, (1, channels, n, n))

    return make


def matmul_probe(int8: bool):
    """For the machine's peaks: ``make(n)`` → (FLOPs, call) of OpenVINO's n×n by n×n matrix
    product, in float32 or INT8 (quantised as NNCF writes a quantised ``MatMul``)."""
    import openvino.opset13 as ops

    def make(n: int):
        rows = ops.parameter([n, n], np.float32)
        output = ops.matmul(_probe_input(rows, int8), _probe_weight((n, n), int8), False, True)
        return 2 * n**3, _compiled_call(output, rows, (n, n))

    return make


def _probe_input(node: Any, int8: bool) -> Any:
    import openvino.opset13 as ops

    if not int8:
        return node
    low, high = np.float32(-4), np.float32(4)
    return ops.fake_quantize(node, low, high, low, high, 256)


def _probe_weight(shape: tuple[int, ...], int8: bool) -> Any:
    """Random weights: float32, or int8 codes with a per-output-channel scale (NNCF's form)."""
    import openvino.opset13 as ops

    rng = np.random.default_rng(0)
    if not int8:
        return ops.constant(rng.standard_normal(shape).astype(np.float32))
    codes = ops.constant(rng.integers(-127, 128, shape).astype(np.int8))
    scale = ops.constant(np.full((shape[0],) + (1,) * (len(shape) - 1), 0.01, np.float32))
    return ops.multiply(ops.convert(codes, np.float32), scale)


def _compiled_call(output: Any, parameter: Any, shape: tuple[int, ...]):
    import openvino as ov

    properties = {"INFERENCE_PRECISION_HINT": "f32", "INFERENCE_NUM_THREADS": _torch_threads()}
    compiled = core().compile_model(ov.Model([output], [parameter]), "CPU", properties)
    array = np.random.default_rng(1).standard_normal(shape).astype(np.float32)
    return lambda: compiled(array)


def _torch_threads() -> int:
    import torch

    return torch.get_num_threads()

"""Prediction through ONNX Runtime: :class:`OnnxSegmentor` runs a graph written by
:func:`isnet.deploy.export.export_onnx` behind the :class:`~isnet.deploy.runtimes.base.RuntimeSegmentor`
interface, so the inference protocols, the evaluation loop and ``isnet predict/eval --runtime onnx``
use it unchanged.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isnet.deploy.runtimes.base import RuntimeSegmentor
from isnet.deploy.runtimes.messages import runtime_words
from isnet.utils.errors import CheckpointError
from isnet.weights.inspection import FileKind, require_kind


class OnnxSegmentor(RuntimeSegmentor):
    """An ONNX Runtime session standing in for a segmentor (inference only)."""

    name = "onnx"
    profile_name = "onnxruntime"
    reads = (".onnx",)
    requires = ("onnxruntime",)

    def __init__(self, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        require_kind(self.path, FileKind.ONNX)
        try:
            self.session = onnxruntime.InferenceSession(
                str(path), options, providers=providers or onnxruntime.get_available_providers()
            )
        except Exception as error:  # onnxruntime's own types (InvalidProtobuf, InvalidGraph, Fail, ...), not ours
            raise CheckpointError(f"{self.path}: damaged ONNX model: ONNX Runtime cannot load it ({runtime_words(error)})") from None
        self._read_metadata(self.session.get_modelmeta().custom_metadata_map)
        self.input_name = self.session.get_inputs()[0].name

    def run(self, images: np.ndarray) -> np.ndarray:
        (logits,) = self.session.run(None, {self.input_name: images})
        return logits

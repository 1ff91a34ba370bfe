"""Prediction through ONNX Runtime, with the interface the inference protocols expect.

:class:`OnnxSegmentor` runs a graph written by :func:`isnet.export.export_onnx` and
exposes ``logits(images)``, ``config`` and ``eval()`` like a :class:`~isnet.segmentor.Segmentor`,
so :func:`isnet.inference.predict` (whole image, sliding window, multi-scale + flip) and
``isnet predict --runtime onnx`` use it unchanged.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import CONFIG_METADATA_KEY, dataset_from_metadata
from .config import ModelConfig


class OnnxSegmentor:
    """An ONNX Runtime session standing in for a segmentor (inference only)."""

    def __init__(self, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        self.session = onnxruntime.InferenceSession(
            str(path), options, providers=providers or onnxruntime.get_available_providers()
        )
        metadata = self.session.get_modelmeta().custom_metadata_map
        self.config: ModelConfig | None = (
            ModelConfig.from_json(metadata[CONFIG_METADATA_KEY]) if CONFIG_METADATA_KEY in metadata else None
        )
        self.dataset = (
            None if self.config is None else dataset_from_metadata(metadata, self.config.num_classes, source=path)
        )
        self.input_name = self.session.get_inputs()[0].name

    def eval(self) -> OnnxSegmentor:
        return self

    def logits(self, images: Tensor) -> Tensor:
        """Stage-2 logits at the head's resolution (float32, on the images' device)."""
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        (logits,) = self.session.run(None, {self.input_name: array})
        return torch.from_numpy(logits).to(images.device)

    def __call__(self, images: Tensor) -> dict[str, Tensor]:
        return {"out": self.logits(images)}

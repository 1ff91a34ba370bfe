"""Prediction through ONNX Runtime, with the interface the inference protocols expect.

:class:`OnnxSegmentor` runs a graph written by :func:`isnet.deploy.export.export_onnx` and
exposes ``logits(images)``, ``config`` and ``eval()`` like a :class:`~isnet.model.segmentor.Segmentor`,
so :func:`isnet.inference.engine.predict` (whole image, sliding window, multi-scale + flip),
:func:`isnet.evaluation.evaluate` and ``isnet predict/eval --runtime onnx`` use it unchanged.
:class:`RuntimeSegmentor` is that interface, shared with
:class:`isnet.deploy.runtimes.openvino.OpenVinoSegmentor`.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator, Mapping
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from isnet.utils.errors import CheckpointError
from isnet.weights.checkpoint import CONFIG_METADATA_KEY, dataset_from_metadata
from isnet.weights.inspection import require_kind
from isnet.deploy.runtimes.messages import runtime_words
from isnet.model.config import ModelConfig


class RuntimeSegmentor(abc.ABC):
    """A compiled graph standing in for a segmentor (inference only, on the CPU).

    Subclasses implement :meth:`run` (float32 NCHW array in, logits array out). Inputs on
    another device are copied to the CPU and the logits back to the inputs' device.
    """

    path: Path
    config: ModelConfig | None
    precision: str = "fp32"  # what the graph computes in: fp32, or int8 for a quantised model
    training = False  # as a module in eval mode (the evaluation loop saves and restores it)

    def _read_metadata(self, metadata: Mapping[str, str]) -> None:
        """``config`` and ``dataset`` from the metadata the file carries (written by ``isnet export``)."""
        try:
            self.config = ModelConfig.from_json(metadata[CONFIG_METADATA_KEY]) if CONFIG_METADATA_KEY in metadata else None
        except (ValueError, TypeError, KeyError, AttributeError) as error:
            raise CheckpointError(f"{self.path}: unreadable model configuration in its metadata: {error}") from None
        self.dataset = (
            None if self.config is None else dataset_from_metadata(metadata, self.config.num_classes, source=self.path)
        )

    @abc.abstractmethod
    def run(self, images: np.ndarray) -> np.ndarray:
        """Logits (N, K, h, w) of a float32 NCHW batch, computed by the runtime."""

    def logits(self, images: Tensor) -> Tensor:
        """Stage-2 logits at the head's resolution (float32, channels-last, on the images' device).

        Channels-last as :class:`~isnet.deploy.runtimes.pytorch.FastSegmentor` returns them: resizing K-channel
        scores to the image and taking their argmax runs several times faster in that layout
        (50 → 10 ms for a CamVid image resized to its 360×480 label).
        """
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        logits = torch.from_numpy(np.asarray(self.run(array), dtype=np.float32))
        return logits.contiguous(memory_format=torch.channels_last).to(images.device)

    def __call__(self, images: Tensor) -> dict[str, Tensor]:
        return {"out": self.logits(images)}

    def eval(self) -> RuntimeSegmentor:
        return self

    def train(self, mode: bool = True) -> RuntimeSegmentor:
        if mode:
            raise RuntimeError(f"{type(self).__name__} is for inference only")
        return self

    def to(self, *args, **kwargs) -> RuntimeSegmentor:
        """The graph runs on the CPU whatever the device; logits follow the images (see :meth:`logits`)."""
        return self

    def parameters(self) -> Iterator[Tensor]:
        """One empty float32 tensor: the evaluation loop reads the input dtype from the parameters."""
        yield torch.empty(0)


class OnnxSegmentor(RuntimeSegmentor):
    """An ONNX Runtime session standing in for a segmentor (inference only)."""

    def __init__(self, path: str | Path, *, threads: int | None = None, providers: list[str] | None = None) -> None:
        import onnxruntime

        options = onnxruntime.SessionOptions()
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            options.intra_op_num_threads = threads
        self.path = Path(path)
        require_kind(self.path, "an ONNX model", "an ONNX model")
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

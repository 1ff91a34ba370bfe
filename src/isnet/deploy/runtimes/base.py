"""One interface for every runtime a model can run in, and the registry of graph runtimes.

:class:`RuntimeSegmentor` is a :class:`~isnet.inference.predictor.Predictor` (the one call
contract of every inference path: ``logits``, ``probabilities``, ``config``, ``dataset``), so
the protocols of :mod:`isnet.inference.engine`, the evaluation loop and every command use it unchanged.

A :class:`RuntimeSegmentor` runs an exported graph (ONNX, an OpenVINO IR, ...). Adding one
(e.g. TensorRT) is a module with its subclass and one :func:`register_runtime` line in
:mod:`isnet.deploy.runtimes`; ``--runtime``, the file suffixes ``--weights`` accepts,
``precision="auto"``'s probe and the choice of runtime for a file all read :data:`RUNTIMES`.
"""

from __future__ import annotations

import abc
import importlib.util
from collections.abc import Mapping
from pathlib import Path
from typing import ClassVar

import numpy as np
import torch
from torch import Tensor

from isnet.inference.predictor import Predictor
from isnet.model.config import ModelConfig
from isnet.utils.errors import CheckpointError
from isnet.weights.checkpoint import CONFIG_METADATA_KEY, dataset_from_metadata
from isnet.weights.inspection import require_known_format


class RuntimeSegmentor(Predictor):
    """A compiled graph as a predictor (it computes on the CPU; logits come back on the images' device).

    A subclass says what it is (:attr:`name`, the files it :attr:`reads`, the Python modules it
    :attr:`requires`), takes ``(path, *, threads=None)`` and implements :meth:`run` (float32
    NCHW array in, logits array out).
    """

    name: ClassVar[str]  # the word of ``--runtime`` (e.g. "onnx")
    profile_name: ClassVar[str]  # its name in a machine profile's paths and ISNET_AUTO_PATH (e.g. "onnxruntime")
    reads: ClassVar[tuple[str, ...]]  # the file suffixes it runs (e.g. (".onnx",))
    requires: ClassVar[tuple[str, ...]]  # the Python modules it needs (an optional extra: utils.errors.OPTIONAL_MODULES)

    path: Path
    config: ModelConfig | None
    precision: str = "fp32"  # what the graph computes in: fp32, or int8 for a quantised model

    def _read_metadata(self, metadata: Mapping[str, str]) -> None:
        """``config`` and ``dataset`` from the metadata the file carries (written by ``isnet export``)."""
        require_known_format(metadata, self.path)
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

    @property
    def runtime(self) -> str:  # type: ignore[override]
        return self.profile_name

    def _raw_logits(self, images: Tensor) -> Tensor:
        """Stage-2 logits at the head's resolution (float32, channels-last, on the images' device).

        Channels-last as :class:`~isnet.deploy.runtimes.pytorch.FastSegmentor` returns them: resizing K-channel
        scores to the image and taking their argmax runs several times faster in that layout
        (50 → 10 ms for a CamVid image resized to its 360×480 label).
        """
        array = images.detach().to("cpu", torch.float32).contiguous().numpy()
        logits = torch.from_numpy(np.asarray(self.run(array), dtype=np.float32))
        return logits.contiguous(memory_format=torch.channels_last).to(images.device)

    @classmethod
    def available(cls) -> bool:
        """Whether the modules it needs are installed."""
        return all(importlib.util.find_spec(module) is not None for module in cls.requires)


RUNTIMES: dict[str, type[RuntimeSegmentor]] = {}  # --runtime word → class, in registration order


def register_runtime(runtime: type[RuntimeSegmentor]) -> type[RuntimeSegmentor]:
    """Make ``runtime`` a choice of ``--runtime`` and a reader of its file suffixes."""
    for attribute in ("name", "profile_name", "reads", "requires"):
        if not hasattr(runtime, attribute):
            raise TypeError(f"{runtime.__name__} must say its {attribute} to be registered")
    if runtime.name in ("auto", "torch") or runtime.name in RUNTIMES:
        raise ValueError(f"a runtime named {runtime.name!r} exists already")
    RUNTIMES[runtime.name] = runtime
    return runtime


def graph_suffixes() -> tuple[str, ...]:
    """Every file suffix some registered runtime runs."""
    return tuple(dict.fromkeys(suffix for runtime in RUNTIMES.values() for suffix in runtime.reads))


def readers_of(path: str | Path) -> list[type[RuntimeSegmentor]]:
    """The registered runtimes that run ``path`` (by its suffix), in registration order."""
    return [runtime for runtime in RUNTIMES.values() if Path(path).suffix in runtime.reads]

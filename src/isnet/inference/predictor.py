"""A runnable model behind one call contract: what every inference path takes.

A :class:`Predictor` owns what runs (a PyTorch module, or an exported graph in a runtime), its precision,,
the device it runs on, and the temperature of a calibrated file. It offers:

- ``logits(images)``: stage-2 logits at the head's resolution (float32, divided by the
  temperature when the model is calibrated), on the images' device, whatever device computes;
- ``probabilities(images, config)``: class probabilities at the input size under a test
  protocol (always probabilities, whichever way the protocol averages);
- ``labels(images, config)``: the label map at the input size;
- ``config``, ``dataset`` (the model's dataset record: classes, palette, test protocol),
  ``device``, ``runtime``, ``precision``, ``temperature``, ``threshold`` (a binary model's decision
  threshold, :mod:`isnet.inference.threshold`) and ``describe()`` (the path, in words).

The protocols of :mod:`isnet.inference.engine` call ``logits``. A predictor is not an
``nn.Module``: it is never trained, moved or asked for parameters. ``isnet.deploy.load_predictor``
makes one from a file; :class:`ModulePredictor` wraps a module already in memory (a live
training model evaluated between iterations).
"""

from __future__ import annotations

import abc
import copy
from typing import Any

import torch
from torch import Tensor, nn

from isnet.inference.engine import InferenceConfig, predict
from isnet.inference.temperature import probabilities
from isnet.inference.threshold import ARGMAX, check_threshold, shift_foreground
from isnet.model.config import ModelConfig


class Predictor(abc.ABC):
    """A model ready to run (see the module docstring). Subclasses implement :meth:`_raw_logits`."""

    config: ModelConfig | None = None
    dataset: Any = None  # the DatasetInfo record (the data layer sits above this one), when known
    device: torch.device = torch.device("cpu")  # where it computes; inputs are best put there
    source: str | None = None  # the file it was read from, when it was
    temperature: float = 1.0  # the logits are divided by it (1: not calibrated)
    threshold: float = ARGMAX  # binary models: the foreground where its probability exceeds it
    runtime: str = "torch"  # what computes: torch, onnxruntime, openvino
    precision: str = "fp32"  # in what: fp32, bf16, fp16 (PyTorch), int8 (a quantised graph)

    @abc.abstractmethod
    def _raw_logits(self, images: Tensor) -> Tensor:
        """Uncalibrated stage-2 logits at the head's resolution, float32, on the images' device."""

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        """Stage-2 logits at the head's resolution, float32, calibrated (and for a binary model with a
        threshold, its foreground shifted so that the argmax labels by it), on the images' device."""
        logits = self._raw_logits(images)
        logits = logits if self.temperature == 1.0 else logits / self.temperature
        return logits if self.threshold == ARGMAX else shift_foreground(logits, self.threshold)

    def probabilities(self, images: Tensor, config: InferenceConfig = InferenceConfig()) -> Tensor:
        """Class probabilities (N, K, H, W) at the input size under the protocol ``config``."""
        return probabilities(predict(self, images, config), config)

    def labels(self, images: Tensor, config: InferenceConfig = InferenceConfig()) -> Tensor:
        """The label map (N, H, W) at the input size under the protocol ``config``."""
        return predict(self, images, config).argmax(dim=1)

    def with_temperature(self, temperature: float) -> Predictor:
        """The same predictor with its logits divided by ``temperature`` (> 0) instead."""
        if not temperature > 0:
            raise ValueError(f"a temperature must be > 0, got {temperature}")
        calibrated = copy.copy(self)
        calibrated.temperature = float(temperature)
        return calibrated

    def with_threshold(self, threshold: float) -> Predictor:
        """The same predictor labelling the foreground where its probability exceeds ``threshold`` (a binary model)."""
        threshold = check_threshold(threshold)
        classes = self.config.num_classes if self.config is not None else None
        if threshold != ARGMAX and classes not in (2, None):
            raise ValueError(f"a threshold is for binary models (background, foreground); this one has {classes} classes")
        thresholded = copy.copy(self)
        thresholded.threshold = threshold
        return thresholded

    def describe(self) -> str:
        """What computes, e.g. ``torch fp32 on cpu`` or ``openvino int8 on cpu, calibrated (T = 1.31)``."""
        calibration = f", calibrated (T = {self.temperature:.4g})" if self.temperature != 1.0 else ""
        threshold = f", foreground above p = {self.threshold:.4g}" if self.threshold != ARGMAX else ""
        return f"{self.runtime} {self.precision} on {self.device}{calibration}{threshold}"


class ModulePredictor(Predictor):
    """A PyTorch module with ``logits(images)`` (a segmentor, a prepared ``FastSegmentor``) as a predictor.

    The module computes on ``device`` (default: where its parameters are) in eval mode and
    is put back in the mode it was in, so a model being trained can be evaluated between
    iterations; inputs are cast to its parameters' dtype.
    """

    def __init__(
        self,
        module: nn.Module,
        *,
        device: torch.device | str | None = None,
        precision: str = "fp32",
        temperature: float = 1.0,
    ) -> None:
        if not temperature > 0:
            raise ValueError(f"a temperature must be > 0, got {temperature}")
        parameter = next(module.parameters(), None)
        if device is not None:
            module = module.to(device)
        self.module = module
        self.device = torch.device(device) if device is not None else parameter.device if parameter is not None else torch.device("cpu")
        self.dtype = parameter.dtype if parameter is not None and parameter.is_floating_point() else torch.float32
        self.config = getattr(module, "config", None)
        self.dataset = getattr(module, "dataset", None)
        self.precision = precision
        self.temperature = float(temperature)

    def _raw_logits(self, images: Tensor) -> Tensor:
        was_training = self.module.training
        self.module.eval()
        try:
            logits = self.module.logits(images.to(self.device, self.dtype))
        finally:
            self.module.train(was_training)
        return logits.float().to(images.device)


def as_predictor(model: Predictor | nn.Module) -> Predictor:
    """``model`` as a predictor: a predictor as it is, a module (e.g. a :class:`~isnet.model.segmentor.Segmentor`) wrapped."""
    return model if isinstance(model, Predictor) else ModulePredictor(model)

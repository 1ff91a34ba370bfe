"""INT8 post-training quantisation for CPUs: OpenVINO + NNCF, calibrated on the user's images.

``isnet quantize`` exports the model to ONNX (:func:`isnet.deploy.export.export_onnx`), converts
it to OpenVINO, runs ``nncf.quantize`` over the calibration images and writes an OpenVINO
IR (``.xml`` + ``.bin``) carrying the model's configuration and dataset record, which
:class:`isnet.deploy.runtimes.openvino.OpenVinoSegmentor` (``isnet predict --weights OUT.xml``) runs.

Why this stack (``python -m benchmarks.int8_stacks``, ``docs/benchmarks.md``): on an AVX2
CPU without VNNI the three candidates — OpenVINO + NNCF, ONNX Runtime's static QDQ
quantisation, PyTorch's PT2E with the x86 Inductor quantizer — ran within 2 % of each other
(2.1× our float32), since all use the same int8 convolution instructions there. OpenVINO
was measured at 3.7× the published baseline on a VNNI Xeon; its graph takes any image size
without recompiling (PT2E compiles per shape and needs torchao); ONNX Runtime's u8s8
convolutions can saturate on CPUs without VNNI; and NNCF's ignored scopes say exactly which
parts stay float.

What stays in float (:class:`FloatScope`, chosen with ``python -m benchmarks.int8_sensitivity``):

- the **attention products** (every activation×activation ``MatMul``: ILCM's ``QKᵀ`` and
  ``AV``, SLCM's softmax-weighted region sums and its attention over the regions): a softmax
  turns an 8-bit score error into a weight error, and the region sums reduce over many pixels;
- SLCM's **region statistics** (its own operations: the argmax, the per-region maxima with
  their ``-inf`` fill, the softmax weights and their sums, the pixel counts): left to its
  defaults NNCF quantises the inputs of these reductions too, with ranges that include
  ``±inf``, and the regions are lost;
- the **classifiers' last convolutions**: the stage-1 logits' argmax decides SLCM's regions
  and the stage-2 logits are the output; 8-bit logits flip near-tied pixels.

Everything else (backbone, bottleneck, attention projections, fusion convolutions: ≈ 95 %
of the FLOPs) computes in INT8.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from torch import Tensor, nn

from isnet.data.image import read_image, to_tensor
from isnet.model.context.slcm import SemanticLevelContext
from isnet.model.layers import Classifier, ConvClassifier

INT8_METADATA_KEY = "isnet_int8"  # a description of the quantisation, in the IR's rt_info


@dataclass(frozen=True)
class FloatScope:
    """Which parts of the model stay in float when the rest is quantised to INT8."""

    attention_products: bool = True  # every MatMul (ILCM, SLCM region statistics and attention)
    region_statistics: bool = True  # SLCM's own operations: argmax, region maxima, softmax weights, counts
    classifiers: bool = True  # the last convolution of every classifier (stage 1 and stage 2)
    modules: tuple[str, ...] = ()  # further module paths kept float, e.g. "backbone.stem"

    def describe(self) -> str:
        parts = [name for name, kept in (("attention products", self.attention_products),
                                         ("region statistics", self.region_statistics),
                                         ("classifiers", self.classifiers)) if kept]
        return ", ".join(parts + list(self.modules)) or "nothing"


NOTHING_FLOAT = FloatScope(attention_products=False, region_statistics=False, classifiers=False)  # NNCF's defaults


def onnx_scope(module_path: str) -> str:
    """The node-name prefix the ONNX exporter gives the nodes of the module at ``module_path``.

    ``head.classifier_stage1.4`` → ``/head/classifier_stage1/classifier_stage1.4/``: each
    module adds its name, and a child of a container is named after the container.
    """
    components: list[str] = []
    for part in module_path.split("."):
        components.append(f"{components[-1]}.{part}" if part.isdigit() and components else part)
    return "/" + "/".join(components) + "/"


def classifier_convolutions(model: nn.Module) -> list[str]:
    """Module paths of the last convolution of every classifier of the decode head (they
    produce the logits; the auxiliary head is not part of the exported graph)."""
    return [f"{name}.{len(module) - 1}" for name, module in model.head.named_modules(prefix="head")
            if isinstance(module, (Classifier, ConvClassifier))]


def ignored_scope(model: nn.Module, scope: FloatScope) -> Any:
    """The ``nncf.IgnoredScope`` that keeps ``scope`` of ``model`` (as exported) in float."""
    import nncf

    paths = (classifier_convolutions(model) if scope.classifiers else []) + list(scope.modules)
    patterns = [re.escape(onnx_scope(path)) + ".*" for path in paths]
    if scope.region_statistics:  # the module's own nodes, not its convolutions' (those are quantised)
        patterns += [re.escape(onnx_scope(name)) + "[^/]+$" for name, module in model.head.named_modules(prefix="head")
                     if isinstance(module, SemanticLevelContext)]
    return nncf.IgnoredScope(types=["MatMul"] if scope.attention_products else [], patterns=patterns, validate=False)


def prepare_image(path: str | Path, *, size: tuple[int, int] | None = None, fit: tuple[int, int] | None = None) -> Tensor:
    """An image as the model sees it (1, 3, H, W): resized as :func:`isnet.data.transforms.evaluation_transforms` decides."""
    from isnet.data.transforms import evaluation_transforms

    image = evaluation_transforms(fit, size)(read_image(path), None)[0]
    return to_tensor(image).unsqueeze(0)


def model_resize(model: Any) -> dict[str, tuple[int, int]]:
    """The test-time resize of the model's dataset record (``fit`` or ``size``), or none."""
    record = getattr(model, "dataset", None)
    if record is None:
        return {}
    resize = {"fit": record.test.fit_size, "size": record.test.resize_to}
    return {key: tuple(value) for key, value in resize.items() if value is not None}


def quantize_onnx(
    onnx_path: str | Path, images: Sequence[Tensor], *, ignored: Any = None, fast_bias_correction: bool = True
) -> Any:
    """``nncf.quantize`` of the OpenVINO model converted from an ONNX graph, calibrated on ``images``."""
    import logging

    import nncf

    from isnet.deploy.runtimes.openvino import core

    nncf.set_log_level(logging.WARNING)  # not a line per node it leaves in float
    model = core().read_model(str(onnx_path))
    dataset = nncf.Dataset(list(images), lambda image: image.numpy())
    return nncf.quantize(
        model,
        dataset,
        subset_size=len(images),
        ignored_scope=ignored,
        fast_bias_correction=fast_bias_correction,
    )


def quantize_model(
    model: nn.Module,
    images: Sequence[Tensor],
    *,
    scope: FloatScope = FloatScope(),
    workdir: str | Path | None = None,
    fast_bias_correction: bool = True,
) -> Any:
    """An INT8 OpenVINO model of ``model`` (a float segmentor), calibrated on ``images``; float parts per ``scope``."""
    from isnet.deploy.export import export_onnx

    if not images:
        raise ValueError("quantisation needs at least one calibration image")
    with tempfile.TemporaryDirectory(prefix="isnet-quantize-", dir=workdir) as tmp:
        # NNCF cannot follow an ONNX Loop: the attention stays whole here, and OpenVINO's own attention
        # fusion bounds its memory (docs/benchmarks.md, "ONNX Runtime and OpenVINO memory").
        onnx_path = export_onnx(model, Path(tmp) / "model.onnx", sample_size=tuple(images[0].shape[2:]), query_block=None)
        return quantize_onnx(onnx_path, images, ignored=ignored_scope(model, scope), fast_bias_correction=fast_bias_correction)


def write_int8(quantized: Any, model: nn.Module, path: str | Path, scope: FloatScope) -> Path:
    """Save an INT8 model as an OpenVINO IR with ``model``'s configuration and dataset record."""
    from isnet.deploy.runtimes.openvino import save_ir
    from isnet.weights.checkpoint import model_metadata

    path = Path(path)
    if path.suffix != ".xml":
        raise ValueError(f"{path}: the INT8 model is an OpenVINO IR; name it MODEL.xml (its weights go to MODEL.bin)")
    metadata = {**model_metadata(model), INT8_METADATA_KEY: f"OpenVINO + NNCF INT8; float: {scope.describe()}"}
    return save_ir(quantized, path, metadata)


def calibration_subset(paths: Iterable[Path], limit: int) -> list[Path]:
    """At most ``limit`` of ``paths``, spread evenly over them (sorted) so a folder's order does not bias it."""
    paths = sorted(paths)
    if len(paths) <= limit:
        return paths
    return [paths[int(i)] for i in np.linspace(0, len(paths) - 1, limit).round()]

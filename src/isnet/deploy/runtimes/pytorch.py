"""Fast inference in PyTorch: the same model, computed with less work and better kernels.

:class:`FastSegmentor` wraps a :class:`~isnet.model.segmentor.Segmentor` for inference and applies,
each optional:

- region attention in SLCM (:func:`use_region_attention`): attention over the K region
  representations weighted by their pixel counts instead of over the HW pixels of the
  region map — the same result, HW×K work instead of HW×HW;
- BatchNorm folded into the preceding convolution (:func:`fold_batchnorm`);
- channels-last memory layout (the layout oneDNN's CPU convolutions and the attention's
  (N, HW, T) views want, so no reorders);
- autocast to bfloat16 (CPU or GPU) or float16 (GPU); the stem (which sees the image), the
  classifiers' last convolutions (which give the logits), the SLCM reductions and the
  region attention stay in float32;
- ``torch.compile`` (inductor, with weight freezing), which pays once a shape repeats.

It is a module like the model (``logits``, ``config``, ``dataset``; called, a dict with ``"out"``);
:func:`isnet.deploy.load_predictor` wraps it in a
:class:`~isnet.inference.predictor.ModulePredictor`, as it does the model itself. In float32 its outputs equal the model's to
round-off (``tests/test_fast_paths.py``).
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from isnet.model.context.attention import full_precision
from isnet.model.context.slcm import SemanticLevelContext
from isnet.model.layers import Classifier, ConvClassifier
from isnet.utils.precision import Precision, autocast


def use_region_attention(model: nn.Module, enabled: bool = True) -> nn.Module:
    """Make every SLCM of ``model`` attend over regions (``True``) or pixels (``False``), in place."""
    for module in model.modules():
        if isinstance(module, SemanticLevelContext):
            module.attend_over = "regions" if enabled else "pixels"
    return model


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every eval-mode BatchNorm into the convolution that feeds it, in place.

    Folded: a ``Conv2d`` directly followed by a ``BatchNorm2d`` in an ``nn.Sequential``
    (every CBR, classifier, stem and shortcut projection) and the pairs of
    ``conv_bn_pairs`` each backbone block declares. The BatchNorm becomes an ``Identity``;
    BatchNorms fed by anything else stay. Only for inference: the folded model has no batch
    statistics to train.
    """
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for index in range(len(module) - 1):
                conv, norm = module[index], module[index + 1]
                if _foldable(conv, norm):
                    module[index] = fuse_conv_bn_eval(conv, norm)
                    module[index + 1] = nn.Identity()
        for conv_name, norm_name in getattr(type(module), "conv_bn_pairs", ()):
            conv, norm = getattr(module, conv_name), getattr(module, norm_name)
            if _foldable(conv, norm):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(module, norm_name, nn.Identity())
    return model


def _foldable(conv: nn.Module | None, norm: nn.Module | None) -> bool:
    return (
        type(conv) is nn.Conv2d
        and type(norm) is nn.BatchNorm2d
        and norm.track_running_stats
        and conv.out_channels == norm.num_features
    )


class Float32(nn.Module):
    """Runs ``module`` in float32 under autocast (the stem and the classifiers' last convolutions)."""

    def __init__(self, module: nn.Module) -> None:
        super().__init__()
        self.module = module

    def forward(self, *inputs: Tensor) -> Tensor:
        with full_precision(inputs[0].device):
            return self.module(*(x.float() for x in inputs))


class FastSegmentor(nn.Module):
    """A segmentor prepared for fast inference (see the module docstring).

    The wrapped copy is folded and converted; the original ``model`` is left as it was.
    ``logits`` returns float32 whatever the compute precision.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        precision: Precision | str = Precision.FP32,
        channels_last: bool = True,
        fold_bn: bool = True,
        region_attention: bool = True,
        compile: bool = False,
    ) -> None:
        super().__init__()
        precision = Precision.of(precision)
        if precision is Precision.AUTO:
            raise ValueError("FastSegmentor computes in fp32, bf16 or fp16; precision auto is resolved by isnet.deploy.fast_paths.fast_model")
        model = copy.deepcopy(model).eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        if region_attention:
            use_region_attention(model)
        if fold_bn:
            fold_batchnorm(model)
        if precision is not Precision.FP32:
            # The normalised image has about 8 significant bits, as many as bfloat16 keeps:
            # the stem (≈1 % of the FLOPs) computes in float32 so it loses none of them.
            model.backbone.stem = Float32(model.backbone.stem)
            # bfloat16 logits would be rounded to 8 significant bits (steps of 1/16 at 10),
            # enough to flip near-tied pixels and, through the stage-1 argmax, SLCM's regions.
            # The 1×1 classifier convolutions are ≈0.3 % of the FLOPs.
            for classifier in [m for m in model.modules() if isinstance(m, (Classifier, ConvClassifier))]:
                classifier[-1] = Float32(classifier[-1])
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(memory_format=self.memory_format)
        self.config = getattr(model, "config", None)
        self.dataset = getattr(model, "dataset", None)  # classes, palette, protocol: as the model's
        self.precision = precision
        self._logits = self.model.logits
        if compile:
            # Freezing turns the weights into constants: inductor folds them into prepacked
            # oneDNN convolutions with fused activations. Each new input shape compiles anew.
            self._logits = torch.compile(self.model.logits, options={"freezing": True})
        self.train(False)  # in eval mode from the start, as it stays (the evaluation loop restores the mode it found)

    def train(self, mode: bool = True) -> FastSegmentor:
        if mode:
            raise RuntimeError("FastSegmentor is for inference only; train the original model")
        return super().train(False)

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        """Stage-2 logits at the head's resolution, float32."""
        images = images.contiguous(memory_format=self.memory_format)
        with autocast(self.precision, images.device):
            logits = self._logits(images)
        return logits.float()

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """As :class:`~isnet.model.segmentor.Segmentor`: ``{"out": stage-2 logits}``."""
        return {"out": self.logits(images)}

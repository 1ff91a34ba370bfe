"""Decode heads of the context modules ISNet is compared with (paper Tables 2 and 3).

Every head has the same contract as the ISNet head, so one segmentor runs them all:
``forward(features) -> {"out": logits}`` on the four backbone stage outputs, with logits at
layer4's resolution (OCR also returns its soft-region logits as ``"stage1"``). Most heads are
their context module (which includes the module's 2048→512 reduction) followed by a
:class:`~isnet.model.layers.Classifier`: a :class:`ContextHead`. Each peer is described by its own
config class (:mod:`isnet.model.config`), whose defaults are the method's standard configuration for
a ResNet-D8 (as in mmsegmentation's configs); :func:`build_peer_head` composes the head from it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from torch import Tensor, nn

from isnet.model.config import (
    ANNHeadConfig,
    APCNetHeadConfig,
    CCNetHeadConfig,
    DANetHeadConfig,
    DeepLabV3HeadConfig,
    DNLHeadConfig,
    NonLocalHeadConfig,
    OCRHeadConfig,
    PSPHeadConfig,
)
from isnet.model.context.ann import AsymmetricNonLocalContext
from isnet.model.context.apcnet import AdaptivePyramidContext
from isnet.model.context.aspp import ASPP
from isnet.model.context.ccnet import CrissCrossContext
from isnet.model.context.danet import DualAttentionContext
from isnet.model.context.dnl import DisentangledNonLocalContext
from isnet.model.context.nonlocal_block import NonLocalContext
from isnet.model.context.ocr import ObjectContextualRepresentations
from isnet.model.context.ppm import PyramidPoolingModule
from isnet.model.layers import Classifier, ConvBNReLU


class ContextHead(nn.Module):
    """A context module on layer4 followed by a classifier: the shape of most peer heads."""

    def __init__(self, context: nn.Module, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.context = context
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {"out": self.classifier(self.context(features[-1]))}


class OCRHead(nn.Module):
    """OCRNet: soft object regions predicted from layer3, object context on layer4.

    Stage 1 (``"stage1"``, supervised like an auxiliary head): 3×3 CBR(layer3→C) →
    Dropout2d → Conv1×1 → K soft-region logits. Stage 2: bottleneck on layer4, object
    context over those regions (256 key channels), classifier.
    """

    def __init__(
        self,
        in_channels: int,
        layer3_channels: int,
        channels: int,
        *,
        num_classes: int,
        dropout: float,
        key_channels: int,
    ) -> None:
        super().__init__()
        self.stage1_features = ConvBNReLU(layer3_channels, channels, 3)
        self.stage1_classifier = Classifier(channels, num_classes, dropout)
        self.context = ObjectContextualRepresentations(in_channels, channels, key_channels)
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        soft_regions = self.stage1_classifier(self.stage1_features(features[2]))  # from layer3
        return {
            "out": self.classifier(self.context(features[-1], soft_regions)),
            "stage1": soft_regions,
        }


class ANNHead(nn.Module):
    """ANN: AFNB fuses layer3 into layer4, then a 3×3 reduction and APNB (project 256)."""

    def __init__(
        self,
        in_channels: int,
        layer3_channels: int,
        channels: int,
        *,
        num_classes: int,
        dropout: float,
        project_channels: int,
        key_pool_scales: tuple[int, ...],
    ) -> None:
        super().__init__()
        self.context = AsymmetricNonLocalContext(
            layer3_channels,
            in_channels,
            channels,
            project_channels,
            key_pool_scales,
            dropout,
        )
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {"out": self.classifier(self.context(features[2], features[-1]))}


# The context module of each peer that is a ContextHead, from its config and layer4's channels.
_CONTEXTS: dict[type, Callable[..., nn.Module]] = {
    PSPHeadConfig: lambda c, channels: PyramidPoolingModule(channels, c.channels, c.bins),
    DeepLabV3HeadConfig: lambda c, channels: ASPP(channels, c.channels, c.dilations),
    CCNetHeadConfig: lambda c, channels: CrissCrossContext(channels, c.channels, c.recurrence),
    DANetHeadConfig: lambda c, channels: DualAttentionContext(channels, c.channels, c.key_channels),
    NonLocalHeadConfig: lambda c, channels: NonLocalContext(channels, c.channels, c.reduction),
    DNLHeadConfig: lambda c, channels: DisentangledNonLocalContext(channels, c.channels, c.reduction, c.temperature),
    APCNetHeadConfig: lambda c, channels: AdaptivePyramidContext(channels, c.channels, c.pool_scales),
}


def build_peer_head(config, stage_channels: Sequence[int], num_classes: int) -> nn.Module:
    """The peer head ``config`` describes, on a backbone with ``stage_channels``.

    Key / projection widths left as None are half the head width: the standard 256 at the
    paper's 512, and a balanced comparison at other widths.
    """
    layer3, layer4 = stage_channels[2], stage_channels[3]
    common = dict(num_classes=num_classes, dropout=config.dropout)
    if isinstance(config, OCRHeadConfig):
        key_channels = config.key_channels or config.channels // 2
        return OCRHead(layer4, layer3, config.channels, key_channels=key_channels, **common)
    if isinstance(config, ANNHeadConfig):
        project_channels = config.project_channels or config.channels // 2
        return ANNHead(layer4, layer3, config.channels, project_channels=project_channels,
                       key_pool_scales=config.key_pool_scales, **common)
    if type(config) not in _CONTEXTS:
        raise TypeError(f"{type(config).__name__} is not a peer head configuration")
    return ContextHead(_CONTEXTS[type(config)](config, layer4), config.channels, **common)

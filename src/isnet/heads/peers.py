"""Decode heads of the context modules ISNet is compared with (paper Tables 2 and 3).

Every head has the same contract as the ISNet head, so one segmentor runs them all:
``Head(in_channels=2048, channels=512, *, num_classes, dropout=0.1)`` and
``forward(features) -> {"out": logits}`` on the four backbone stage outputs, with logits at
layer4's resolution (OCR also returns its soft-region logits as ``"stage1"``). A head is its
context module (which includes the module's 2048→512 reduction) followed by a
:class:`~isnet.layers.Classifier`. Configurations are each method's standard one for a
ResNet-D8 (as in mmsegmentation's configs).
"""

from __future__ import annotations

from torch import Tensor, nn

from ..context.ann import AsymmetricNonLocalContext
from ..context.apcnet import AdaptivePyramidContext
from ..context.aspp import ASPP
from ..context.ccnet import CrissCrossContext
from ..context.danet import DualAttentionContext
from ..context.dnl import DisentangledNonLocalContext
from ..context.nonlocal_block import NonLocalContext
from ..context.ocr import ObjectContextualRepresentations
from ..context.ppm import PyramidPoolingModule
from ..layers import Classifier, ConvBNReLU


class ContextHead(nn.Module):
    """A context module on layer4 followed by a classifier: the shape of most peer heads."""

    def __init__(self, context: nn.Module, channels: int, num_classes: int, dropout: float) -> None:
        super().__init__()
        self.context = context
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {"out": self.classifier(self.context(features[-1]))}


class PSPHead(ContextHead):
    """PSPNet: pyramid pooling over bins (1, 2, 3, 6)."""

    def __init__(
        self,
        in_channels: int = 2048,
        channels: int = 512,
        *,
        num_classes: int,
        dropout: float = 0.1,
        bins: tuple[int, ...] = (1, 2, 3, 6),
    ) -> None:
        context = PyramidPoolingModule(in_channels, channels, bins)
        super().__init__(context, channels, num_classes, dropout)


class DeepLabV3Head(ContextHead):
    """DeepLabV3: ASPP with image pooling and dilations (1, 12, 24, 36) at output stride 8."""

    def __init__(
        self,
        in_channels: int = 2048,
        channels: int = 512,
        *,
        num_classes: int,
        dropout: float = 0.1,
        dilations: tuple[int, ...] = (1, 12, 24, 36),
    ) -> None:
        context = ASPP(in_channels, channels, dilations)
        super().__init__(context, channels, num_classes, dropout)


class CCNetHead(ContextHead):
    """CCNet: recurrent criss-cross attention (R = 2) between 3×3 convs."""

    def __init__(
        self,
        in_channels: int = 2048,
        channels: int = 512,
        *,
        num_classes: int,
        dropout: float = 0.1,
        recurrence: int = 2,
    ) -> None:
        context = CrissCrossContext(in_channels, channels, recurrence)
        super().__init__(context, channels, num_classes, dropout)


class DANetHead(ContextHead):
    """DANet: position + channel attention branches, summed (position key width C/8)."""

    def __init__(
        self,
        in_channels: int = 2048,
        channels: int = 512,
        *,
        num_classes: int,
        dropout: float = 0.1,
        key_channels: int | None = None,
    ) -> None:
        context = DualAttentionContext(in_channels, channels, key_channels)
        super().__init__(context, channels, num_classes, dropout)


class NonLocalHead(ContextHead):
    """Non-local network: an embedded-Gaussian block (reduction 2) between 3×3 convs."""

    def __init__(
        self,
        in_channels: int = 2048,
        channels: int = 512,
        *,
        num_classes: int,
        dropout: float = 0.1,
        reduction: int = 2,
    ) -> None:
        context = NonLocalContext(in_channels, channels, reduction)
        super().__init__(context, channels, num_classes, dropout)


class DNLHead(ContextHead):
    """DNL: a disentangled non-local block (reduction 2, temperature 0.05) between 3×3 convs."""

    def __init__(
        self,
        in_channels: int = 2048,
        channels: int = 512,
        *,
        num_classes: int,
        dropout: float = 0.1,
        reduction: int = 2,
        temperature: float = 0.05,
    ) -> None:
        context = DisentangledNonLocalContext(in_channels, channels, reduction, temperature)
        super().__init__(context, channels, num_classes, dropout)


class APCNetHead(ContextHead):
    """APCNet: adaptive context modules at pool scales (1, 2, 3, 6)."""

    def __init__(
        self,
        in_channels: int = 2048,
        channels: int = 512,
        *,
        num_classes: int,
        dropout: float = 0.1,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
    ) -> None:
        context = AdaptivePyramidContext(in_channels, channels, pool_scales)
        super().__init__(context, channels, num_classes, dropout)


class OCRHead(nn.Module):
    """OCRNet: soft object regions predicted from layer3, object context on layer4.

    Stage 1 (``"stage1"``, supervised like an auxiliary head): 3×3 CBR(layer3→C) →
    Dropout2d → Conv1×1 → K soft-region logits. Stage 2: bottleneck on layer4, object
    context over those regions (256 key channels), classifier.
    """

    def __init__(
        self,
        in_channels: int = 2048,
        channels: int = 512,
        *,
        num_classes: int,
        dropout: float = 0.1,
        key_channels: int = 256,
        layer3_channels: int | None = None,
    ) -> None:
        super().__init__()
        layer3_channels = layer3_channels or in_channels // 2
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
        in_channels: int = 2048,
        channels: int = 512,
        *,
        num_classes: int,
        dropout: float = 0.1,
        project_channels: int = 256,
        key_pool_scales: tuple[int, ...] = (1, 3, 6, 8),
        layer3_channels: int | None = None,
    ) -> None:
        super().__init__()
        self.context = AsymmetricNonLocalContext(
            layer3_channels or in_channels // 2,
            in_channels,
            channels,
            project_channels,
            key_pool_scales,
            dropout,
        )
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        return {"out": self.classifier(self.context(features[2], features[-1]))}


PEER_HEADS: dict[str, type[nn.Module]] = {
    "ppm": PSPHead,
    "aspp": DeepLabV3Head,
    "ocr": OCRHead,
    "ccnet": CCNetHead,
    "danet": DANetHead,
    "ann": ANNHead,
    "nonlocal": NonLocalHead,
    "dnl": DNLHead,
    "apcnet": APCNetHead,
}


def build_peer_head(name: str, stage_channels: list[int], channels: int, num_classes: int, dropout: float) -> nn.Module:
    """A peer head on the given backbone, with its paper's configuration scaled to ``channels``.

    At the paper's 512 head channels the key / projection widths are the standard 256; at
    other widths they stay at half the head width, so a narrow comparison stays balanced.
    """
    if name not in PEER_HEADS:
        raise ValueError(f"unknown head {name!r}: expected isnet or one of {', '.join(PEER_HEADS)}")
    options: dict = {}
    if name == "ocr":
        options = dict(key_channels=channels // 2, layer3_channels=stage_channels[2])
    elif name == "ann":
        options = dict(project_channels=channels // 2, layer3_channels=stage_channels[2])
    return PEER_HEADS[name](stage_channels[-1], channels, num_classes=num_classes, dropout=dropout, **options)

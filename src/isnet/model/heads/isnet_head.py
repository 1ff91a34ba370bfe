"""The ISNet decode head: bottleneck, ILCM, stage-1 classifier, SLCM, stage-2 classifier.

``docs/paper-map.md`` maps the paper's equations (1)–(20) to this code.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isnet.model.layers import Classifier, ConvBNReLU, ConvClassifier


class PlainDecoder(nn.Module):
    """Stage-2 classifier ``H`` of ``O = Upsample8(H(R_aug))`` (eq. 9)."""

    def __init__(self, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__()
        self.classifier = Classifier(channels, num_classes, dropout)

    def forward(self, feats: Tensor, low_level: Tensor) -> Tensor:
        return self.classifier(feats)


class ShortcutDecoder(nn.Module):
    """Stage-2 classifier ``H`` (eq. 9) with the layer1 shortcut (the released LIP models).

    ``S = CBR'(layer1)`` (its 1×1 conv has a bias); ``R_aug`` is upsampled to layer1's size,
    concatenated with ``S`` and classified by CBR(C+48→C, 1) → Dropout2d → Conv1×1.
    """

    def __init__(
        self,
        channels: int,
        num_classes: int,
        *,
        low_level_channels: int,
        shortcut_channels: int = 48,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.shortcut = nn.Sequential(
            nn.Conv2d(low_level_channels, shortcut_channels, 1),
            nn.BatchNorm2d(shortcut_channels),
            nn.ReLU(inplace=True),
        )
        self.classifier = ConvClassifier(
            channels + shortcut_channels, channels, num_classes, kernel_size=1, dropout=dropout
        )

    def forward(self, feats: Tensor, low_level: Tensor) -> Tensor:
        shortcut = self.shortcut(low_level)
        feats = F.interpolate(feats, size=shortcut.shape[2:], mode="bilinear", align_corners=False)
        return self.classifier(torch.cat([feats, shortcut], dim=1))


class ISNetHead(nn.Module):
    """Computes ``R``, ILCM's output, ``D``, ``R_aug`` and ``O`` from the backbone's stage outputs.

    The context modules are passed in, so the same head expresses ISNet (ILCM + SLCM),
    ISNet‡ (ASPP + SLCM) and the Table 1 ablations: ``image_context`` may be ``nn.Identity``
    (``R`` passes through) and ``semantic_context`` may be ``None`` (no stage-1 prediction:
    ``R_aug`` is the image-level module's output). With a semantic context, ``R_aug`` is its output
    (:func:`isnet.model.context.slcm.augmented_representation`, eq. 6).

    Returns ``{"out": O}`` and, with a semantic context, ``{"stage1": D}``; logits at the
    resolution of layer4 (or layer1 with the shortcut decoder).
    """

    def __init__(
        self,
        in_channels: int,
        channels: int,
        num_classes: int,
        *,
        image_context: nn.Module,
        semantic_context: nn.Module | None,
        decoder: nn.Module,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.bottleneck = ConvBNReLU(in_channels, channels, 3)
        self.image_context = image_context
        self.semantic_context = semantic_context
        self.classifier_stage1 = (
            ConvClassifier(channels, channels, num_classes, kernel_size=1, dropout=dropout)
            if semantic_context is not None
            else None
        )
        self.decoder = decoder

    def forward(self, features: list[Tensor]) -> dict[str, Tensor]:
        feats = self.bottleneck(features[-1])  # eq. (1): R
        image_context = self.image_context(feats)  # eqs. (10)–(11), (4), (7): A(R ⊕ R'_il)
        outputs = {}
        if self.semantic_context is None:
            context = image_context  # R_aug without SLCM
        else:
            stage1 = self.classifier_stage1(feats)  # eq. (12): D = H'(R)
            outputs["stage1"] = stage1
            context = self.semantic_context(feats, stage1, image_context)  # eqs. (13)–(16), (5), (8), (6): R_aug
        outputs["out"] = self.decoder(context, features[0])  # eq. (9): H(R_aug), before the upsampling
        return outputs

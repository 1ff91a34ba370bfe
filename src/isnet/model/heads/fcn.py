"""The FCN auxiliary head on layer3 (deep supervision during training).

Not in the paper's objective (eq. 20): the released models add its loss with weight 0.4.
"""

from __future__ import annotations

from torch import Tensor

from isnet.model.layers import ConvClassifier


class FCNAuxHead(ConvClassifier):
    """CBR(in→C, 3) → Dropout2d → Conv1×1(C→K) on the third stage's output."""

    def __init__(self, in_channels: int, channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__(in_channels, channels, num_classes, kernel_size=3, dropout=dropout)

    def forward(self, features: list[Tensor]) -> Tensor:  # type: ignore[override]
        return super().forward(features[2])

"""Small building blocks shared by the backbones, context modules and heads."""

from __future__ import annotations

from torch import nn


class ConvBNReLU(nn.Sequential):
    """Conv2d (no bias) → BatchNorm2d → ReLU: the paper's CBR(a→b, k).

    The children are named ``0``, ``1``, ``2`` so that the released checkpoints'
    ``{0 conv, 1 bn}`` keys load unchanged.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        *,
        stride: int = 1,
        dilation: int = 1,
        groups: int = 1,
    ) -> None:
        padding = dilation * (kernel_size // 2)
        super().__init__(
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=padding,
                dilation=dilation,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )


class Classifier(nn.Sequential):
    """Dropout2d → Conv1×1 with bias: the last layer of every prediction branch."""

    def __init__(self, in_channels: int, num_classes: int, dropout: float = 0.1) -> None:
        super().__init__(nn.Dropout2d(dropout), nn.Conv2d(in_channels, num_classes, 1))


class ConvClassifier(nn.Sequential):
    """CBR(in→mid, k) → Dropout2d → Conv1×1(mid→K): the stage-1, auxiliary and shortcut classifiers.

    As the stage-1 classifier it is the paper's ``H′`` (eq. 12).

    Children ``0`` conv, ``1`` bn, ``2`` relu, ``3`` dropout, ``4`` classifier conv, as in
    the released checkpoints (``decoder_stage1.{0,1,4}``, ``auxiliary_decoder.{0,1,4}``).
    """

    def __init__(
        self,
        in_channels: int,
        mid_channels: int,
        num_classes: int,
        *,
        kernel_size: int = 1,
        dropout: float = 0.1,
    ) -> None:
        cbr = ConvBNReLU(in_channels, mid_channels, kernel_size)
        super().__init__(*cbr, *Classifier(mid_channels, num_classes, dropout))

"""The convolutions that CCNet, Non-local and DNL put around their attention block."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from isnet.model.layers import ConvBNReLU


class ConvWrappedContext(nn.Module):
    """``fuse(concat[x, refine(attention(bottleneck(x)))])``: the FCN-style head of CCNet/NL/DNL.

    ``bottleneck`` is a 3×3 CBR(in→C), the attention block maps C→C, ``refine`` is a 3×3
    CBR(C→C) and ``fuse`` a 3×3 CBR(in+C→C) over the input concatenated with the result
    (mmsegmentation's ``FCNHead(num_convs=2, concat_input=True)`` with the block between the
    two convolutions). All of it counts in the paper's Table 2.
    """

    def __init__(self, in_channels: int, channels: int, attention: nn.Module) -> None:
        super().__init__()
        self.bottleneck = ConvBNReLU(in_channels, channels, 3)
        self.attention = attention
        self.refine = ConvBNReLU(channels, channels, 3)
        self.fuse = ConvBNReLU(in_channels + channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        context = self.refine(self.attention(self.bottleneck(x)))
        return self.fuse(torch.cat([x, context], dim=1))

"""Atrous spatial pyramid pooling (DeepLabV3), also ISNet‡'s image-level module."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isnet.model.layers import ConvBNReLU


class ImagePooling(nn.Module):
    """Global average pool → 1×1 CBR, broadcast back to the input size."""

    def __init__(self, in_channels: int, channels: int) -> None:
        super().__init__()
        self.project = ConvBNReLU(in_channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        pooled = self.project(x.mean(dim=(2, 3), keepdim=True))
        return F.interpolate(pooled, size=x.shape[2:], mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    """Image pooling plus one branch per dilation (1 → a 1×1 conv, others 3×3 atrous), fused by a 3×3 CBR."""

    def __init__(
        self, in_channels: int, channels: int, dilations: tuple[int, ...] = (1, 12, 24, 36)
    ) -> None:
        super().__init__()
        self.image_pool = ImagePooling(in_channels, channels)
        self.branches = nn.ModuleList(
            ConvBNReLU(in_channels, channels, 1 if d == 1 else 3, dilation=d) for d in dilations
        )
        self.fuse = ConvBNReLU((len(dilations) + 1) * channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        outputs = [self.image_pool(x)] + [branch(x) for branch in self.branches]
        return self.fuse(torch.cat(outputs, dim=1))

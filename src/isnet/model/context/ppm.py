"""Pyramid pooling module (PSPNet, Zhao et al., CVPR 2017)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isnet.model.layers import ConvBNReLU


class PoolingBranch(nn.Sequential):
    """One pyramid level: average-pool to a ``bins × bins`` grid, then a 1×1 CBR."""

    def __init__(self, in_channels: int, channels: int, bins: int) -> None:
        super().__init__(nn.AdaptiveAvgPool2d(bins), ConvBNReLU(in_channels, channels))


class PyramidPoolingModule(nn.Module):
    """PSPNet's context: the input beside its summaries over 1×1, 2×2, 3×3 and 6×6 grids.

    Each summary is upsampled (bilinear) back to the input size; ``concat[x, summaries]``
    (2048 + 4·512 channels in the standard configuration) is fused by a 3×3 CBR to
    ``channels``. That 3×3 CBR is the module's 2048→512 reduction, so it belongs here.
    """

    def __init__(
        self, in_channels: int = 2048, channels: int = 512, bins: tuple[int, ...] = (1, 2, 3, 6)
    ) -> None:
        super().__init__()
        self.branches = nn.ModuleList(PoolingBranch(in_channels, channels, b) for b in bins)
        self.bottleneck = ConvBNReLU(in_channels + len(bins) * channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        size = x.shape[2:]
        summaries = [
            F.interpolate(branch(x), size=size, mode="bilinear", align_corners=False)
            for branch in self.branches
        ]
        return self.bottleneck(torch.cat([x, *summaries], dim=1))

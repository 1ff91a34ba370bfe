"""Adaptive context modules (APCNet, He et al., CVPR 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isnet.model.layers import ConvBNReLU


class AdaptiveContextModule(nn.Module):
    """ACM at one scale s: each pixel mixes the s×s pooled region features with its own weights.

    The weights (one sigmoid per region, not a softmax) come from a 1×1 conv on the pixel's
    reduced feature plus the image's global feature; the mixed context passes a 1×1 CBR, is
    added to the reduced input, ReLU, then a 1×1 CBR fusion.
    """

    def __init__(self, in_channels: int, channels: int, pool_scale: int) -> None:
        super().__init__()
        self.pool_scale = pool_scale
        self.reduce_regions = ConvBNReLU(in_channels, channels)
        self.reduce_input = ConvBNReLU(in_channels, channels)
        self.global_project = ConvBNReLU(channels, channels)
        self.affinity = nn.Conv2d(channels, pool_scale**2, 1)
        self.residual_project = ConvBNReLU(channels, channels)
        self.fuse = ConvBNReLU(channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        pooled = F.adaptive_avg_pool2d(x, self.pool_scale)
        regions = self.reduce_regions(pooled).flatten(2)  # (N, C, s²)
        feats = self.reduce_input(x)  # (N, C, h, w)
        global_feature = self.global_project(F.adaptive_avg_pool2d(feats, 1))  # (N, C, 1, 1)
        weights = torch.sigmoid(self.affinity(feats + global_feature))  # (N, s², h, w)
        context = torch.einsum("bkhw,bck->bchw", weights, regions)
        return self.fuse(F.relu(self.residual_project(context) + feats))


class AdaptivePyramidContext(nn.Module):
    """APCNet's context: ACMs at scales (1, 2, 3, 6) beside the input, fused by a 3×3 CBR.

    ``concat[x, ACM_1(x), …]`` has 2048 + 4·512 channels in the standard configuration; the
    3×3 CBR to ``channels`` is the module's 2048→512 reduction.
    """

    def __init__(
        self,
        in_channels: int = 2048,
        channels: int = 512,
        pool_scales: tuple[int, ...] = (1, 2, 3, 6),
    ) -> None:
        super().__init__()
        self.scales = nn.ModuleList(
            AdaptiveContextModule(in_channels, channels, s) for s in pool_scales
        )
        self.bottleneck = ConvBNReLU(in_channels + len(pool_scales) * channels, channels, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.bottleneck(torch.cat([x, *(acm(x) for acm in self.scales)], dim=1))

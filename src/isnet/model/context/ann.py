"""Asymmetric non-local blocks: AFNB and APNB (ANN, Zhu et al., ICCV 2019)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isnet.model.layers import ConvBNReLU


def pyramid_sample(x: Tensor, pool_scales: tuple[int, ...]) -> Tensor:
    """Average-pool ``x`` to each ``s × s`` grid and concatenate the cells: (N, C, Σ s²).

    ANN's "asymmetric" sampling: with scales (1, 3, 6, 8) every pixel attends over 110
    representative keys instead of all h·w pixels.
    """
    return torch.cat([F.adaptive_avg_pool2d(x, s).flatten(2) for s in pool_scales], dim=2)


class AsymmetricNonLocal(nn.Module):
    """Non-local attention whose keys and values are pyramid-pooled.

    Query and key projections are 1×1 CBRs (shared when ``share_key_query``, as in APNB),
    value and output projections plain 1×1 convs without bias; similarities scaled by
    ``channels**-0.5``. Keys and values are projected at full resolution, then pooled.
    """

    def __init__(
        self,
        query_in_channels: int,
        key_in_channels: int,
        channels: int,
        out_channels: int,
        key_pool_scales: tuple[int, ...] = (1, 3, 6, 8),
        *,
        share_key_query: bool = False,
    ) -> None:
        super().__init__()
        self.key_project = ConvBNReLU(key_in_channels, channels)
        self.query_project = (
            self.key_project if share_key_query else ConvBNReLU(query_in_channels, channels)
        )
        self.value_project = nn.Conv2d(key_in_channels, channels, 1, bias=False)
        self.out_project = nn.Conv2d(channels, out_channels, 1, bias=False)
        self.key_pool_scales = key_pool_scales
        self.scale = channels**-0.5

    def forward(self, query_feats: Tensor, key_feats: Tensor) -> Tensor:
        batch, _, height, width = query_feats.shape
        query = self.query_project(query_feats).flatten(2)  # (N, T, hw)
        key = pyramid_sample(self.key_project(key_feats), self.key_pool_scales)  # (N, T, S)
        value = pyramid_sample(self.value_project(key_feats), self.key_pool_scales)
        affinity = torch.softmax(query.transpose(1, 2) @ key * self.scale, dim=-1)  # (N, hw, S)
        context = value @ affinity.transpose(1, 2)  # (N, T, hw)
        return self.out_project(context.view(batch, -1, height, width))


class AsymmetricFusionNonLocal(nn.Module):
    """AFNB: layer4 pixels attend over pyramid-pooled layer3 features; fused with layer4.

    The fusion is a 1×1 conv + BN (no ReLU) over ``concat[context, high]`` back to the
    high-level width (4096 → 2048 in the standard configuration).
    """

    def __init__(
        self,
        low_in_channels: int = 1024,
        high_in_channels: int = 2048,
        channels: int = 256,
        key_pool_scales: tuple[int, ...] = (1, 3, 6, 8),
    ) -> None:
        super().__init__()
        self.attention = AsymmetricNonLocal(
            high_in_channels, low_in_channels, channels, high_in_channels, key_pool_scales
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(2 * high_in_channels, high_in_channels, 1, bias=False),
            nn.BatchNorm2d(high_in_channels),
        )

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        context = self.attention(high, low)
        return self.fuse(torch.cat([context, high], dim=1))


class AsymmetricPyramidNonLocal(nn.Module):
    """APNB: self-attention over pyramid-pooled keys, fused with the input by a 1×1 CBR(2C→C)."""

    def __init__(
        self,
        channels: int = 512,
        key_channels: int = 256,
        key_pool_scales: tuple[int, ...] = (1, 3, 6, 8),
    ) -> None:
        super().__init__()
        self.attention = AsymmetricNonLocal(
            channels, channels, key_channels, channels, key_pool_scales, share_key_query=True
        )
        self.fuse = ConvBNReLU(2 * channels, channels)

    def forward(self, x: Tensor) -> Tensor:
        return self.fuse(torch.cat([self.attention(x, x), x], dim=1))


class AsymmetricNonLocalContext(nn.Module):
    """ANN's context: AFNB(layer3, layer4) → Dropout2d → 3×3 CBR(in→C) → APNB.

    Standard configuration: layer3 1024 and layer4 2048 channels, C = 512, 256 projection
    channels, full-resolution queries (query scale 1), key pool scales (1, 3, 6, 8).
    """

    def __init__(
        self,
        low_in_channels: int = 1024,
        in_channels: int = 2048,
        channels: int = 512,
        project_channels: int = 256,
        key_pool_scales: tuple[int, ...] = (1, 3, 6, 8),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.fusion = AsymmetricFusionNonLocal(
            low_in_channels, in_channels, project_channels, key_pool_scales
        )
        self.dropout = nn.Dropout2d(dropout)
        self.bottleneck = ConvBNReLU(in_channels, channels, 3)
        self.context = AsymmetricPyramidNonLocal(channels, project_channels, key_pool_scales)

    def forward(self, low: Tensor, high: Tensor) -> Tensor:
        return self.context(self.bottleneck(self.dropout(self.fusion(low, high))))

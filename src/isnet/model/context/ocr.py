"""Object-contextual representations (OCRNet, Yuan et al., ECCV 2020)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isnet.model.layers import ConvBNReLU


def soft_object_regions(feats: Tensor, logits: Tensor) -> Tensor:
    """The representation of every class's soft object region.

    Region k is the sum of the pixel features weighted by the spatial softmax of the class-k
    logit: ``f_k = Σ_i softmax_i(D_ki) · x_i``. Every class gets a region, so the result has a
    fixed size and needs no argmax.

    Args:
        feats: (N, C, h, w) pixel features.
        logits: (N, K, h, w) soft-region logits at the same size.

    Returns:
        (N, C, K, 1): one "pixel" per region, so 1×1 convolutions can project it.
    """
    weights = logits.flatten(2).softmax(dim=-1)  # (N, K, hw)
    regions = torch.bmm(weights, feats.flatten(2).transpose(1, 2))  # (N, K, C)
    return regions.transpose(1, 2).unsqueeze(-1)


class ObjectAttention(nn.Module):
    """Pixel–region attention: each pixel (query) attends over the K object regions (keys/values).

    Projections as in OCRNet: query and key two 1×1 CBRs, value one, output one 1×1 CBR back
    to ``channels``; similarities scaled by ``key_channels**-0.5``.
    """

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        t = key_channels
        self.query_project = nn.Sequential(ConvBNReLU(channels, t), ConvBNReLU(t, t))
        self.key_project = nn.Sequential(ConvBNReLU(channels, t), ConvBNReLU(t, t))
        self.value_project = ConvBNReLU(channels, t)
        self.out_project = ConvBNReLU(t, channels)
        self.scale = t**-0.5

    def forward(self, pixels: Tensor, regions: Tensor) -> Tensor:
        batch, _, height, width = pixels.shape
        query = self.query_project(pixels).flatten(2)  # (N, T, hw)
        key = self.key_project(regions).flatten(2)  # (N, T, K)
        value = self.value_project(regions).flatten(2)  # (N, T, K)
        affinity = torch.softmax(query.transpose(1, 2) @ key * self.scale, dim=-1)  # (N, hw, K)
        context = value @ affinity.transpose(1, 2)  # (N, T, hw)
        return self.out_project(context.view(batch, -1, height, width))


class ObjectContext(nn.Module):
    """Augments each pixel with the regions it resembles, fused by a 1×1 CBR(2C→C)."""

    def __init__(self, channels: int, key_channels: int) -> None:
        super().__init__()
        self.attention = ObjectAttention(channels, key_channels)
        self.fuse = ConvBNReLU(2 * channels, channels)

    def forward(self, pixels: Tensor, logits: Tensor) -> Tensor:
        regions = soft_object_regions(pixels, logits)
        context = self.attention(pixels, regions)
        return self.fuse(torch.cat([context, pixels], dim=1))


class ObjectContextualRepresentations(nn.Module):
    """OCR's context on layer4: a 3×3 CBR(in→C) bottleneck, then the object context.

    The soft-region logits come from outside (the head's stage-1 classifier on layer3) and
    are resized to the bottleneck's size if needed. Standard configuration: 2048 → 512,
    256 key channels.
    """

    def __init__(
        self, in_channels: int = 2048, channels: int = 512, key_channels: int = 256
    ) -> None:
        super().__init__()
        self.bottleneck = ConvBNReLU(in_channels, channels, 3)
        self.object_context = ObjectContext(channels, key_channels)

    def forward(self, x: Tensor, soft_region_logits: Tensor) -> Tensor:
        feats = self.bottleneck(x)
        if soft_region_logits.shape[2:] != feats.shape[2:]:
            soft_region_logits = F.interpolate(
                soft_region_logits, size=feats.shape[2:], mode="bilinear", align_corners=False
            )
        return self.object_context(feats, soft_region_logits)

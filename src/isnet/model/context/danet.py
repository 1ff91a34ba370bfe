"""Dual attention: position and channel attention (DANet, Fu et al., CVPR 2019)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from isnet.model.context.attention import bounded_attention, pixels_as_tokens, tokens_as_map
from isnet.model.layers import ConvBNReLU


class PositionAttention(nn.Module):
    """PAM: every pixel attends over all pixels; ``gamma · context + x``.

    Query/key 1×1 convs to ``key_channels`` (C/8 in DANet), value a 1×1 conv C→C; unscaled
    dot products. The projections carry no bias (the published ISNet comparison counts
    them without one). ``gamma`` starts at 0.
    """

    def __init__(self, channels: int, key_channels: int | None = None) -> None:
        super().__init__()
        key_channels = key_channels or channels // 8
        self.query = nn.Conv2d(channels, key_channels, 1, bias=False)
        self.key = nn.Conv2d(channels, key_channels, 1, bias=False)
        self.value = nn.Conv2d(channels, channels, 1, bias=False)
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        query, key, value = (pixels_as_tokens(project(x)) for project in (self.query, self.key, self.value))
        context = bounded_attention(query, key, value, scale=1.0)  # softmax over the hw pixels
        return self.gamma * tokens_as_map(context, *x.shape[2:]) + x


class ChannelAttention(nn.Module):
    """CAM: every channel attends over all channels by their Gram matrix; no projections.

    DANet weighs channel j for channel i by ``softmax_j(max_k E_ik − E_ij)`` with
    ``E = X Xᵀ``; softmax ignores the per-row shift, so that is ``softmax_j(−E_ij)``:
    dissimilar channels get the larger weights. ``gamma`` starts at 0.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1))

    def forward(self, x: Tensor) -> Tensor:
        feats = x.flatten(2)  # (N, C, hw)
        energy = feats @ feats.transpose(1, 2)  # (N, C, C)
        attention = torch.softmax(-energy, dim=-1)
        context = attention @ feats
        return self.gamma * context.view_as(x) + x


class DualAttentionContext(nn.Module):
    """DANet's context: a position branch and a channel branch on layer4, summed.

    Each branch is 3×3 CBR(in→C) → attention → 3×3 CBR(C→C). Standard configuration:
    2048 → 512, position-attention key width 64.
    """

    def __init__(
        self, in_channels: int = 2048, channels: int = 512, key_channels: int | None = None
    ) -> None:
        super().__init__()
        self.position_branch = nn.Sequential(
            ConvBNReLU(in_channels, channels, 3),
            PositionAttention(channels, key_channels),
            ConvBNReLU(channels, channels, 3),
        )
        self.channel_branch = nn.Sequential(
            ConvBNReLU(in_channels, channels, 3),
            ChannelAttention(),
            ConvBNReLU(channels, channels, 3),
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.position_branch(x) + self.channel_branch(x)

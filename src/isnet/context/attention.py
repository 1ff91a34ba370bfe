"""The self-attention block shared by the image-level and semantic-level context modules."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import ConvBNReLU


class SelfAttention(nn.Module):
    """Attention of every query pixel over the key/value pixels, with CBR projections.

    Query: two 1×1 CBRs on ``query_feats``; key: two 1×1 CBRs and value: one 1×1 CBR on
    ``key_feats``; ``softmax(QᵀK / √T) V`` followed by a 1×1 CBR back to ``out_channels``.
    The product runs through the fused scaled-dot-product kernel, so the HW×HW matrix is
    never materialised.
    """

    def __init__(
        self,
        query_channels: int,
        key_channels: int,
        transform_channels: int,
        out_channels: int,
    ) -> None:
        super().__init__()
        t = transform_channels
        self.query_project = nn.Sequential(ConvBNReLU(query_channels, t), ConvBNReLU(t, t))
        self.key_project = nn.Sequential(ConvBNReLU(key_channels, t), ConvBNReLU(t, t))
        self.value_project = ConvBNReLU(key_channels, t)
        self.out_project = ConvBNReLU(t, out_channels)

    def forward(self, query_feats: Tensor, key_feats: Tensor) -> Tensor:
        batch, _, height, width = query_feats.shape
        # (N, T, h, w) → (N, 1, hw, T): one head. The 4-D layout selects the fused kernel
        # on CPU too (3-D inputs fall back to the unfused path, which builds the HW×HW matrix).
        query = self.query_project(query_feats).flatten(2).transpose(1, 2).unsqueeze(1)
        key = self.key_project(key_feats).flatten(2).transpose(1, 2).unsqueeze(1)
        value = self.value_project(key_feats).flatten(2).transpose(1, 2).unsqueeze(1)
        context = F.scaled_dot_product_attention(query, key, value)
        context = context.squeeze(1).transpose(1, 2).reshape(batch, -1, height, width)
        return self.out_project(context)

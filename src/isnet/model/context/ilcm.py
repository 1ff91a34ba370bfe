"""Image-level context module (ILCM, paper §3.2, eqs. 7–11)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from isnet.model.context.attention import SelfAttention
from isnet.model.layers import ConvBNReLU


class ImageLevelContext(nn.Module):
    """Augments each pixel with the context of the whole image.

    ``g`` is the global average of ``R`` broadcast to every pixel; each pixel attends over
    ``concat[g, R]`` and the result is fused with ``R``:
    ``R_il = CBR(2C→C, 3)(concat[R, SelfAttention(R, concat[g, R])])``.
    """

    def __init__(self, channels: int, transform_channels: int) -> None:
        super().__init__()
        self.attention = SelfAttention(
            query_channels=channels,
            key_channels=2 * channels,
            transform_channels=transform_channels,
            out_channels=channels,
        )
        self.fuse = ConvBNReLU(2 * channels, channels, 3)

    def forward(self, feats: Tensor) -> Tensor:
        global_context = feats.mean(dim=(2, 3), keepdim=True).expand_as(feats)  # eq. (7): g
        # Eqs. (8)–(10): A_il, with concat[g, R] as keys and values (the released models).
        context = self.attention(feats, torch.cat([global_context, feats], dim=1))
        return self.fuse(torch.cat([feats, context], dim=1))  # eq. (11): R_il

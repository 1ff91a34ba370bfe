"""Image-level context module (ILCM, paper §3.2: eqs. 10–11, with eqs. 4 and 7 and the first step of eq. 6)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from isnet.model.context.attention import SelfAttention
from isnet.model.layers import ConvBNReLU


class ImageLevelContext(nn.Module):
    """Augments each pixel with the context of the whole image.

    ``G`` is the mean of ``R`` (eq. 10), repeated at every pixel; the image-level context is
    ``R_il = repeat(G) ⊕ R`` (eq. 11, whose ``F`` the released models leave to the attention's
    key and value projections); every pixel gathers ``R'_il`` from it by attention (eqs. 4, 7),
    and the module returns ``CBR(2C→C, 3)(R ⊕ R'_il)``, the first of the two fusions the
    released models make of eq. 6's ``A`` (the checkpoints' ``ilc_net.bottleneck``).
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
        global_context = feats.mean(dim=(2, 3), keepdim=True).expand_as(feats)  # eq. (10): repeat(G)
        # Eqs. (4), (7): R'_il, gathered from R_il = repeat(G) ⊕ R (eq. 11) as keys and values.
        context = self.attention(feats, torch.cat([global_context, feats], dim=1))
        return self.fuse(torch.cat([feats, context], dim=1))  # eq. (6), first step: A over R ⊕ R'_il

"""Semantic-level context module (SLCM, paper §3.3, eqs. 13–16)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..layers import ConvBNReLU
from .attention import SelfAttention


def region_representations(feats: Tensor, logits: Tensor) -> Tensor:
    """Replace every pixel's feature by the representation of its predicted class region.

    For each image and class k, region k is the set of pixels whose argmax over ``logits``
    is k. Its representation is the sum of the region's ``feats`` weighted by the softmax,
    over the region, of their class-k logit (eqs. 13–15); every pixel of the region receives
    it (eq. 16). Classes without pixels contribute nothing.

    Vectorised over images and classes with scatter reductions: no loop, no host sync.
    Gradients flow into ``feats`` and, through the softmax weights, into ``logits``.

    Args:
        feats: (N, C, h, w) pixel features ``R``.
        logits: (N, K, h, w) stage-1 class logits ``D`` at the same size.

    Returns:
        (N, C, h, w) region map, in the dtype of ``feats``.
    """
    batch, channels, height, width = feats.shape
    num_classes = logits.shape[1]
    if logits.shape[2:] != feats.shape[2:]:
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    # Aggregate in at least float32: the softmax and region sums reduce over many pixels.
    dtype = torch.promote_types(feats.dtype, torch.float32)
    feats32 = feats.to(dtype).flatten(2).transpose(1, 2).reshape(batch * height * width, channels)
    logits32 = logits.to(dtype).flatten(2)  # (N, K, hw)

    labels = logits32.argmax(dim=1, keepdim=True)  # (N, 1, hw)
    own_logit = logits32.gather(1, labels).flatten()  # class-k logit of each pixel, (N·hw,)
    # One slot per (image, class): pixels of region k in image n share slot n·K + k.
    image_index = torch.arange(batch, device=feats.device).repeat_interleave(height * width)
    region = image_index * num_classes + labels.flatten()

    # Softmax over the pixels of each region (shifted by the region's maximum for stability).
    num_regions = batch * num_classes
    region_max = own_logit.new_full((num_regions,), float("-inf"))
    region_max = region_max.scatter_reduce(0, region, own_logit.detach(), "amax")
    exp = (own_logit - region_max[region]).exp()
    denominator = exp.new_zeros(num_regions).index_add(0, region, exp)
    weights = exp / denominator[region]

    representations = feats32.new_zeros(num_regions, channels)
    representations = representations.index_add(0, region, feats32 * weights.unsqueeze(1))
    region_map = representations[region].view(batch, height * width, channels)
    return region_map.transpose(1, 2).reshape(batch, channels, height, width).to(feats.dtype)


class SemanticLevelContext(nn.Module):
    """Augments each pixel with the context of the pixels predicted to be of its class.

    ``A_sl = SelfAttention(R, region_representations(R, D))`` and
    ``R_sl = CBR(2C→C, 3)(concat[R_il, A_sl])``.
    """

    def __init__(self, channels: int, transform_channels: int) -> None:
        super().__init__()
        self.attention = SelfAttention(
            query_channels=channels,
            key_channels=channels,
            transform_channels=transform_channels,
            out_channels=channels,
        )
        self.fuse = ConvBNReLU(2 * channels, channels, 3)

    def forward(self, feats: Tensor, logits: Tensor, image_context: Tensor) -> Tensor:
        regions = region_representations(feats, logits)
        context = self.attention(feats, regions)  # A_sl
        return self.fuse(torch.cat([image_context, context], dim=1))  # R_sl

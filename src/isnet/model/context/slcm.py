"""Semantic-level context module (SLCM, paper §3.3: eqs. 13–16, with eqs. 5 and 8) and ``R_aug`` (eq. 6)."""

from __future__ import annotations

from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from isnet.model.context.attention import SelfAttention, full_precision
from isnet.model.layers import ConvBNReLU


class Regions(NamedTuple):
    """The class regions of a stage-1 prediction and their representations (eqs. 13–15)."""

    representations: Tensor  # (N, K, C): softmax-weighted sum of each region's features; 0 if empty
    counts: Tensor  # (N, K): pixels in each region
    labels: Tensor  # (N, h·w): each pixel's region (the argmax class)

    def to_map(self, height: int, width: int, dtype: torch.dtype) -> Tensor:
        """Eq. (16): every pixel receives its region's representation, (N, C, h, w)."""
        batch, _, channels = self.representations.shape
        index = self.labels.unsqueeze(-1).expand(-1, -1, channels)
        region_map = self.representations.gather(1, index)  # (N, hw, C)
        return region_map.transpose(1, 2).reshape(batch, channels, height, width).to(dtype)


def find_regions(feats: Tensor, logits: Tensor) -> Regions:
    """The regions of ``logits``' argmax and their softmax-weighted representations.

    For each image and class k, region k is the set of pixels whose argmax over ``logits``
    is k. Its representation is the sum of the region's ``feats`` weighted by the softmax,
    over the region, of their class-k logit (eqs. 13–15). Classes without pixels get a zero
    representation and a count of 0.

    Vectorised over images and classes with one-hot matrix products: no loop, no host sync,
    no data-dependent control flow (so it exports to ONNX). Runs in at least float32, also
    under autocast: the softmax and the sums reduce over many pixels. Gradients flow into
    ``feats`` and, through the softmax weights, into ``logits``.

    Args:
        feats: (N, C, h, w) pixel features ``R``.
        logits: (N, K, h, w) stage-1 class logits ``D``, resized to ``feats`` if they differ.
    """
    batch, channels, height, width = feats.shape
    num_classes = logits.shape[1]
    if logits.shape[2:] != feats.shape[2:]:
        logits = F.interpolate(logits, size=(height, width), mode="bilinear", align_corners=False)
    dtype = torch.promote_types(feats.dtype, torch.float32)
    with full_precision(feats.device):
        pixel_feats = feats.to(dtype).flatten(2).transpose(1, 2)  # (N, hw, C)
        pixel_logits = logits.to(dtype).flatten(2)  # (N, K, hw)
        labels = pixel_logits.argmax(dim=1)  # eq. (13): each pixel's region, (N, hw)
        own_logit = pixel_logits.gather(1, labels.unsqueeze(1))  # eq. (14): D_ck, each pixel's own-class logit, (N, 1, hw)
        classes = torch.arange(num_classes, device=feats.device).view(1, -1, 1)
        members = labels.unsqueeze(1) == classes  # (N, K, hw): one-hot region membership
        # Eq. (15): the softmax of D_ck over the pixels of each region (shifted by its maximum, for stability).
        region_max = torch.where(members, own_logit.detach(), float("-inf")).amax(dim=2)  # (N, K)
        exp = (own_logit.squeeze(1) - region_max.gather(1, labels)).exp()  # (N, hw)
        weights = members.to(dtype) * exp.unsqueeze(1)  # (N, K, hw)
        weights = weights / weights.sum(dim=2, keepdim=True).clamp_min(torch.finfo(dtype).tiny)
        representations = torch.bmm(weights, pixel_feats)  # eq. (15): (N, K, C)
        counts = members.sum(dim=2).to(dtype)
    return Regions(representations, counts, labels)


def region_representations(feats: Tensor, logits: Tensor) -> Tensor:
    """Replace every pixel's feature by the representation of its predicted class region.

    Eqs. 13–16: see :func:`find_regions`; every pixel of region k receives region k's
    representation. Returns (N, C, h, w) in the dtype of ``feats``.
    """
    return find_regions(feats, logits).to_map(*feats.shape[2:], feats.dtype)


def augmented_representation(fuse: nn.Module, image_context: Tensor, semantic_context: Tensor) -> Tensor:
    """Eq. (6): ``R_aug = A(R'_il ⊕ R'_sl ⊕ R)``, every pixel augmented by both kinds of context.

    The paper's ``A`` is one transform of the three; the released models make it two 3×3
    CBR(2C→C) in sequence: ILCM's over ``R ⊕ R'_il`` (its output, ``image_context`` here),
    then this ``fuse`` over that result ``⊕ R'_sl``. ``R_aug`` is what the stage-2 head ``H``
    classifies (eq. 9).

    Args:
        fuse: the second fusion (the checkpoints' ``slc_net.bottleneck``).
        image_context: (N, C, h, w), ILCM's output (``R`` itself when the head has no ILCM).
        semantic_context: (N, C, h, w), ``R'_sl``.
    """
    return fuse(torch.cat([image_context, semantic_context], dim=1))


class SemanticLevelContext(nn.Module):
    """Augments each pixel with the context of the pixels predicted to be of its class.

    The semantic-level context ``R_sl`` is the region map of ``D`` (eqs. 13–16); every pixel
    gathers ``R'_sl = SelfAttention(R, R_sl)`` from it (eqs. 5, 8), and the module returns
    ``R_aug`` (:func:`augmented_representation`, eq. 6).

    ``attend_over`` chooses how ``R'_sl`` is computed, not what: ``"regions"`` (the
    default) attends over each region's representation once, weighted by its pixel count
    (HW×K work, :meth:`SelfAttention.forward_distinct`); ``"pixels"`` attends over every
    pixel of the region map, as published (HW×HW work, through the fused kernel). The
    results agree to round-off (``tests/test_fast_paths.py``, and both are checked against
    the authors' fixtures). :func:`isnet.deploy.runtimes.pytorch.use_region_attention` switches a whole model.
    """

    def __init__(
        self, channels: int, transform_channels: int, *, attend_over: Literal["pixels", "regions"] = "regions"
    ) -> None:
        super().__init__()
        self.attention = SelfAttention(
            query_channels=channels,
            key_channels=channels,
            transform_channels=transform_channels,
            out_channels=channels,
        )
        self.fuse = ConvBNReLU(2 * channels, channels, 3)
        self.attend_over = attend_over

    def forward(self, feats: Tensor, logits: Tensor, image_context: Tensor) -> Tensor:
        regions = find_regions(feats, logits)  # eqs. (13)–(15)
        # Eqs. (5), (8): R'_sl, each pixel's attention over the region map R_sl.
        if self.attend_over == "regions":
            representations = regions.representations.to(feats.dtype)
            context = self.attention.forward_distinct(feats, representations, regions.counts, regions.labels)
        elif self.attend_over == "pixels":
            context = self.attention(feats, regions.to_map(*feats.shape[2:], feats.dtype))  # eq. (16)
        else:
            raise ValueError(f"attend_over must be 'pixels' or 'regions', got {self.attend_over!r}")
        return augmented_representation(self.fuse, image_context, context)  # eq. (6)

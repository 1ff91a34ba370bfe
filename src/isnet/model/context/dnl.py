"""Disentangled non-local block (DNL, Yin et al., ECCV 2020)."""

from __future__ import annotations

from torch import Tensor, nn

from isnet.model.context.attention import bounded_attention, pixels_as_tokens, tokens_as_map
from isnet.model.context.conv_wrapped import ConvWrappedContext
from isnet.model.context.nonlocal_block import NonLocal2d


class DisentangledNonLocal2d(NonLocal2d):
    """Non-local attention split into a whitened pairwise term and a unary term.

    Pairwise: θ and φ are centred over the pixels before their dot product, which is scaled
    by ``1 / (√d · temperature)``; ``y_i = Σ_j softmax_j(...) g_j``. Unary: a 1×1 conv
    (C→1) scores every pixel, ``u = Σ_j softmax_j(m_j) g_j`` is shared by all pixels.
    ``z = x + W_z(y + u)``. Same projections as :class:`NonLocal2d` plus the mask conv.
    """

    def __init__(
        self, channels: int, reduction: int = 2, use_scale: bool = True, temperature: float = 0.05
    ) -> None:
        super().__init__(channels, reduction, use_scale)
        self.unary_mask = nn.Conv2d(channels, 1, 1)
        self.temperature = temperature

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[2:]
        theta, phi, g = (pixels_as_tokens(project(x)) for project in (self.theta, self.phi, self.g))  # (N, 1, hw, d)
        theta = theta - theta.mean(dim=2, keepdim=True)  # whitening
        phi = phi - phi.mean(dim=2, keepdim=True)
        y = bounded_attention(theta, phi, g, scale=self.scale / self.temperature)  # pairwise, over the hw pixels
        unary = self.unary_mask(x).flatten(2).softmax(dim=-1)  # (N, 1, hw)
        u = unary.unsqueeze(1) @ g  # (N, 1, 1, d): the same for every pixel
        return x + self.out_project(tokens_as_map(y + u, height, width))


class DisentangledNonLocalContext(ConvWrappedContext):
    """DNL's context: 3×3 CBR(in→C) → DisentangledNonLocal2d → 3×3 CBR → concat-fuse."""

    def __init__(
        self,
        in_channels: int = 2048,
        channels: int = 512,
        reduction: int = 2,
        temperature: float = 0.05,
    ) -> None:
        block = DisentangledNonLocal2d(channels, reduction, temperature=temperature)
        super().__init__(in_channels, channels, block)

"""Embedded-Gaussian non-local block (Wang et al., CVPR 2018)."""

from __future__ import annotations

from torch import Tensor, nn

from isnet.model.context.attention import bounded_attention, pixels_as_tokens, tokens_as_map
from isnet.model.context.conv_wrapped import ConvWrappedContext


class NonLocal2d(nn.Module):
    """``z = x + W_z(y)``, ``y_i = Σ_j softmax_j(θ_iᵀ φ_j / √d) g_j``.

    θ, φ and g are 1×1 convs (with bias) to ``d = channels // reduction``; ``W_z`` is a 1×1
    conv + BN whose scale starts at 0, so that the block starts as identity (as in the
    paper and mmcv's ``NonLocal2d``).
    """

    def __init__(self, channels: int, reduction: int = 2, use_scale: bool = True) -> None:
        super().__init__()
        inter_channels = channels // reduction
        self.theta = nn.Conv2d(channels, inter_channels, 1)
        self.phi = nn.Conv2d(channels, inter_channels, 1)
        self.g = nn.Conv2d(channels, inter_channels, 1)
        self.out_project = nn.Sequential(
            nn.Conv2d(inter_channels, channels, 1, bias=False), nn.BatchNorm2d(channels)
        )
        nn.init.zeros_(self.out_project[1].weight)
        self.scale = inter_channels**-0.5 if use_scale else 1.0

    def forward(self, x: Tensor) -> Tensor:
        height, width = x.shape[2:]
        theta, phi, g = (pixels_as_tokens(project(x)) for project in (self.theta, self.phi, self.g))
        y = bounded_attention(theta, phi, g, scale=self.scale)  # softmax over the hw pixels
        return x + self.out_project(tokens_as_map(y, height, width))


class NonLocalContext(ConvWrappedContext):
    """Non-local network's context: 3×3 CBR(in→C) → NonLocal2d → 3×3 CBR → concat fuse."""

    def __init__(self, in_channels: int = 2048, channels: int = 512, reduction: int = 2) -> None:
        super().__init__(in_channels, channels, NonLocal2d(channels, reduction))

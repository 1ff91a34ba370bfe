"""ResNeSt (split-attention networks), radix 2, cardinality 1, as in the released ResNeSt-101 ISNets."""

from __future__ import annotations

from torch import Tensor, nn

from isnet.model.backbones.resnet import ResNet


class SplitAttentionConv(nn.Module):
    """A grouped 3×3 conv producing ``radix`` splits, re-weighted by a softmax over the splits.

    The weights come from the globally pooled sum of the splits through two 1×1 convs
    (``fc1`` → BN → ReLU → ``fc2``), softmaxed across the radix dimension.
    """

    # (conv, batchnorm) attributes whose BN the forward applies straight to the conv: folded for inference.
    conv_bn_pairs = (("conv", "bn0"), ("fc1", "bn1"))

    def __init__(
        self,
        channels: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        radix: int = 2,
        reduction_factor: int = 4,
    ) -> None:
        super().__init__()
        inter_channels = max(channels * radix // reduction_factor, 32)
        self.radix = radix
        self.conv = nn.Conv2d(
            channels,
            channels * radix,
            3,
            stride=stride,
            padding=dilation,
            dilation=dilation,
            groups=radix,
            bias=False,
        )
        self.bn0 = nn.BatchNorm2d(channels * radix)
        self.relu = nn.ReLU(inplace=True)
        self.fc1 = nn.Conv2d(channels, inter_channels, 1)
        self.bn1 = nn.BatchNorm2d(inter_channels)
        self.fc2 = nn.Conv2d(inter_channels, channels * radix, 1)

    def forward(self, x: Tensor) -> Tensor:
        x = self.relu(self.bn0(self.conv(x)))
        batch, _, height, width = x.shape
        splits = x.view(batch, self.radix, -1, height, width)
        gap = splits.sum(dim=1).mean(dim=(2, 3), keepdim=True)
        gap = self.relu(self.bn1(self.fc1(gap)))
        attention = self.fc2(gap).view(batch, self.radix, -1, 1, 1).softmax(dim=1)
        return (attention * splits).sum(dim=1)


class ResNeStBottleneck(nn.Module):
    """1×1 → split-attention 3×3 → (3×3 average pool when strided) → 1×1, expansion 4."""

    expansion = 4
    # (conv, batchnorm) attributes whose BN the forward applies straight to the conv: folded for inference.
    conv_bn_pairs = (("conv1", "bn1"), ("conv3", "bn3"))

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
        radix: int = 2,
    ) -> None:
        super().__init__()
        width = planes  # cardinality 1
        self.conv1 = nn.Conv2d(inplanes, width, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.conv2 = SplitAttentionConv(width, dilation=dilation, radix=radix)
        # The stride is taken by an average pool after the split-attention conv ("avd").
        self.avd_layer = nn.AvgPool2d(3, stride, padding=1) if stride > 1 else nn.Identity()
        self.conv3 = nn.Conv2d(width, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.avd_layer(self.conv2(out))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


RESNEST_BLOCKS = {50: (3, 4, 6, 3), 101: (3, 4, 23, 3), 200: (3, 24, 36, 3)}


def resnest(depth: int, **kwargs) -> ResNet:
    """ResNeSt of the given depth with a deep stem and average-pool shortcuts."""
    if depth not in RESNEST_BLOCKS:
        raise ValueError(f"ResNeSt depth must be one of {sorted(RESNEST_BLOCKS)}, got {depth}")
    return ResNet(ResNeStBottleneck, RESNEST_BLOCKS[depth], avg_down=True, **kwargs)

"""Dilated ResNet-V1c (deep 3×3 stem), the backbone of the released ISNet models.

The parameter names follow the open-mmlab / sssegmentation layout (``stem.{0,1,3,4,6,7}``,
``layerN.i.{conv1,bn1,...,downsample}``) so that released and ImageNet checkpoints load
without renaming inside the backbone.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.modules.batchnorm import _BatchNorm
from torch.utils.checkpoint import checkpoint

from isnet.model.layers import ConvBNReLU

# Per output stride: the stride and the dilation of each of the four stages.
STAGE_LAYOUT: dict[int, tuple[tuple[int, ...], tuple[int, ...]]] = {
    8: ((1, 2, 1, 1), (1, 1, 2, 4)),
    16: ((1, 2, 2, 1), (1, 1, 1, 2)),
    32: ((1, 2, 2, 2), (1, 1, 1, 1)),
}


@dataclass(frozen=True)
class FeatureInfo:
    """What a backbone stage returns: its channel count and its stride w.r.t. the input."""

    channels: int
    stride: int


class BasicBlock(nn.Module):
    """Two 3×3 convolutions (ResNet-18/34).

    Stride and dilation sit on the first conv only; the second is a plain 3×3 (padding 1),
    as in the open-mmlab blocks the released models were built from (the reference
    fixtures discriminate: dilating both changes the output).
    """

    expansion = 1
    # (conv, batchnorm) attributes whose BN the forward applies straight to the conv: folded for inference.
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + identity)


class Bottleneck(nn.Module):
    """1×1 → 3×3 (strided, dilated) → 1×1 with expansion 4 (ResNet-50/101, "pytorch" style)."""

    expansion = 4
    # (conv, batchnorm) attributes whose BN the forward applies straight to the conv: folded for inference.
    conv_bn_pairs = (("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(
        self,
        inplanes: int,
        planes: int,
        *,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward(self, x: Tensor) -> Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + identity)


def deep_stem(stem_channels: int, in_channels: int = 3) -> nn.Sequential:
    """The V1c stem: three 3×3 CBRs (the first strided), children 0..8 as released."""
    half = stem_channels // 2
    return nn.Sequential(
        *ConvBNReLU(in_channels, half, 3, stride=2),
        *ConvBNReLU(half, half, 3),
        *ConvBNReLU(half, stem_channels, 3),
    )


def plain_stem(stem_channels: int, in_channels: int = 3) -> nn.Sequential:
    """The original 7×7 stem (ResNet-V1b, torchvision's layout)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, stem_channels, 7, stride=2, padding=3, bias=False),
        nn.BatchNorm2d(stem_channels),
        nn.ReLU(inplace=True),
    )


class ResNet(nn.Module):
    """A dilated residual network returning the outputs of its four stages.

    ``block`` chooses the residual unit (basic, bottleneck or ResNeSt's split-attention
    bottleneck); ``avg_down`` puts an average pool before the projection shortcut (ResNeSt).
    ``in_channels`` is the number of image channels the stem takes (3: RGB).
    :meth:`set_grad_checkpointing` makes training recompute each block's activations during
    the backward pass instead of keeping them (less memory, more time; same gradients).
    """

    def __init__(
        self,
        block: type[nn.Module],
        blocks_per_stage: tuple[int, int, int, int],
        *,
        base_channels: int = 64,
        stem_channels: int = 64,
        output_stride: int = 8,
        stem: str = "deep",
        avg_down: bool = False,
        contract_dilation: bool = True,
        in_channels: int = 3,
    ) -> None:
        super().__init__()
        self.grad_checkpointing = False
        if output_stride not in STAGE_LAYOUT:
            raise ValueError(f"output_stride must be one of {sorted(STAGE_LAYOUT)}, got {output_stride}")
        if stem not in ("deep", "plain"):
            raise ValueError(f"stem must be 'deep' (V1c, 3×3) or 'plain' (7×7), got {stem!r}")
        self.stem = (deep_stem if stem == "deep" else plain_stem)(stem_channels, in_channels)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        strides, dilations = STAGE_LAYOUT[output_stride]
        inplanes, total_stride = stem_channels, 4
        self.feature_info: list[FeatureInfo] = []
        for index, (num_blocks, stride, dilation) in enumerate(
            zip(blocks_per_stage, strides, dilations)
        ):
            planes = base_channels * 2**index
            stage = self._make_stage(
                block, inplanes, planes, num_blocks, stride, dilation, avg_down, contract_dilation
            )
            self.add_module(f"layer{index + 1}", stage)
            inplanes = planes * block.expansion
            total_stride *= stride
            self.feature_info.append(FeatureInfo(inplanes, total_stride))

    @staticmethod
    def _make_stage(
        block: type[nn.Module],
        inplanes: int,
        planes: int,
        num_blocks: int,
        stride: int,
        dilation: int,
        avg_down: bool,
        contract_dilation: bool,
    ) -> nn.Sequential:
        out_channels = planes * block.expansion
        downsample = None
        if stride != 1 or inplanes != out_channels:
            if avg_down:
                downsample = nn.Sequential(
                    nn.AvgPool2d(stride, stride, ceil_mode=True, count_include_pad=False),
                    nn.Conv2d(inplanes, out_channels, 1, bias=False),
                    nn.BatchNorm2d(out_channels),
                )
            else:
                downsample = nn.Sequential(
                    nn.Conv2d(inplanes, out_channels, 1, stride=stride, bias=False),
                    nn.BatchNorm2d(out_channels),
                )
        first_dilation = dilation // 2 if contract_dilation and dilation > 1 else dilation
        layers = [block(inplanes, planes, stride=stride, dilation=first_dilation, downsample=downsample)]
        layers += [block(out_channels, planes, dilation=dilation) for _ in range(1, num_blocks)]
        return nn.Sequential(*layers)

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute block activations in training's backward pass (a runtime switch)."""
        self.grad_checkpointing = enable

    def forward(self, x: Tensor) -> list[Tensor]:
        x = self.maxpool(self.stem(x))
        recompute = self.grad_checkpointing and self.training and torch.is_grad_enabled()
        features = []
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            if recompute:
                for block in stage:
                    x = checkpoint(
                        block, x, use_reentrant=False, context_fn=lambda b=block: (nullcontext(), _frozen_statistics(b))
                    )
            else:
                x = stage(x)
            features.append(x)
        return features  # eq. (1): the head's bottleneck turns layer4 into R


@contextmanager
def _frozen_statistics(module: nn.Module) -> Iterator[None]:
    """While a checkpointed block is recomputed, keep its BatchNorm running statistics as
    they are: the forward pass already updated them once."""
    norms = [m for m in module.modules() if isinstance(m, _BatchNorm)]
    saved = [(m.momentum, None if m.num_batches_tracked is None else m.num_batches_tracked.clone()) for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, (momentum, tracked) in zip(norms, saved):
            m.momentum = momentum
            if tracked is not None:
                m.num_batches_tracked.copy_(tracked)


RESNET_BLOCKS: dict[int, tuple[type[nn.Module], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
    101: (Bottleneck, (3, 4, 23, 3)),
    152: (Bottleneck, (3, 8, 36, 3)),
}


def resnet(depth: int, **kwargs) -> ResNet:
    """ResNet-V1c of the given depth (18, 34, 50, 101, 152)."""
    if depth not in RESNET_BLOCKS:
        raise ValueError(f"ResNet depth must be one of {sorted(RESNET_BLOCKS)}, got {depth}")
    block, blocks = RESNET_BLOCKS[depth]
    return ResNet(block, blocks, **kwargs)


__all__ = ["BasicBlock", "Bottleneck", "FeatureInfo", "ResNet", "resnet", "STAGE_LAYOUT"]


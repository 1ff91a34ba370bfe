"""Backbones: dilated ResNet-V1c and ResNeSt, returning their four stage outputs."""

from __future__ import annotations

from isnet.model.config import BackboneConfig
from isnet.model.backbones.resnest import ResNeStBottleneck, SplitAttentionConv, resnest
from isnet.model.backbones.resnet import RESNET_BLOCKS, FeatureInfo, ResNet, resnet


def build_backbone(config: BackboneConfig) -> ResNet:
    kwargs = dict(
        base_channels=config.base_channels,
        stem_channels=config.stem_channels,
        output_stride=config.output_stride,
        stem=config.stem,
        in_channels=config.in_channels,
    )
    if config.type == "resnet":
        return resnet(config.depth, **kwargs)
    if config.type == "resnest":
        return resnest(config.depth, **kwargs)
    raise ValueError(f"unknown backbone type {config.type!r}")


def stage_channels(config: BackboneConfig) -> tuple[int, int, int, int]:
    """Channels of the four stage outputs, without building the network."""
    expansion = 1 if config.type == "resnet" and RESNET_BLOCKS[config.depth][0].expansion == 1 else 4
    return tuple(config.base_channels * 2**i * expansion for i in range(4))  # type: ignore[return-value]


__all__ = [
    "FeatureInfo",
    "ResNet",
    "ResNeStBottleneck",
    "SplitAttentionConv",
    "build_backbone",
    "resnest",
    "resnet",
    "stage_channels",
]

"""Backbones: dilated ResNet-V1c and ResNeSt, returning their four stage outputs.

:data:`BACKBONES` is the one registry: a backbone family's name (``BackboneConfig.type``)
→ its builder and its residual block per depth, from which the channels and strides of its
four stages follow without building it (:func:`feature_info`). A new family is a module of
this package and one entry here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from torch import nn

from isnet.model.backbones.resnest import RESNEST_BLOCKS, ResNeStBottleneck, SplitAttentionConv, resnest
from isnet.model.backbones.resnet import RESNET_BLOCKS, STAGE_LAYOUT, FeatureInfo, ResNet, resnet
from isnet.model.config import BackboneConfig


@dataclass(frozen=True)
class BackboneFamily:
    """How to build a family's networks, and the residual block each depth stacks."""

    build: Callable[..., ResNet]  # (depth, *, base_channels, stem_channels, output_stride, stem) → network
    blocks: dict[int, type[nn.Module]]  # depth → its block (whose ``expansion`` sets the stage widths)


BACKBONES: dict[str, BackboneFamily] = {
    "resnet": BackboneFamily(resnet, {depth: block for depth, (block, _) in RESNET_BLOCKS.items()}),
    "resnest": BackboneFamily(resnest, dict.fromkeys(RESNEST_BLOCKS, ResNeStBottleneck)),
}


def _family(config: BackboneConfig) -> BackboneFamily:
    if config.type not in BACKBONES:
        raise ValueError(f"unknown backbone type {config.type!r}: expected one of {', '.join(BACKBONES)}")
    family = BACKBONES[config.type]
    if config.depth not in family.blocks:
        raise ValueError(f"{config.type} depth must be one of {sorted(family.blocks)}, got {config.depth}")
    return family


def build_backbone(config: BackboneConfig) -> ResNet:
    return _family(config).build(
        config.depth,
        base_channels=config.base_channels,
        stem_channels=config.stem_channels,
        output_stride=config.output_stride,
        stem=config.stem,
        in_channels=config.in_channels,
    )


def feature_info(config: BackboneConfig) -> tuple[FeatureInfo, ...]:
    """Channels and stride of the four stage outputs, without building the network (as
    ``build_backbone(config).feature_info`` would say)."""
    expansion = _family(config).blocks[config.depth].expansion
    if config.output_stride not in STAGE_LAYOUT:
        raise ValueError(f"output_stride must be one of {sorted(STAGE_LAYOUT)}, got {config.output_stride}")
    strides, _ = STAGE_LAYOUT[config.output_stride]
    infos, total = [], 4  # the stem and the max-pool: stride 4
    for index, stride in enumerate(strides):
        total *= stride
        infos.append(FeatureInfo(config.base_channels * 2**index * expansion, total))
    return tuple(infos)


def stage_channels(config: BackboneConfig) -> tuple[int, int, int, int]:
    """Channels of the four stage outputs, without building the network."""
    return tuple(info.channels for info in feature_info(config))  # type: ignore[return-value]


__all__ = [
    "BACKBONES",
    "BackboneFamily",
    "FeatureInfo",
    "ResNet",
    "ResNeStBottleneck",
    "SplitAttentionConv",
    "build_backbone",
    "feature_info",
    "resnest",
    "resnet",
    "stage_channels",
]

"""Named models: the 12 released ISNets, ISNet‡, the Table 1 ablations and the Table 3 peers.

A preset is a model-configuration function (plain Python, timm-style) and the record of the
dataset its classes come from; :func:`create_model` builds one by name, optionally loading
weights from a local file, and attaches the dataset record to the model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from isnet.data.info import ADE20K, CITYSCAPES, LIP, DatasetInfo
from isnet.model.config import (
    PEER_HEAD_CONFIGS,
    ASPPContextConfig,
    AuxConfig,
    BackboneConfig,
    ILCMConfig,
    ISNetHeadConfig,
    ModelConfig,
    ShortcutConfig,
)
from isnet.model.segmentor import Segmentor, build_model
from isnet.weights.checkpoint import dataset_from_metadata
from isnet.weights.imagenet import load_imagenet_weights
from isnet.weights.loading import load_weights
from isnet.weights.released import WEIGHTS

RELEASED_BACKBONES = {
    "resnet50": BackboneConfig(type="resnet", depth=50),
    "resnet101": BackboneConfig(type="resnet", depth=101),
    "resnest101": BackboneConfig(type="resnest", depth=101, stem_channels=128),
}


def isnet(num_classes: int, backbone: str = "resnet50", *, shortcut: bool = False, **head: Any) -> ModelConfig:
    """ISNet (ILCM + SLCM, or a variant chosen by ``head``) on a dilated backbone at output stride 8;
    with the layer1 shortcut of the released LIP models when ``shortcut``."""
    return ModelConfig(
        num_classes=num_classes,
        backbone=RELEASED_BACKBONES[backbone],
        head=ISNetHeadConfig(shortcut=ShortcutConfig() if shortcut else None, **head),
        aux=AuxConfig(),
    )


def peer(num_classes: int, kind: str, backbone: str = "resnet50") -> ModelConfig:
    """A Table 3 peer: the same segmentor (backbone, auxiliary head, loss) with another head."""
    return ModelConfig(num_classes=num_classes, backbone=RELEASED_BACKBONES[backbone], head=PEER_HEAD_CONFIGS[kind](),
                       aux=AuxConfig())


@dataclass(frozen=True)
class Preset:
    """A named model: its configuration function and the dataset record of its classes."""

    name: str
    config: Callable[[], ModelConfig]
    dataset: DatasetInfo


PRESETS: dict[str, Preset] = {}


def register(name: str, dataset: DatasetInfo, config: Callable[..., ModelConfig], *args: Any, **kwargs: Any) -> None:
    PRESETS[name] = Preset(name, partial(config, dataset.num_classes, *args, **kwargs), dataset)


# The released models; those on LIP carry the layer1 shortcut.
for _name, _weights in WEIGHTS.items():
    register(_name, _weights.dataset, isnet, _weights.backbone, shortcut=_weights.dataset is LIP)

# ISNet‡: ASPP as the image-level module (the paper's best LIP and Cityscapes models).
for _backbone in RELEASED_BACKBONES:
    register(f"isnet_dagger_{_backbone}os8_cityscapes", CITYSCAPES, isnet, _backbone, image_context=ASPPContextConfig())
    register(f"isnet_dagger_{_backbone}os8_lip", LIP, isnet, _backbone, shortcut=True, image_context=ASPPContextConfig())

# Table 1 ablations (ADE20K, ResNet-50-D8).
ABLATIONS = {
    "baseline": dict(image_context=None, semantic_context=False),
    "ilcm": dict(image_context=ILCMConfig(), semantic_context=False),
    "slcm": dict(image_context=None, semantic_context=True),
    "isnet": dict(image_context=ILCMConfig(), semantic_context=True),
}
for _variant, _head in ABLATIONS.items():
    register(f"ablation_{_variant}_resnet50os8_ade20k", ADE20K, isnet, "resnet50", **_head)

# Table 3 peers: the same R50-D8 segmentor with another context head (ADE20K).
PEERS = tuple(PEER_HEAD_CONFIGS)
for _peer in PEERS:
    register(f"{_peer}_resnet50os8_ade20k", ADE20K, peer, _peer)


def get_preset(name: str) -> Preset:
    if name not in PRESETS:
        raise KeyError(f"unknown preset {name!r}; available: {', '.join(sorted(PRESETS))}")
    return PRESETS[name]


def get_config(name: str, **overrides: Any) -> ModelConfig:
    """The configuration of a preset; ``overrides`` replace top-level fields (e.g. num_classes)."""
    config = get_preset(name).config()
    return config.replace(**overrides) if overrides else config


def create_model(
    name_or_config: str | ModelConfig,
    *,
    num_classes: int | None = None,
    weights: str | Path | None = None,
    weights_backbone: str | Path | None = None,
    ignore_mismatched_sizes: bool = False,
    classes: Sequence[str] | None = None,
    **overrides: Any,
) -> Segmentor:
    """Build a preset (by name) or a configuration, optionally with weights.

    ``weights``: a file (one of our ``.safetensors`` or a released ``.pth``) or released
    weights' name (fetched once when online, see :mod:`isnet.weights.loading`); loading is strict
    unless ``ignore_mismatched_sizes``, which loads every tensor that fits and freshly
    initialises the rest (fine-tuning to ``num_classes`` other classes; the report is logged);
    with ``classes`` (the new class names) it keeps the classifier rows of the classes the
    weights name too (:func:`isnet.weights.transfer.transfer_classes`).
    ``weights_backbone``: an ImageNet checkpoint for the backbone (open-mmlab or torchvision
    layout, see :mod:`isnet.weights.imagenet`), the start of training.

    The model's ``dataset`` record is the one its weights file carries, else the preset's,
    unless the class count was changed (then it is None: name your classes in your data).
    """
    if num_classes is not None:
        overrides["num_classes"] = num_classes
    if isinstance(name_or_config, ModelConfig):
        preset, config = None, name_or_config.replace(**overrides)
    else:
        preset, config = get_preset(name_or_config), get_config(name_or_config, **overrides)
    model = build_model(config)
    if preset is not None and config.num_classes == preset.dataset.num_classes:
        model.dataset = preset.dataset
    if weights_backbone is not None:
        load_imagenet_weights(model.backbone, weights_backbone)
    if weights is not None:
        report = load_weights(model, weights, ignore_mismatched_sizes=ignore_mismatched_sizes, classes=classes)
        if report.reinitialised or report.ignored:
            logging.getLogger("isnet").warning(report.summary())
        if report.metadata is not None:  # read with the tensors: the file is not read again
            dataset = dataset_from_metadata(report.metadata, config.num_classes,
                                            source=report.source) if not report.reinitialised and report.classes is None else None
            model.dataset = dataset or model.dataset
    return model

"""What the authors released, and their formats, in one place.

- the 12 released checkpoints as :class:`ReleasedWeights` records (preset, dataset record, URL,
  the model zoo's and the paper's mIoU);
- their checkpoint layout: parameter-name prefixes (sssegmentation's ISNet) mapped to ours,
  and a strict loader;
- their config vocabulary (as in the reference fixtures' JSON), translated to :class:`ModelConfig`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from torch import nn

from isnet.data.info import ADE20K, CITYSCAPES, COCO_STUFF, LIP, DatasetInfo
from isnet.model.backbones import stage_channels
from isnet.model.config import (
    AuxConfig,
    BackboneConfig,
    ISNetHeadConfig,
    ModelConfig,
    ShortcutConfig,
)
from isnet.weights.checkpoint import load_state_dict_strict, read_torch_checkpoint

# Where the authors published the 12 checkpoints (sssegmentation model zoo).
RELEASED_URL = "https://github.com/SegmentationBLWX/modelstore/releases/download/ssseg_isnet/{name}.pth"


@dataclass(frozen=True)
class ReleasedWeights:
    """One released checkpoint: which preset it fills, what it was trained on, what it scores.

    ``zoo_miou``: the model zoo's (single-scale, ms + flip) mIoU, None where not published;
    ``paper_miou``: the paper's single-scale figure for the same model, where it gives one;
    ``lr``: the recipe's learning rate where it differs from the dataset's schedule.
    """

    preset: str
    backbone: str  # resnet50, resnet101 or resnest101 (isnet.weights.presets.RELEASED_BACKBONES)
    dataset: DatasetInfo
    zoo_miou: tuple[float | None, float | None] = (None, None)
    paper_miou: float | None = None
    lr: float | None = None
    sha256: str | None = None  # not published by the authors

    @property
    def file_name(self) -> str:
        return f"{self.preset}.pth"

    @property
    def url(self) -> str:
        return RELEASED_URL.format(name=self.preset)

    @property
    def recipe(self) -> str:
        """The training recipe of these weights (``isnet recipes``) has the preset's name."""
        return self.preset


WEIGHTS: dict[str, ReleasedWeights] = {
    weights.preset: weights
    for weights in (
        ReleasedWeights("isnet_resnet50os8_ade20k", "resnet50", ADE20K, (44.22, 45.03), paper_miou=44.09),
        ReleasedWeights("isnet_resnet101os8_ade20k", "resnet101", ADE20K, (45.92, 47.29)),
        ReleasedWeights("isnet_resnest101os8_ade20k", "resnest101", ADE20K, (46.65, 47.56), lr=0.004),
        ReleasedWeights("isnet_resnet50os8_cityscapes", "resnet50", CITYSCAPES, (79.32, 81.31)),
        ReleasedWeights("isnet_resnet101os8_cityscapes", "resnet101", CITYSCAPES, (80.56, 81.96)),
        ReleasedWeights("isnet_resnest101os8_cityscapes", "resnest101", CITYSCAPES),
        ReleasedWeights("isnet_resnet50os8_cocostuff10k", "resnet50", COCO_STUFF, (38.06, 40.39)),
        ReleasedWeights("isnet_resnet101os8_cocostuff10k", "resnet101", COCO_STUFF, (40.53, 41.74)),
        ReleasedWeights("isnet_resnest101os8_cocostuff10k", "resnest101", COCO_STUFF),
        ReleasedWeights("isnet_resnet50os8_lip", "resnet50", LIP, (53.14, 53.41)),
        ReleasedWeights("isnet_resnet101os8_lip", "resnet101", LIP, (54.96, 55.41)),
        ReleasedWeights("isnet_resnest101os8_lip", "resnest101", LIP),
    )
}


# ----------------------------------------------------------------------------- checkpoint layout

# Released names (sssegmentation's ISNet) → ours, by prefix. The first matching prefix wins.
RELEASED_PREFIXES: tuple[tuple[str, str], ...] = (
    ("backbone_net.", "backbone."),
    ("bottleneck.", "head.bottleneck."),
    ("ilc_net.correlate_net.", "head.image_context.attention."),
    ("ilc_net.bottleneck.", "head.image_context.fuse."),
    ("slc_net.correlate_net.", "head.semantic_context.attention."),
    ("slc_net.bottleneck.", "head.semantic_context.fuse."),
    ("decoder_stage1.", "head.classifier_stage1."),
    ("shortcut.", "head.decoder.shortcut."),
    ("decoder_stage2.", "head.decoder.classifier."),
    ("auxiliary_decoder.", "aux_head."),
)


def released_to_ours(key: str) -> str:
    """Our name for a key of a released ISNet checkpoint (unknown prefixes are returned as is)."""
    key = key.removeprefix("module.")  # saved from a DistributedDataParallel wrapper
    for released, ours in RELEASED_PREFIXES:
        if key.startswith(released):
            return ours + key[len(released) :]
    return key


def load_released_checkpoint(model: nn.Module, path: str | Path) -> nn.Module:
    """Load one of the authors' released ISNet checkpoints (sssegmentation layout) into ``model``."""
    state_dict = {released_to_ours(key): value for key, value in read_torch_checkpoint(path).items()}
    load_state_dict_strict(model, state_dict, source=path)
    return model


# ----------------------------------------------------------------------------- config vocabulary


def from_released_config(config: dict[str, Any]) -> ModelConfig:
    """Translate the authors' configuration vocabulary (as in the fixtures' JSON) to ours.

    Accepts either the whole fixture JSON (with a ``config`` entry) or the config itself.
    Channel counts the authors spell out (``in_channels``) are checked against what the
    backbone produces, so an inconsistent config fails here rather than at load time.
    """
    config = config.get("config", config)
    backbone = config["backbone"]
    head = config["head"]
    kind = str(backbone.get("type", "ResNet")).lower()
    if kind not in ("resnet", "resnest"):
        raise ValueError(f"unsupported backbone type {backbone.get('type')!r}: expected ResNet or ResNeSt")
    if not head.get("concat_input", True):
        raise ValueError("concat_input=False is not a released ISNet configuration and is not supported")
    shortcut = head.get("shortcut", {}) or {}
    auxiliary = config.get("auxiliary")
    ours = ModelConfig(
        num_classes=int(config["num_classes"]),
        backbone=BackboneConfig(
            type=kind,  # type: ignore[arg-type]
            depth=int(backbone["depth"]),
            base_channels=int(backbone.get("base_channels", 64)),
            stem_channels=int(backbone.get("stem_channels", 128 if kind == "resnest" else 64)),
            output_stride=int(backbone.get("outstride", 8)),
            stem="deep" if backbone.get("use_conv3x3_stem", True) else "plain",
        ),
        head=ISNetHeadConfig(
            channels=int(head["feats_channels"]),
            transform_channels=int(head["transform_channels"]),
            shortcut=ShortcutConfig(channels=int(shortcut.get("feats_channels", 48))) if shortcut.get("is_on", False) else None,
            dropout=float(head.get("dropout", 0.1)),
        ),
        aux=None
        if not auxiliary
        else AuxConfig(channels=int(auxiliary["out_channels"]), dropout=float(auxiliary.get("dropout", 0.1))),
    )
    _check_channels(ours, head_in=head.get("in_channels"), shortcut_in=shortcut.get("in_channels"),
                    aux_in=(auxiliary or {}).get("in_channels"))
    return ours


def _check_channels(config: ModelConfig, **declared: int | None) -> None:
    layer1, _, layer3, layer4 = stage_channels(config.backbone)
    expected = {"head_in": layer4, "aux_in": layer3}
    if config.head.shortcut is not None:
        expected["shortcut_in"] = layer1
    for name, value in declared.items():
        if value is not None and name in expected and int(value) != expected[name]:
            raise ValueError(
                f"config declares {name}={value} but the backbone produces {expected[name]} channels there"
            )

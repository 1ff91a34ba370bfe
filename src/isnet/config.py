"""Typed model configuration, and its translation from the authors' config vocabulary."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Literal

BackboneType = Literal["resnet", "resnest"]
ImageContextType = Literal["ilcm", "aspp", "none"]


@dataclass(frozen=True)
class BackboneConfig:
    """A dilated ResNet-V1c or ResNeSt."""

    type: BackboneType = "resnet"
    depth: int = 50
    base_channels: int = 64
    stem_channels: int = 64  # 128 for ResNeSt
    output_stride: int = 8
    stem: Literal["deep", "plain"] = "deep"  # "plain": the 7×7 stem of torchvision's ResNet
    # Recompute each residual block's activations in the backward pass instead of storing
    # them: less memory for large training crops, about one more backbone forward of time.
    checkpoint_activations: bool = False


@dataclass(frozen=True)
class HeadConfig:
    """The ISNet head. ``image_context`` and ``semantic_context`` select the variant.

    ISNet: ("ilcm", True); ISNet‡: ("aspp", True); Table 1 ablations: baseline ("none",
    False), ILCM only ("ilcm", False), SLCM only ("none", True).

    ``type`` other than "isnet" replaces the whole head by one of the peer methods of
    :data:`isnet.heads.peers.PEER_HEADS` (ppm, aspp, ocr, ccnet, danet, ann, nonlocal, dnl,
    apcnet), with the same backbone, width, auxiliary head and loss (Table 3).
    """

    type: str = "isnet"

    channels: int = 512  # C, the paper's feats_channels
    transform_channels: int = 256  # T
    image_context: ImageContextType = "ilcm"
    semantic_context: bool = True
    shortcut: bool = False  # the layer1 shortcut of the released LIP models
    shortcut_channels: int = 48
    aspp_dilations: tuple[int, ...] = (1, 12, 24, 36)
    dropout: float = 0.1


@dataclass(frozen=True)
class AuxConfig:
    """The FCN auxiliary head on layer3."""

    channels: int = 512
    dropout: float = 0.1


@dataclass(frozen=True)
class ModelConfig:
    num_classes: int
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=HeadConfig)
    aux: AuxConfig | None = field(default_factory=AuxConfig)

    def replace(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        head = dict(data.get("head", {}))
        if "aspp_dilations" in head:
            head["aspp_dilations"] = tuple(head["aspp_dilations"])
        aux = data.get("aux", {})
        return cls(
            num_classes=int(data["num_classes"]),
            backbone=BackboneConfig(**data.get("backbone", {})),
            head=HeadConfig(**head),
            aux=None if aux is None else AuxConfig(**aux),
        )

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))


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
        head=HeadConfig(
            channels=int(head["feats_channels"]),
            transform_channels=int(head["transform_channels"]),
            shortcut=bool(shortcut.get("is_on", False)),
            shortcut_channels=int(shortcut.get("feats_channels", 48)),
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
    from .backbones import stage_channels

    layer1, _, layer3, layer4 = stage_channels(config.backbone)
    expected = {"head_in": layer4, "aux_in": layer3}
    if config.head.shortcut:
        expected["shortcut_in"] = layer1
    for name, value in declared.items():
        if value is not None and name in expected and int(value) != expected[name]:
            raise ValueError(
                f"config declares {name}={value} but the backbone produces {expected[name]} channels there"
            )

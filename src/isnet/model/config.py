"""Typed model configuration: backbone, decode head, auxiliary head.

A configuration describes only what it builds: each head has its own config class
(:class:`ISNetHeadConfig` for ISNet and its Table 1 variants, one class per Table 3 peer), so a
field of another head is a ``TypeError`` at construction, not a silently ignored option.
Runtime switches (activation checkpointing, precision, layout) are not part of it: they change
how a model computes, not what it is (see ``Segmentor.set_grad_checkpointing``).
The authors' config vocabulary is translated in :mod:`isnet.weights.released`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any, ClassVar, Literal, Union

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
    in_channels: int = 3  # image channels (e.g. 4 for RGB + near infrared); files without it are RGB


@dataclass(frozen=True)
class _HeadConfig:
    """What every decode head has: its width (the paper's C) and the classifier's dropout."""

    kind: ClassVar[str]
    channels: int = 512
    dropout: float = 0.1


@dataclass(frozen=True)
class ISNetHeadConfig(_HeadConfig):
    """The ISNet head. ``image_context`` and ``semantic_context`` select the variant.

    ISNet: ("ilcm", True); ISNet‡: ("aspp", True); Table 1 ablations: baseline ("none",
    False), ILCM only ("ilcm", False), SLCM only ("none", True).
    """

    kind: ClassVar[str] = "isnet"
    transform_channels: int = 256  # T
    image_context: ImageContextType = "ilcm"
    semantic_context: bool = True
    shortcut: bool = False  # the layer1 shortcut of the released LIP models
    shortcut_channels: int = 48
    aspp_dilations: tuple[int, ...] = (1, 12, 24, 36)


# Table 3 peers: each method's standard configuration for a ResNet-D8 head.


@dataclass(frozen=True)
class PSPHeadConfig(_HeadConfig):
    """PSPNet: pyramid pooling over ``bins``."""

    kind: ClassVar[str] = "ppm"
    bins: tuple[int, ...] = (1, 2, 3, 6)


@dataclass(frozen=True)
class DeepLabV3HeadConfig(_HeadConfig):
    """DeepLabV3: ASPP with image pooling."""

    kind: ClassVar[str] = "aspp"
    dilations: tuple[int, ...] = (1, 12, 24, 36)


@dataclass(frozen=True)
class OCRHeadConfig(_HeadConfig):
    """OCRNet: soft object regions from layer3, object context on layer4."""

    kind: ClassVar[str] = "ocr"
    key_channels: int | None = None  # None: channels // 2 (256 at the paper's 512)


@dataclass(frozen=True)
class CCNetHeadConfig(_HeadConfig):
    """CCNet: recurrent criss-cross attention."""

    kind: ClassVar[str] = "ccnet"
    recurrence: int = 2


@dataclass(frozen=True)
class DANetHeadConfig(_HeadConfig):
    """DANet: position and channel attention."""

    kind: ClassVar[str] = "danet"
    key_channels: int | None = None  # None: channels // 8


@dataclass(frozen=True)
class ANNHeadConfig(_HeadConfig):
    """ANN: asymmetric fusion (layer3 into layer4) and pyramid non-local blocks."""

    kind: ClassVar[str] = "ann"
    project_channels: int | None = None  # None: channels // 2 (256 at the paper's 512)
    key_pool_scales: tuple[int, ...] = (1, 3, 6, 8)


@dataclass(frozen=True)
class NonLocalHeadConfig(_HeadConfig):
    """Non-local network: an embedded-Gaussian block."""

    kind: ClassVar[str] = "nonlocal"
    reduction: int = 2


@dataclass(frozen=True)
class DNLHeadConfig(_HeadConfig):
    """Disentangled non-local block."""

    kind: ClassVar[str] = "dnl"
    reduction: int = 2
    temperature: float = 0.05


@dataclass(frozen=True)
class APCNetHeadConfig(_HeadConfig):
    """APCNet: adaptive context modules."""

    kind: ClassVar[str] = "apcnet"
    pool_scales: tuple[int, ...] = (1, 2, 3, 6)


HeadConfig = Union[
    ISNetHeadConfig,
    PSPHeadConfig,
    DeepLabV3HeadConfig,
    OCRHeadConfig,
    CCNetHeadConfig,
    DANetHeadConfig,
    ANNHeadConfig,
    NonLocalHeadConfig,
    DNLHeadConfig,
    APCNetHeadConfig,
]
HEAD_CONFIGS: dict[str, type] = {cls.kind: cls for cls in HeadConfig.__args__}  # type: ignore[attr-defined]
PEER_HEAD_CONFIGS: dict[str, type] = {kind: cls for kind, cls in HEAD_CONFIGS.items() if kind != "isnet"}


@dataclass(frozen=True)
class AuxConfig:
    """The FCN auxiliary head on layer3."""

    channels: int = 512
    dropout: float = 0.1


@dataclass(frozen=True)
class ModelConfig:
    num_classes: int
    backbone: BackboneConfig = field(default_factory=BackboneConfig)
    head: HeadConfig = field(default_factory=ISNetHeadConfig)
    aux: AuxConfig | None = field(default_factory=AuxConfig)

    def replace(self, **changes: Any) -> ModelConfig:
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["head"] = {"type": self.head.kind, **data["head"]}
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ModelConfig:
        """The inverse of :meth:`to_dict`; a head field of another head is a ``ValueError``."""
        head = dict(data.get("head", {}))
        kind = head.pop("type", "isnet")
        if kind not in HEAD_CONFIGS:
            raise ValueError(f"unknown head type {kind!r}: expected one of {', '.join(HEAD_CONFIGS)}")
        head_class = HEAD_CONFIGS[kind]
        allowed = {item.name for item in fields(head_class)}
        foreign = sorted(set(head) - allowed)
        if foreign:
            raise ValueError(f"head fields {', '.join(foreign)} do not belong to a {kind} head (its fields: {', '.join(sorted(allowed))})")
        head = {key: tuple(value) if isinstance(value, list) else value for key, value in head.items()}
        backbone = dict(data.get("backbone", {}))
        backbone.pop("checkpoint_activations", None)  # a runtime switch in files written before 0.2
        aux = data.get("aux", {})
        return cls(
            num_classes=int(data["num_classes"]),
            backbone=BackboneConfig(**backbone),
            head=head_class(**head),
            aux=None if aux is None else AuxConfig(**aux),
        )

    @classmethod
    def from_json(cls, text: str) -> ModelConfig:
        return cls.from_dict(json.loads(text))

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

from isnet.utils.json_text import load_json

@dataclass(frozen=True)
class BackboneConfig:
    """A dilated ResNet-V1c or ResNeSt."""

    type: str = "resnet"  # a family of isnet.model.backbones.BACKBONES: resnet (V1c) or resnest
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
class ILCMConfig:
    """ILCM, the image-level context module (eqs. 10–11): each pixel attends over ``repeat(G) ⊕ R``."""

    kind: ClassVar[str] = "ilcm"


@dataclass(frozen=True)
class ASPPContextConfig:
    """ASPP in ILCM's place: the image-level module of the released ISNet‡ models."""

    kind: ClassVar[str] = "aspp"
    dilations: tuple[int, ...] = (1, 12, 24, 36)


ImageContextConfig = Union[ILCMConfig, ASPPContextConfig]
IMAGE_CONTEXT_CONFIGS: dict[str, type] = {cls.kind: cls for cls in ImageContextConfig.__args__}  # type: ignore[attr-defined]


@dataclass(frozen=True)
class ShortcutConfig:
    """The layer1 shortcut of the released LIP models' decoder: a 1×1 CBR to ``channels``."""

    channels: int = 48


@dataclass(frozen=True)
class ISNetHeadConfig(_HeadConfig):
    """The ISNet head; its parts select the variant.

    ISNet: ``ILCMConfig()`` and SLCM; ISNet‡: ``ASPPContextConfig()`` and SLCM; Table 1
    ablations: baseline (``None``, no SLCM), ILCM only (``ILCMConfig()``, no SLCM), SLCM only
    (``None``, SLCM). A part that is absent has no settings to forget: ASPP's dilations live
    in its config, the shortcut's width in the shortcut's.
    """

    kind: ClassVar[str] = "isnet"
    transform_channels: int = 256  # T, of ILCM's and SLCM's attention
    image_context: ImageContextConfig | None = field(default_factory=ILCMConfig)
    semantic_context: bool = True
    shortcut: ShortcutConfig | None = None  # the layer1 shortcut of the released LIP models

    def __post_init__(self) -> None:
        if self.image_context is not None and not isinstance(self.image_context, tuple(IMAGE_CONTEXT_CONFIGS.values())):
            raise TypeError(f"image_context is {self.image_context!r}: give ILCMConfig(), ASPPContextConfig(dilations=...) or None")
        if self.shortcut is not None and not isinstance(self.shortcut, ShortcutConfig):
            raise TypeError(f"shortcut is {self.shortcut!r}: give ShortcutConfig(channels=...) or None")


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
        if isinstance(self.head, ISNetHeadConfig):  # the image-level module says which it is
            context = self.head.image_context
            data["head"]["image_context"] = None if context is None else {"type": context.kind, **asdict(context)}
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
        if head_class is ISNetHeadConfig:
            head = _isnet_head_parts(_isnet_head_before_0_3(head))
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
        return cls.from_dict(load_json(text))


def _isnet_head_before_0_3(head: dict[str, Any]) -> dict[str, Any]:
    """An ISNet head as files before 0.3 wrote it (``image_context`` a word beside a flat
    ``aspp_dilations``; ``shortcut`` a flag beside ``shortcut_channels``), in today's parts."""
    head = dict(head)
    if isinstance(head.get("image_context"), str):
        word, dilations = head.pop("image_context"), head.pop("aspp_dilations", None)
        if word not in (*IMAGE_CONTEXT_CONFIGS, "none"):
            raise ValueError(f"unknown image_context {word!r}: expected ilcm, aspp or none")
        head["image_context"] = None if word == "none" else {"type": word, **({"dilations": dilations} if word == "aspp" and dilations else {})}
    if isinstance(head.get("shortcut"), bool):
        channels = head.pop("shortcut_channels", ShortcutConfig.channels)
        head["shortcut"] = {"channels": channels} if head["shortcut"] else None
    return head


def _isnet_head_parts(head: dict[str, Any]) -> dict[str, Any]:
    """The nested parts of an ISNet head's dict as their configs; a field of another part is a ``ValueError``."""
    head = dict(head)
    context = head.get("image_context", {"type": ILCMConfig.kind})
    if context is not None:
        context = dict(context)
        word = context.pop("type", None)
        if word not in IMAGE_CONTEXT_CONFIGS:
            raise ValueError(f"unknown image_context type {word!r}: expected one of {', '.join(IMAGE_CONTEXT_CONFIGS)}")
        head["image_context"] = _part(IMAGE_CONTEXT_CONFIGS[word], context, f"a {word} image_context")
    if head.get("shortcut") is not None:
        head["shortcut"] = _part(ShortcutConfig, head["shortcut"], "the shortcut")
    return head


def _part(cls: type, values: dict[str, Any], what: str) -> Any:
    allowed = {item.name for item in fields(cls)}
    foreign = sorted(set(values) - allowed)
    if foreign:
        raise ValueError(f"fields {', '.join(foreign)} do not belong to {what} (its fields: {', '.join(sorted(allowed)) or 'none'})")
    return cls(**{key: tuple(value) if isinstance(value, list) else value for key, value in values.items()})

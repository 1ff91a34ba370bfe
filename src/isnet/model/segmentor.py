"""The segmentor: backbone → decode head (+ auxiliary head), and the model builder."""

from __future__ import annotations

from torch import Tensor, nn

from isnet.model.backbones import build_backbone
from isnet.model.config import (
    ASPPContextConfig,
    ILCMConfig,
    ISNetHeadConfig,
    ModelConfig,
)
from isnet.model.context.aspp import ASPP
from isnet.model.context.attention import SelfAttention
from isnet.model.context.ilcm import ImageLevelContext
from isnet.model.context.slcm import SemanticLevelContext
from isnet.model.heads.fcn import FCNAuxHead
from isnet.model.heads.isnet_head import ISNetHead, PlainDecoder, ShortcutDecoder
from isnet.model.heads.peers import build_peer_head


class Segmentor(nn.Module):
    """Backbone, decode head and optional auxiliary head.

    ``forward`` follows torchvision's convention: a dict with ``"out"`` (stage-2 logits) and,
    where the model has them, ``"stage1"`` and ``"aux"``. Logits stay at the head's
    resolution (stride 8 for the released models): the loss and the functions of
    :mod:`isnet.inference.engine` resize them, the latter with sliding-window and multi-scale +
    flip testing. :meth:`logits` skips the auxiliary head, which only serves training.
    """

    def __init__(
        self,
        backbone: nn.Module,
        head: nn.Module,
        aux_head: nn.Module | None = None,
        *,
        config: ModelConfig | None = None,
    ) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.aux_head = aux_head
        self.config = config  # what build_model was given; saved with the weights
        # The dataset record of the weights (classes, palette, test protocol), when known:
        # set by create_model from a preset, and read back from our checkpoints.
        self.dataset = None

    def set_grad_checkpointing(self, enable: bool = True) -> Segmentor:
        """Recompute the backbone's activations in the backward pass instead of storing them.

        Less memory for large training crops, for about one more backbone forward of time;
        the results are the same. A runtime switch, not part of the configuration.
        """
        self.backbone.set_grad_checkpointing(enable)
        return self

    def exportable(self, explicit_attention: bool = True) -> Segmentor:
        """Choose kernels an exported graph can hold: attention as matrix products and a softmax
        (ONNX has no fused attention operator; its exporter then takes the queries a block at a
        time), or the fused kernel for ``False``. The results are the same; a runtime switch, like
        :meth:`set_grad_checkpointing`."""
        for module in self.modules():
            if isinstance(module, SelfAttention):
                module.explicit_attention = explicit_attention
        return self

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.backbone(images)
        outputs = self.head(features)
        if self.aux_head is not None:
            outputs["aux"] = self.aux_head(features)
        return outputs

    def logits(self, images: Tensor) -> Tensor:
        """Stage-2 logits at the head's resolution, for inference."""
        return self.head(self.backbone(images))["out"]


def build_head(config: ModelConfig, stage_channels: list[int]) -> nn.Module:
    head = config.head
    if not isinstance(head, ISNetHeadConfig):
        return build_peer_head(head, stage_channels, config.num_classes)
    channels, transform = head.channels, head.transform_channels
    if isinstance(head.image_context, ILCMConfig):
        image_context: nn.Module = ImageLevelContext(channels, transform)
    elif isinstance(head.image_context, ASPPContextConfig):
        image_context = ASPP(channels, channels, head.image_context.dilations)
    else:
        image_context = nn.Identity()  # R_il = R
    semantic_context = SemanticLevelContext(channels, transform) if head.semantic_context else None
    if head.shortcut is not None:
        decoder: nn.Module = ShortcutDecoder(
            channels,
            config.num_classes,
            low_level_channels=stage_channels[0],
            shortcut_channels=head.shortcut.channels,
            dropout=head.dropout,
        )
    else:
        decoder = PlainDecoder(channels, config.num_classes, head.dropout)
    return ISNetHead(
        stage_channels[-1],
        channels,
        config.num_classes,
        image_context=image_context,
        semantic_context=semantic_context,
        decoder=decoder,
        dropout=head.dropout,
    )


def build_model(config: ModelConfig) -> Segmentor:
    """Build an ISNet (or a variant) from its configuration, randomly initialised.

    Binary segmentation is two classes (background, foreground) with the softmax cross-entropy,
    which is exactly sigmoid + binary cross-entropy on the difference of the two logits; one
    class is refused, since SLCM forms its class regions from the argmax of the stage-1
    prediction over the classes, and one class leaves nothing to partition.
    """
    if config.num_classes < 2:
        raise ValueError(
            f"num_classes {config.num_classes}: a segmentation model needs at least 2 classes; for binary "
            "segmentation use two (background, foreground): the 2-class softmax is the cross-entropy "
            "equivalent of one sigmoid logit, and SLCM needs the argmax over classes to form its regions"
        )
    backbone = build_backbone(config.backbone)
    stage_channels = [info.channels for info in backbone.feature_info]
    aux_head = None
    if config.aux is not None:
        aux_head = FCNAuxHead(stage_channels[2], config.aux.channels, config.num_classes, config.aux.dropout)
    return Segmentor(backbone, build_head(config, stage_channels), aux_head, config=config)

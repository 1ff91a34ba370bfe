"""The baseline: ISNet computed the way the authors' implementation computes it.

A restatement of the published forward pass (sssegmentation's ``ISNet``,
``ImageLevelContext``, ``SemanticLevelContext`` and mmseg's ``SelfAttentionBlock``) over the
weights of one of our models, so both sides of a benchmark hold the same parameters:

- SLCM loops in Python over the images and the classes; ``if mask.sum() == 0`` is a host
  sync per class on a GPU;
- attention materialises ``QKᵀ`` (HW×HW), scales it into a second HW×HW tensor and
  softmaxes it into a third, then multiplies by ``V``;
- float32, contiguous (NCHW) tensors, the stock (unfolded) BatchNorm.

The backbone is the same network in both (ours is the open-mmlab ResNet the authors use).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def published_attention(block: nn.Module, query_feats: Tensor, key_feats: Tensor, value_feats: Tensor) -> Tensor:
    """mmseg's ``SelfAttentionBlock.forward`` on the projections of our ``SelfAttention`` ``block``."""
    batch_size = query_feats.size(0)
    transform_channels = block.out_project[0].in_channels
    query = block.query_project(query_feats)
    query = query.reshape(*query.shape[:2], -1).permute(0, 2, 1).contiguous()
    key = block.key_project(key_feats)
    key = key.reshape(*key.shape[:2], -1)
    value = block.value_project(value_feats)
    value = value.reshape(*value.shape[:2], -1).permute(0, 2, 1).contiguous()
    sim_map = torch.matmul(query, key)
    sim_map = (transform_channels**-0.5) * sim_map
    sim_map = F.softmax(sim_map, dim=-1)
    context = torch.matmul(sim_map, value)
    context = context.permute(0, 2, 1).contiguous()
    context = context.reshape(batch_size, -1, *query_feats.shape[2:])
    return block.out_project(context)


def published_region_map(x: Tensor, preds: Tensor) -> Tensor:
    """The per-image, per-class loop of the published ``SemanticLevelContext.forward``."""
    batch_size, num_channels, h, w = x.size()
    num_classes = preds.size(1)
    feats_sl = torch.zeros(batch_size, h * w, num_channels).type_as(x)
    if x.device.type == "meta":  # FLOP counting on shapes only: the loop has no matrix products
        return feats_sl.permute(0, 2, 1).reshape(batch_size, num_channels, h, w)
    for batch_idx in range(batch_size):
        feats_iter, preds_iter = x[batch_idx], preds[batch_idx]
        feats_iter, preds_iter = feats_iter.reshape(num_channels, -1), preds_iter.reshape(num_classes, -1)
        feats_iter, preds_iter = feats_iter.permute(1, 0), preds_iter.permute(1, 0)
        argmax = preds_iter.argmax(1)
        for clsid in range(num_classes):
            mask = argmax == clsid
            if mask.sum() == 0:
                continue
            feats_iter_cls = feats_iter[mask]
            preds_iter_cls = preds_iter[:, clsid][mask]
            weight = F.softmax(preds_iter_cls, dim=0)
            feats_iter_cls = feats_iter_cls * weight.unsqueeze(-1)
            feats_iter_cls = feats_iter_cls.sum(0)
            feats_sl[batch_idx][mask] = feats_iter_cls
    feats_sl = feats_sl.reshape(batch_size, h, w, num_channels)
    return feats_sl.permute(0, 3, 1, 2).contiguous()


def published_slcm(slcm: nn.Module, x: Tensor, preds: Tensor, feats_il: Tensor) -> Tensor:
    """``SemanticLevelContext.forward``: region map, attention, fusion with ``R_il``."""
    feats_sl = published_region_map(x, preds)
    feats_sl = published_attention(slcm.attention, x, feats_sl, feats_sl)
    return slcm.fuse(torch.cat([feats_il, feats_sl], dim=1))


def published_ilcm(ilcm: nn.Module, x: Tensor) -> Tensor:
    """``ImageLevelContext.forward``: global average, attention over [g, R], fusion."""
    x_global = F.adaptive_avg_pool2d(x, 1)
    x_global = F.interpolate(x_global, size=x.size()[2:], mode="bilinear", align_corners=False)
    feats_il = published_attention(ilcm.attention, x, torch.cat([x_global, x], dim=1), torch.cat([x_global, x], dim=1))
    return ilcm.fuse(torch.cat([x, feats_il], dim=1))


class PublishedISNet(nn.Module):
    """The published ISNet forward over the modules (and so the weights) of ``model``.

    ``model`` is one of our ISNet segmentors (ILCM + SLCM head); nothing is copied, so the
    baseline always computes with the model's current parameters. Returns the same dict as
    our model: ``out``, ``stage1`` and, with an auxiliary head, ``aux``.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.config = getattr(model, "config", None)
        self.train(model.training)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        backbone_outputs = self.model.backbone(images)
        head = self.model.head
        feats = head.bottleneck(backbone_outputs[-1])
        feats_il = published_ilcm(head.image_context, feats)
        preds_stage1 = head.classifier_stage1(feats)
        preds = preds_stage1
        if preds.shape[2:] != feats.shape[2:]:
            preds = F.interpolate(preds, size=feats.shape[2:], mode="bilinear", align_corners=False)
        feats_sl = published_slcm(head.semantic_context, feats, preds, feats_il)
        outputs = {"out": head.decoder(feats_sl, backbone_outputs[0]), "stage1": preds_stage1}
        if self.model.aux_head is not None and self.training:
            outputs["aux"] = self.model.aux_head(backbone_outputs)
        return outputs

    @torch.no_grad()
    def logits(self, images: Tensor) -> Tensor:
        return self(images)["out"]

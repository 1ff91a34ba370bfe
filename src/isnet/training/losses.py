"""The training objective: weighted cross-entropy over the model's outputs (paper eqs. 17–20)."""

from __future__ import annotations

from collections.abc import Callable, Mapping

import torch.nn.functional as F
from torch import Tensor

from isnet.data.base import IGNORE_INDEX

# Eq. (20): L = α·L_D + L_O with α = 0.4 (stage-1 D, eqs. 17–18; output O, eq. 19); "aux", the
# FCN head on layer3, is the term the released models add beside them.
DEFAULT_LOSS_WEIGHTS: dict[str, float] = {"aux": 0.4, "stage1": 0.4, "out": 1.0}


def segmentation_loss(
    outputs: Mapping[str, Tensor],
    target: Tensor,
    *,
    weights: Mapping[str, float] = DEFAULT_LOSS_WEIGHTS,
    ignore_index: int = IGNORE_INDEX,
    class_weights: Tensor | None = None,
    criterion: Callable[[Tensor, Tensor, Tensor | None, int], Tensor] | None = None,
) -> dict[str, Tensor]:
    """Cross-entropy on each output, upsampled to the label size, and their weighted sum.

    Returns the per-output losses under the outputs' names and their weighted sum under
    ``"total"``. Outputs without a weight are not part of the objective. ``class_weights``
    (K values) weigh each pixel's term by its class, for imbalanced data. ``criterion``
    replaces the cross-entropy (``--loss``, :func:`isnet.training.loss_terms.loss_criterion`).
    """
    losses: dict[str, Tensor] = {}
    for name, logits in outputs.items():
        if name not in weights:
            continue
        if logits.shape[2:] != target.shape[1:]:
            logits = F.interpolate(logits, size=target.shape[1:], mode="bilinear", align_corners=False)
        if criterion is not None:
            losses[name] = criterion(logits.float(), target, class_weights, ignore_index)
            continue
        losses[name] = F.cross_entropy(logits.float(), target, weight=class_weights, ignore_index=ignore_index)
    losses["total"] = sum(weights[name] * loss for name, loss in losses.items())
    return losses

"""Inference protocols: whole image, sliding window, multi-scale + flip.

All functions take normalised images (N, 3, H, W) and return per-class scores at the input
size, (N, K, H, W): logits, or probabilities where ``probs_before_resize`` asks for them.
The model is called through ``model.logits`` (stage-2 logits at the head's resolution).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _scores(logits: Tensor, size: Sequence[int], probs_before_resize: bool) -> Tensor:
    if probs_before_resize:
        logits = logits.softmax(dim=1)
    return _resize(logits, size)


@torch.no_grad()
def whole_inference(
    model: nn.Module,
    images: Tensor,
    *,
    probs_before_resize: bool = False,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    """Predict the whole image at once; resize the scores to ``output_size`` (default: the input's).

    The resize goes straight from the head's resolution to ``output_size``, as the released
    multi-scale protocol does (resizing through the scaled image's size differs by ~1e-4).
    """
    size = images.shape[2:] if output_size is None else output_size
    return _scores(model.logits(images), size, probs_before_resize)


def sliding_windows(height: int, width: int, crop: Sequence[int], stride: Sequence[int]) -> list[tuple[int, int, int, int]]:
    """Windows ``(top, bottom, left, right)`` covering the image, as in the released protocol.

    ``max(size − crop + stride − 1, 0) // stride + 1`` windows per axis; window i starts at
    ``i·stride``, is clipped to the image and shifted back to be ``crop`` long where the
    image allows.
    """

    def starts(size: int, crop_size: int, step: int) -> list[tuple[int, int]]:
        count = max(size - crop_size + step - 1, 0) // step + 1
        spans = []
        for i in range(count):
            end = min(i * step + crop_size, size)
            spans.append((max(end - crop_size, 0), end))
        return spans

    return [
        (top, bottom, left, right)
        for top, bottom in starts(height, crop[0], stride[0])
        for left, right in starts(width, crop[1], stride[1])
    ]


@torch.no_grad()
def slide_inference(
    model: nn.Module,
    images: Tensor,
    *,
    crop: Sequence[int],
    stride: Sequence[int],
    probs_before_resize: bool = False,
    max_batch: int = 8,
) -> Tensor:
    """Average the scores of overlapping windows; all windows have one size, so they run batched."""
    batch, _, height, width = images.shape
    windows = sliding_windows(height, width, crop, stride)
    scores: Tensor | None = None
    count = images.new_zeros(1, 1, height, width)
    for first in range(0, len(windows), max_batch):
        group = windows[first : first + max_batch]
        crops = torch.cat([images[:, :, t:b, l:r] for t, b, l, r in group])
        window_size = crops.shape[2:]
        window_scores = _scores(model.logits(crops), window_size, probs_before_resize)
        if scores is None:
            scores = images.new_zeros(batch, window_scores.shape[1], height, width)
        for index, (t, b, l, r) in enumerate(group):
            scores[:, :, t:b, l:r] += window_scores[index * batch : (index + 1) * batch]
            count[:, :, t:b, l:r] += 1
    assert scores is not None
    return scores / count


@dataclass(frozen=True)
class InferenceConfig:
    """How to predict: mode, window, scales, flip.

    The released protocols: single scale = whole image; ms + flip = scales
    (0.5, 0.75, 1.0, 1.25, 1.5, 1.75) with flip and probabilities before resize (whole
    image for ADE20K / COCO-Stuff, sliding 512×1024 windows with stride 341 for Cityscapes);
    LIP: flip only, with its left/right pairs.
    """

    mode: str = "whole"  # or "slide"
    crop: tuple[int, int] = (512, 512)
    stride: tuple[int, int] = (341, 341)
    scales: tuple[float, ...] = (1.0,)
    flip: bool = False
    flip_pairs: tuple[tuple[int, int], ...] = ()
    probs_before_resize: bool = False


MS_SCALES = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)


def _predict_one_scale(model: nn.Module, images: Tensor, config: InferenceConfig, size: Sequence[int]) -> Tensor:
    if config.mode == "whole":
        return whole_inference(model, images, probs_before_resize=config.probs_before_resize, output_size=size)
    if config.mode == "slide":
        scores = slide_inference(
            model, images, crop=config.crop, stride=config.stride, probs_before_resize=config.probs_before_resize
        )
        return _resize(scores, size)
    raise ValueError(f"unknown inference mode {config.mode!r}: expected 'whole' or 'slide'")


def swap_flip_pairs(scores: Tensor, pairs: Sequence[tuple[int, int]]) -> Tensor:
    """Exchange the channels of left/right class pairs (for predictions of flipped images)."""
    if not pairs:
        return scores
    order = list(range(scores.shape[1]))
    for a, b in pairs:
        order[a], order[b] = b, a
    return scores[:, order]


@torch.no_grad()
def predict(model: nn.Module, images: Tensor, config: InferenceConfig = InferenceConfig()) -> Tensor:
    """Scores at the input size, averaged over the configured scales and flips.

    Each scale resizes the image with ``F.interpolate(scale_factor=s)`` semantics (output
    size ⌊s·H⌋, sampling positions from s itself). With ``flip``, the image and its mirror
    run as one batch; the mirror's scores have their left/right class pairs swapped and are
    flipped back.
    """
    batch, _, height, width = images.shape
    total: Tensor | None = None
    num_predictions = 0
    for scale in config.scales:
        scaled = images
        if scale != 1.0:
            scaled = F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
        if config.flip:
            scaled = torch.cat([scaled, scaled.flip(-1)])
        scores = _predict_one_scale(model, scaled, config, (height, width))
        if config.flip:
            plain, mirrored = scores[:batch], scores[batch:]
            scores = plain + swap_flip_pairs(mirrored, config.flip_pairs).flip(-1)
        total = scores if total is None else total + scores
        num_predictions += 2 if config.flip else 1
    assert total is not None
    return total / num_predictions


@torch.no_grad()
def predict_labels(model: nn.Module, images: Tensor, config: InferenceConfig = InferenceConfig()) -> Tensor:
    """Label map (N, H, W) at the input size."""
    return predict(model, images, config).argmax(dim=1)

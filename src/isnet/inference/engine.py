"""Inference protocols: whole image, sliding window, multi-scale + flip.

All functions take normalised images (N, 3, H, W) and return per-class scores at the input
size, (N, K, H, W): logits, or probabilities where ``probs_before_resize`` asks for them.
The model is called through ``model.logits`` (stage-2 logits at the head's resolution).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def _resize(x: Tensor, size: Sequence[int]) -> Tensor:
    if tuple(x.shape[2:]) == tuple(size):
        return x
    return F.interpolate(x, size=tuple(size), mode="bilinear", align_corners=False)


def _scores(logits: Tensor, size: Sequence[int], probs_before_resize: bool) -> Tensor:
    """A whole image's scores: softmaxed at the head's resolution (where asked), then resized."""
    if probs_before_resize:
        logits = logits.softmax(dim=1)
    return _resize(logits, size)


def _window_scores(logits: Tensor, size: Sequence[int], probs_before_resize: bool) -> Tensor:
    """A window's scores: its logits resized to the crop, then softmaxed (where asked).

    The order of the released sliding-window protocol (sssegmentation,
    ``ssseg/modules/models/segmentors/base/base.py``, ``BaseSegmentor.inference``): each
    crop's logits are interpolated to the crop's size before the softmax, unlike a whole
    image's, whose softmax comes first.
    """
    scores = _resize(logits, size)
    return scores.softmax(dim=1) if probs_before_resize else scores


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


class _ViewScores:
    """Window scores of one view (a scaled, possibly mirrored copy of the batch) as they arrive."""

    def __init__(self, images: Tensor, crop: Sequence[int], stride: Sequence[int]) -> None:
        self.images = images
        self.windows = sliding_windows(*images.shape[2:], crop, stride)
        self.remaining = len(self.windows)
        self.scores: Tensor | None = None
        self.count = images.new_zeros(1, 1, *images.shape[2:])

    def add(self, window: tuple[int, int, int, int], scores: Tensor) -> None:
        t, b, l, r = window
        if self.scores is None:
            self.scores = self.images.new_zeros(self.images.shape[0], scores.shape[1], *self.images.shape[2:])
        self.scores[:, :, t:b, l:r] += scores
        self.count[:, :, t:b, l:r] += 1
        self.remaining -= 1

    def average(self) -> Tensor:
        assert self.scores is not None and self.remaining == 0
        return self.scores / self.count


@torch.no_grad()
def slide_views(
    model: nn.Module,
    views: Iterable[Tensor],
    *,
    crop: Sequence[int],
    stride: Sequence[int],
    probs_before_resize: bool = False,
    max_batch: int = 8,
) -> Iterator[Tensor]:
    """Sliding-window scores of each view, in order, with the windows of all views batched together.

    Every window is ``crop`` sized unless its view is smaller than the crop, so windows of
    consecutive views (the scales of multi-scale inference) share model calls of up to
    ``max_batch`` windows; a call takes windows of one size only. ``views`` is consumed
    lazily and each view's scores are yielded as soon as its last window is done, so only
    the views a batch spans are held at once.
    """
    batch: list[tuple[_ViewScores, tuple[int, int, int, int]]] = []
    waiting: list[_ViewScores] = []  # views with windows in flight, in order

    def run() -> Iterator[Tensor]:
        crops = torch.cat([view.images[:, :, t:b, l:r] for view, (t, b, l, r) in batch])
        window_scores = _window_scores(model.logits(crops), crops.shape[2:], probs_before_resize)
        for scores, (view, window) in zip(window_scores.chunk(len(batch)), batch):
            view.add(window, scores)
        batch.clear()
        while waiting and waiting[0].remaining == 0:
            yield waiting.pop(0).average()

    for images in views:
        view = _ViewScores(images, crop, stride)
        waiting.append(view)
        for window in view.windows:
            t, b, l, r = window
            if batch:
                bt, bb, bl, br = batch[0][1]
                if len(batch) == max_batch or (b - t, r - l) != (bb - bt, br - bl):
                    yield from run()
            batch.append((view, window))
    if batch:
        yield from run()


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
    views = slide_views(
        model, [images], crop=crop, stride=stride, probs_before_resize=probs_before_resize, max_batch=max_batch
    )
    return next(iter(views))


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


def _views(images: Tensor, config: InferenceConfig) -> Iterator[Tensor]:
    """The batch at each scale, with its mirror appended when flipping (made one at a time)."""
    for scale in config.scales:
        scaled = images
        height, width = images.shape[-2:]
        if math.floor(scale * min(height, width)) < 1:  # F.interpolate's size is ⌊s·H⌋ × ⌊s·W⌋
            raise ValueError(f"a {height}×{width} image at scale {scale} would be "
                             f"{math.floor(scale * height)}×{math.floor(scale * width)} pixels; "
                             f"leave out scales below {1 / min(height, width):.3g} for it")
        if scale != 1.0:
            scaled = F.interpolate(images, scale_factor=scale, mode="bilinear", align_corners=False)
        yield torch.cat([scaled, scaled.flip(-1)]) if config.flip else scaled


def _view_scores(model: nn.Module, images: Tensor, config: InferenceConfig, size: Sequence[int]) -> Iterator[Tensor]:
    """Each view's scores at ``size``, in scale order, each resized once to it (as the released tester does)."""
    views = _views(images, config)
    if config.mode == "whole":
        for view in views:
            yield whole_inference(model, view, probs_before_resize=config.probs_before_resize, output_size=size)
    elif config.mode == "slide":
        slide = slide_views(
            model, views, crop=config.crop, stride=config.stride, probs_before_resize=config.probs_before_resize
        )
        for scores in slide:
            yield _resize(scores, size)
    else:
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
def predict(
    model: nn.Module,
    images: Tensor,
    config: InferenceConfig = InferenceConfig(),
    *,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    """Scores at ``output_size`` (default: the input's), averaged over the configured scales and flips.

    Each view's scores are resized straight to ``output_size``: for an image resized before
    inference (a fit resize), pass its label's size and the scores go from the head's
    resolution (whole image) or the scaled image's (sliding windows) to the label in one
    interpolation, as the released tester (sssegmentation ``ssseg/test.py``) does, rather
    than back through the resized image's size first.

    Each scale resizes the image with ``F.interpolate(scale_factor=s)`` semantics (output
    size ⌊s·H⌋, sampling positions from s itself). With ``flip``, the image and its mirror
    run as one batch; the mirror's scores have their left/right class pairs swapped and are
    flipped back. In ``"slide"`` mode the windows of all scales share batches
    (:func:`slide_views`). Whole images of different scales differ in size and run one
    scale at a time: padding them to one size would change what the model sees.
    """
    batch = images.shape[0]
    total: Tensor | None = None
    num_predictions = 0
    size = images.shape[2:] if output_size is None else tuple(output_size)
    for scores in _view_scores(model, images, config, size):
        if config.flip:
            plain, mirrored = scores[:batch], scores[batch:]
            scores = plain + swap_flip_pairs(mirrored, config.flip_pairs).flip(-1)
        total = scores if total is None else total + scores
        num_predictions += 2 if config.flip else 1
    assert total is not None
    return total / num_predictions


@torch.no_grad()
def predict_labels(
    model: nn.Module,
    images: Tensor,
    config: InferenceConfig = InferenceConfig(),
    *,
    output_size: Sequence[int] | None = None,
) -> Tensor:
    """Label map (N, H, W) at ``output_size`` (default: the input's), on the images' device.

    The images are moved to the model's device (a GPU, say) for the prediction.
    """
    parameter = next(model.parameters(), None) if isinstance(model, nn.Module) else None
    device = images.device if parameter is None else parameter.device
    return predict(model, images.to(device), config, output_size=output_size).argmax(dim=1).to(images.device)

"""Sliding-window inference of images too large to hold: a band of rows at a time.

:func:`stream_slide` runs the windows of :func:`~isnet.inference.engine.sliding_windows`
in their order, batched as :func:`~isnet.inference.engine.slide_views` batches them, and
yields the final scores of each band of rows as soon as no later window reaches it. What it
holds is the input rows the pending windows need and the K-channel sums of the rows not yet
final: about one window's height times the image's width, whatever the image's height, and
never the whole image's logits. With ``blend="mean"`` the windows are averaged as the
released sliding-window protocol averages them, so the scores are those of
``predict(model, image, InferenceConfig(mode="slide", ...))`` to the bit.

``blend="cosine"`` weighs each window by a separable raised-cosine (Hann) ramp,
``sin²(π (i + ½) / n)`` along each side, so a window's borders, where the network saw the
least context, count least, and seams between windows fade instead of stepping. The weight
is never zero, so pixels at the image's edge that one window covers keep that window's scores.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from isnet.inference.engine import _scores, sliding_windows

BLENDS = ("mean", "cosine")


def ramp(length: int) -> Tensor:
    """The raised-cosine weights of one window side: ``sin²(π (i + ½) / length)``, all > 0."""
    positions = (torch.arange(length, dtype=torch.float64) + 0.5) / length
    return torch.sin(math.pi * positions).pow(2).float()


class _Band:
    """Sums of window scores (and of their weights) over rows ``top .. top + rows`` of the full width.

    The buffers are allocated once, as tall as the rows pending at once (a window's height
    and a stride or so), and reused: finished rows are handed out and the rest moved up.
    """

    def __init__(self, width: int) -> None:
        self.top, self.rows, self.width = 0, 0, width
        self.scores: Tensor | None = None
        self.weights: Tensor | None = None

    def _reach(self, bottom: int, like: Tensor) -> None:
        """Make rows down to ``bottom`` available, zeroed where no window has been yet."""
        need = bottom - self.top
        if self.scores is None or need > self.scores.shape[1]:
            scores, weights = like.new_zeros(like.shape[0], need, self.width), like.new_zeros(1, need, self.width)
            if self.scores is not None:
                scores[:, : self.rows], weights[:, : self.rows] = self.scores[:, : self.rows], self.weights[:, : self.rows]
            self.scores, self.weights = scores, weights
        if need > self.rows:
            self.scores[:, self.rows:need] = 0
            self.weights[:, self.rows:need] = 0
            self.rows = need

    def add(self, window: tuple[int, int, int, int], scores: Tensor, weight: Tensor | None) -> None:
        t, b, l, r = window
        self._reach(b, scores)
        rows = slice(t - self.top, b - self.top)
        if weight is None:  # the plain average, exactly as slide_views sums and counts
            self.scores[:, rows, l:r] += scores
            self.weights[:, rows, l:r] += 1
        else:
            self.scores[:, rows, l:r] += scores * weight
            self.weights[:, rows, l:r] += weight

    def release(self, stop: int) -> Tensor:
        """The averaged scores of rows ``top .. stop`` (K, n, W); the rows below move up."""
        n = stop - self.top
        final = self.scores[:, :n] / self.weights[:, :n]
        rest = self.rows - n
        self.scores[:, :rest] = self.scores[:, n:self.rows].clone()
        self.weights[:, :rest] = self.weights[:, n:self.rows].clone()
        self.top, self.rows = stop, rest
        return final


def _run_batch(model: nn.Module, batch: list[tuple[int, int, int, int]], pixels: Tensor, pixels_top: int, band: _Band,
               weight: Tensor | None, probs_before_resize: bool) -> None:
    """One model call on a batch of windows, added into ``band`` (a function, so that its K-channel
    window scores are let go before the next call allocates its own)."""
    crops = torch.stack([pixels[:, t - pixels_top:b - pixels_top, l:r] for t, b, l, r in batch])
    window_scores = _scores(model.logits(crops), crops.shape[2:], probs_before_resize)
    for scores, window in zip(window_scores.chunk(len(batch)), batch):
        band.add(window, scores[0], weight)


@torch.no_grad()
def stream_slide(
    model: nn.Module,
    height: int,
    width: int,
    read_rows: Callable[[int, int], Tensor],
    *,
    crop: Sequence[int],
    stride: Sequence[int],
    blend: str = "mean",
    probs_before_resize: bool = False,
    max_batch: int = 8,
) -> Iterator[tuple[int, Tensor]]:
    """``(top, scores)`` for consecutive bands of rows: (K, n, W) scores of rows ``top .. top + n``.

    ``read_rows(start, stop)`` gives the normalised rows ``start .. stop`` of the image as a
    (3, n, W) tensor on the model's device; its ``start`` and ``stop`` never decrease.
    The bands cover the image, top to bottom, each once.
    """
    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r}: expected one of {', '.join(BLENDS)}")
    windows = sliding_windows(height, width, crop, stride)
    band = _Band(width)
    pixels: Tensor | None = None
    pixels_top = 0
    weights: dict[tuple[int, int], Tensor] = {}
    start = 0
    while start < len(windows):
        batch = [windows[start]]
        size = (windows[start][1] - windows[start][0], windows[start][3] - windows[start][2])
        while len(batch) < max_batch and start + len(batch) < len(windows):
            t, b, l, r = windows[start + len(batch)]
            if (b - t, r - l) != size:
                break
            batch.append((t, b, l, r))
        start += len(batch)
        bottom = max(window[1] for window in batch)
        first = batch[0][0]  # windows come in rows: this batch's first top is the least any later window needs
        if pixels is None:
            pixels, pixels_top = read_rows(0, bottom), 0
        else:
            keep = pixels[:, first - pixels_top:]
            fetched = pixels_top + pixels.shape[1]
            pixels = torch.cat([keep, read_rows(fetched, bottom)], 1) if bottom > fetched else keep
            pixels_top = first
        if blend == "cosine" and size not in weights:
            weights[size] = (ramp(size[0])[:, None] * ramp(size[1])[None, :]).to(pixels.device)
        _run_batch(model, batch, pixels, pixels_top, band, weights.get(size), probs_before_resize)
        final = windows[start][0] if start < len(windows) else height  # no later window reaches above this row
        if final > band.top:
            top = band.top
            yield top, band.release(final)

"""Sliding-window inference of images too large to hold, keeping K-channel sums only where still pending.

:func:`stream_slide` runs the windows of :func:`~isnet.inference.engine.sliding_windows` in
their order, batched as :func:`~isnet.inference.engine.slide_views` batches them (up to
``max_batch`` consecutive windows a model call). The windows' edges cut the image into a
grid of cells (row edges at every window's top and bottom, column edges at every window's
left and right): all pixels of a cell are covered by the same windows, so a cell is final
once the last of them has been added. K-channel sums are kept only for the cells that a
window has reached and that are not final yet; a final cell is averaged, handed to the
caller's ``reduce`` (labels and confidences: bytes a pixel, not K floats) and its sums let
go; each band of rows is yielded, reduced, once all its cells are final.

What is held of K-channel sums, with windows of ``crop`` = (c_h, c_w) every ``stride`` =
(s_h, s_w) over a W-wide image, is then at most

    K × (O × W + (max_batch + 1) × c_h × c_w) floats,

where O is the most rows two consecutive window rows share: the vertical overlap c_h − s_h
between all rows but the last, and for the last window row, which is shifted up to end at the
image's bottom, c_h − ((H − c_h) − (n − 2)·s_h) with n window rows (from c_h − s_h to c_h − 1:
at most sizes, the last two window rows are where the peak is). O × W is the processing
front: the overlap rows a window row has reached and the next has not yet (in row-major
order, which the batches fix, they wait for the whole window row to pass); the rest is the
horizontal overlap of the current window and the windows of one batch. The
previous band design held K × (c_h + s_h) × W. The model call itself holds its batch's window
scores (max_batch × K × c_h × c_w) as any sliding-window inference does, and the caller the
input rows the pending windows need (3 × about c_h + s_h rows × W) and the reduced cells of
the bands not yet complete.

With ``blend="mean"`` every pixel's sum takes the same window scores in the same order and
is divided by the same count as the released sliding-window protocol does, so the scores
are those of ``predict(model, image, InferenceConfig(mode="slide", ...))`` to the bit.
``blend="cosine"`` weighs each window by a separable raised-cosine (Hann) ramp,
``sin²(π (i + ½) / n)`` along each side, so a window's borders, where the network saw the
least context, count least, and seams between windows fade instead of stepping. The weight
is never zero, so pixels at the image's edge that one window covers keep that window's scores.
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence

import torch
from torch import Tensor, nn

from isnet.inference.engine import _scores, sliding_windows

Window = tuple[int, int, int, int]  # top, bottom, left, right
Reduce = Callable[[Tensor], tuple[Tensor, ...]]

BLENDS = ("mean", "cosine")


def ramp(length: int) -> Tensor:
    """The raised-cosine weights of one window side: ``sin²(π (i + ½) / length)``, all > 0."""
    positions = (torch.arange(length, dtype=torch.float64) + 0.5) / length
    return torch.sin(math.pi * positions).pow(2).float()




class _Cells:
    """The grid that the windows' edges cut the image into, and the cells each window makes final.

    ``spans[i]`` is the range of row bands and of column bands window ``i`` covers;
    ``final_after[i]`` the cells whose last window is ``i``.
    """

    def __init__(self, windows: Sequence[Window], height: int, width: int) -> None:
        self.rows = sorted({0, height, *(w[0] for w in windows), *(w[1] for w in windows)})
        self.columns = sorted({0, width, *(w[2] for w in windows), *(w[3] for w in windows)})
        self.spans = [(bisect_left(self.rows, t), bisect_left(self.rows, b),
                       bisect_left(self.columns, l), bisect_left(self.columns, r)) for t, b, l, r in windows]
        last: dict[tuple[int, int], int] = {}
        for index, (top, bottom, left, right) in enumerate(self.spans):
            for band in range(top, bottom):
                for column in range(left, right):
                    last[band, column] = index
        self.final_after: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for cell, index in last.items():
            self.final_after[index].append(cell)


class _PendingCells:
    """K-channel sums of window scores (and of their weights) for the cells reached and not yet final.

    A final cell is averaged and reduced at once; the reduced cells wait, per band of rows,
    until the band is complete.
    """

    def __init__(self, cells: _Cells, reduce: Reduce) -> None:
        self.cells, self.reduce = cells, reduce
        self.sums: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        self.reduced: dict[int, dict[int, tuple[Tensor, ...]]] = defaultdict(dict)
        self.next_band = 0  # the first band of rows not yet yielded

    def add(self, index: int, window: Window, scores: Tensor, weight: Tensor | None) -> None:
        top, bottom, left, right = self.cells.spans[index]
        rows, columns = self.cells.rows, self.cells.columns
        for band in range(top, bottom):
            in_rows = slice(rows[band] - window[0], rows[band + 1] - window[0])
            for column in range(left, right):
                in_columns = slice(columns[column] - window[2], columns[column + 1] - window[2])
                part = scores[:, in_rows, in_columns]
                if (band, column) not in self.sums:
                    self.sums[band, column] = part.new_zeros(part.shape), part.new_zeros(1, *part.shape[1:])
                total, weights = self.sums[band, column]
                if weight is None:  # the plain average, exactly as slide_views sums and counts
                    total += part
                    weights += 1
                else:
                    total += part * weight[in_rows, in_columns]
                    weights += weight[in_rows, in_columns]

    def finish(self, index: int) -> None:
        """Average and reduce the cells that window ``index`` was the last to reach; let their sums go."""
        for band, column in self.cells.final_after[index]:
            total, weights = self.sums.pop((band, column))
            self.reduced[band][column] = self.reduce(total / weights)

    def complete_bands(self) -> Iterator[tuple[int, tuple[Tensor, ...]]]:
        """``(top, reduced rows)`` of each band of rows whose cells are all final, top to bottom, each once."""
        columns = len(self.cells.columns) - 1
        while len(self.reduced.get(self.next_band, ())) == columns:
            parts = self.reduced.pop(self.next_band)
            rows = tuple(torch.cat(pieces, -1) for pieces in zip(*(parts[c] for c in range(columns))))
            yield self.cells.rows[self.next_band], rows
            self.next_band += 1


def _run_batch(model: nn.Module, batch: Sequence[tuple[int, Window]], pixels: Tensor, pixels_top: int,
               pending: _PendingCells, weight: Tensor | None, probs_before_resize: bool) -> None:
    """One model call on a batch of ``(index, window)``, added into ``pending`` (a function, so that its
    K-channel window scores are let go before the next call allocates its own)."""
    crops = torch.stack([pixels[:, t - pixels_top:b - pixels_top, l:r] for _, (t, b, l, r) in batch])
    window_scores = _scores(model.logits(crops), crops.shape[2:], probs_before_resize)
    for scores, (index, window) in zip(window_scores.chunk(len(batch)), batch):
        pending.add(index, window, scores[0], weight)
    for index, _ in batch:
        pending.finish(index)


def _whole(scores: Tensor) -> tuple[Tensor, ...]:
    return (scores,)


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
    reduce: Reduce = _whole,
) -> Iterator[tuple[int, tuple[Tensor, ...]]]:
    """``(top, rows)`` for consecutive bands of rows ``top .. top + n``: ``reduce``'s outputs, n rows by W.

    ``reduce`` turns the final (K, h, w) scores of a cell into a tuple of (..., h, w) tensors
    (say labels and confidences); the cells of a band are joined along the width. The default
    keeps the scores themselves, (K, n, W) a band: fine for a narrow image, but it is what
    ``reduce`` is there to avoid holding. ``read_rows(start, stop)`` gives the normalised rows
    ``start .. stop`` of the image as a (3, n, W) tensor on the model's device; its ``start``
    and ``stop`` never decrease. The bands cover the image, top to bottom, each once.
    """
    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r}: expected one of {', '.join(BLENDS)}")
    windows = sliding_windows(height, width, crop, stride)
    pending = _PendingCells(_Cells(windows, height, width), reduce)
    pixels: Tensor | None = None
    pixels_top = 0
    weights: dict[tuple[int, int], Tensor] = {}
    start = 0
    while start < len(windows):
        batch = [(start, windows[start])]
        size = (windows[start][1] - windows[start][0], windows[start][3] - windows[start][2])
        while len(batch) < max_batch and start + len(batch) < len(windows):
            t, b, l, r = windows[start + len(batch)]
            if (b - t, r - l) != size:
                break
            batch.append((start + len(batch), (t, b, l, r)))
        start += len(batch)
        bottom = max(window[1] for _, window in batch)
        first = batch[0][1][0]  # windows come in rows: this batch's first top is the least any later window needs
        if pixels is None:
            pixels, pixels_top = read_rows(0, bottom), 0
        else:
            keep = pixels[:, first - pixels_top:]
            fetched = pixels_top + pixels.shape[1]
            pixels = torch.cat([keep, read_rows(fetched, bottom)], 1) if bottom > fetched else keep
            pixels_top = first
        if blend == "cosine" and size not in weights:
            weights[size] = (ramp(size[0])[:, None] * ramp(size[1])[None, :]).to(pixels.device)
        _run_batch(model, batch, pixels, pixels_top, pending, weights.get(size), probs_before_resize)
        yield from pending.complete_bands()

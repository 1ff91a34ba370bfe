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

What is held of K-channel sums. In row-major order (which the batches fix) the overlap rows
that a window row shares with the next wait for that whole window row to pass: O × W of them,
O the most rows two consecutive window rows share (the vertical overlap c_h − s_h, up to
c_h − 1 for the last window row, which is shifted up to end at the image's bottom). That
strip is what grows with the image, so after each batch the cells that no window of the next
batch covers are written to a temporary folder (``spill_dir``) and read back, bit for bit,
when the next window row reaches them: each such cell is written once and read once. What
stays in memory, with windows of ``crop`` = (c_h, c_w), is then at most about

    K × (2 × max_batch + 1) × c_h × c_w floats,

the cells of this batch's windows and those the next batch will reach, whatever the image's
size (on disk: K × O × W floats at a time). The model call itself holds its batch's window
scores (max_batch × K × c_h × c_w) as any sliding-window inference does; the caller holds the
input rows the pending windows need (as bytes in ``isnet predict``: 3 × about c_h + s_h
rows × W) and the reduced rows of the bands not yet complete (a few bytes a pixel), which
row-ordered image files (PNG) force. ``spill=False`` keeps the strip in memory.

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
import os
import shutil
import socket
import tempfile
from bisect import bisect_left, bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import torch
from torch import Tensor, nn

from isnet.inference.engine import _window_scores, sliding_windows

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
        self.touchers: dict[tuple[int, int], list[int]] = defaultdict(list)  # each cell's windows, in order
        for index, (top, bottom, left, right) in enumerate(self.spans):
            for band in range(top, bottom):
                for column in range(left, right):
                    self.touchers[band, column].append(index)
        self.final_after: dict[int, list[tuple[int, int]]] = defaultdict(list)
        for cell, indices in self.touchers.items():
            self.final_after[indices[-1]].append(cell)

    def next_window(self, cell: tuple[int, int], after: int) -> int:
        """The first window after window ``after`` that covers ``cell`` (the cell must have one)."""
        indices = self.touchers[cell]
        return indices[bisect_right(indices, after)]


class SpillError(RuntimeError):
    """The pending cells' sums could not be written to (or read back from) the spill folder."""


_SPILL_PREFIX = f"isnet-tiles-{socket.gethostname()}-"  # then the process id: whose folder it is


def _remove_stale_spills(parent: Path) -> None:
    """Remove the spill folders that processes of this host killed before they could (a killed run's)."""
    for folder in parent.glob(f"{_SPILL_PREFIX}*-*"):
        pid = folder.name.removeprefix(_SPILL_PREFIX).split("-", 1)[0]
        if not pid.isdigit():
            continue
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            shutil.rmtree(folder, ignore_errors=True)
        except PermissionError:  # alive, another user's
            pass


class _Spill:
    """Cells' sums kept in files of a temporary folder (made on first use, removed by :meth:`close`).

    Raw bytes, read back bit for bit; nothing is pickled.
    """

    def __init__(self, parent: str | Path | None) -> None:
        self.parent, self.folder = parent, None
        self.files: dict[tuple[int, int], tuple[Path, list[tuple[torch.dtype, torch.Size]], torch.device]] = {}

    def put(self, cell: tuple[int, int], tensors: tuple[Tensor, ...]) -> None:
        try:
            if self.folder is None:
                _remove_stale_spills(Path(self.parent or tempfile.gettempdir()))
                self.folder = tempfile.TemporaryDirectory(prefix=f"{_SPILL_PREFIX}{os.getpid()}-", dir=self.parent)
            path = Path(self.folder.name) / f"{cell[0]}-{cell[1]}.bin"
            with open(path, "wb") as file:
                for tensor in tensors:
                    tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tofile(file)
        except OSError as error:
            where = self.folder.name if self.folder is not None else (self.parent or tempfile.gettempdir())
            raise SpillError(f"cannot keep the pending tile scores in {where}: {error.strerror or error}") from error
        self.files[cell] = path, [(t.dtype, t.shape) for t in tensors], tensors[0].device

    def __contains__(self, cell: tuple[int, int]) -> bool:
        return cell in self.files

    def take(self, cell: tuple[int, int]) -> tuple[Tensor, ...]:
        path, layout, device = self.files.pop(cell)
        data = torch.empty(sum(shape.numel() * dtype.itemsize for dtype, shape in layout), dtype=torch.uint8)
        try:
            with open(path, "rb") as file:
                if file.readinto(data.numpy()) != data.numel():
                    raise OSError(f"{path} is shorter than what was written to it")
            path.unlink()
        except OSError as error:
            raise SpillError(f"cannot read back the pending tile scores in {path}: {error.strerror or error}") from error
        tensors, offset = [], 0
        for dtype, shape in layout:
            size = shape.numel() * dtype.itemsize
            tensors.append(data[offset:offset + size].view(dtype).reshape(shape).to(device))
            offset += size
        return tuple(tensors)

    def close(self) -> None:
        if self.folder is not None:
            self.folder.cleanup()
            self.folder = None


class _PendingCells:
    """K-channel sums of window scores (and of their weights) for the cells reached and not yet final.

    A final cell is averaged and reduced at once; the reduced cells wait, per band of rows,
    until the band is complete. After each batch, a pending cell that no window of the next
    batch covers is moved to the spill folder (with row-ordered windows: the overlap with the
    next window row), and read back when a window reaches it again.
    """

    def __init__(self, cells: _Cells, reduce: Reduce, spill: _Spill | None) -> None:
        self.cells, self.reduce, self.spill = cells, reduce, spill
        self.sums: dict[tuple[int, int], tuple[Tensor, Tensor]] = {}
        self.reduced: dict[int, dict[int, tuple[Tensor, ...]]] = defaultdict(dict)
        self.next_band = 0  # the first band of rows not yet yielded

    def _sums(self, cell: tuple[int, int], like: Tensor) -> tuple[Tensor, Tensor]:
        if cell not in self.sums:
            if self.spill is not None and cell in self.spill:
                self.sums[cell] = self.spill.take(cell)  # type: ignore[assignment]
            else:
                self.sums[cell] = like.new_zeros(like.shape), like.new_zeros(1, *like.shape[1:])
        return self.sums[cell]

    def add(self, index: int, window: Window, scores: Tensor, weight: Tensor | None) -> None:
        top, bottom, left, right = self.cells.spans[index]
        rows, columns = self.cells.rows, self.cells.columns
        for band in range(top, bottom):
            in_rows = slice(rows[band] - window[0], rows[band + 1] - window[0])
            for column in range(left, right):
                in_columns = slice(columns[column] - window[2], columns[column + 1] - window[2])
                part = scores[:, in_rows, in_columns]
                total, weights = self._sums((band, column), part)
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

    def spill_beyond(self, last: int, horizon: int) -> None:
        """Spill the pending cells whose next window comes after window ``last + horizon``."""
        if self.spill is None:
            return
        for cell in [cell for cell in self.sums if self.cells.next_window(cell, last) > last + horizon]:
            self.spill.put(cell, self.sums.pop(cell))

    def complete_bands(self) -> Iterator[tuple[int, tuple[Tensor, ...]]]:
        """``(top, reduced rows)`` of each band of rows whose cells are all final, top to bottom, each once."""
        columns = len(self.cells.columns) - 1
        while len(self.reduced.get(self.next_band, ())) == columns:
            parts = self.reduced.pop(self.next_band)
            rows = tuple(torch.cat(pieces, -1) for pieces in zip(*(parts[c] for c in range(columns))))
            yield self.cells.rows[self.next_band], rows
            self.next_band += 1


def _run_batch(model: nn.Module, batch: Sequence[tuple[int, Window]], pixels: Tensor, pixels_top: int,
               pending: _PendingCells, weight: Tensor | None, probs_before_resize: bool,
               prepare: Callable[[Tensor], Tensor]) -> None:
    """One model call on a batch of ``(index, window)``, added into ``pending`` (a function, so that its
    K-channel window scores are let go before the next call allocates its own)."""
    crops = prepare(torch.stack([pixels[:, t - pixels_top:b - pixels_top, l:r] for _, (t, b, l, r) in batch]))
    window_scores = _window_scores(model.logits(crops), crops.shape[2:], probs_before_resize)
    for scores, (index, window) in zip(window_scores.chunk(len(batch)), batch):
        pending.add(index, window, scores[0], weight)
    for index, _ in batch:
        pending.finish(index)


def _whole(scores: Tensor) -> tuple[Tensor, ...]:
    return (scores,)


def _as_read(crops: Tensor) -> Tensor:
    return crops


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
    prepare: Callable[[Tensor], Tensor] = _as_read,
    spill: bool = True,
    spill_dir: str | Path | None = None,
) -> Iterator[tuple[int, tuple[Tensor, ...]]]:
    """``(top, rows)`` for consecutive bands of rows ``top .. top + n``: ``reduce``'s outputs, n rows by W.

    ``reduce`` turns the final (K, h, w) scores of a cell into a tuple of (..., h, w) tensors
    (say labels and confidences); the cells of a band are joined along the width. The default
    keeps the scores themselves, (K, n, W) a band: fine for a narrow image, but it is what
    ``reduce`` is there to avoid holding. ``read_rows(start, stop)`` gives the rows
    ``start .. stop`` of the image as a (C, n, W) tensor on the model's device, and
    ``prepare`` turns a batch of windows cut from them into the model's input (say, uint8
    pixels normalised, so that the rows held are a byte a channel); ``read_rows``' ``start``
    and ``stop`` never decrease. The bands cover the image, top to bottom, each once.

    With ``spill`` (the default) the sums that wait for the next window row are kept in a
    temporary folder under ``spill_dir`` (default: the system's, ``$TMPDIR``) and removed
    when the generator ends, closes or fails; without it they are held in memory.
    """
    if blend not in BLENDS:
        raise ValueError(f"unknown blend {blend!r}: expected one of {', '.join(BLENDS)}")
    windows = sliding_windows(height, width, crop, stride)
    spilled = _Spill(spill_dir) if spill else None
    pending = _PendingCells(_Cells(windows, height, width), reduce, spilled)
    pixels: Tensor | None = None
    pixels_top = 0
    weights: dict[tuple[int, int], Tensor] = {}
    start = 0
    try:
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
            _run_batch(model, batch, pixels, pixels_top, pending, weights.get(size), probs_before_resize, prepare)
            pending.spill_beyond(start - 1, max_batch)
            yield from pending.complete_bands()
    finally:
        if spilled is not None:
            spilled.close()

"""Segmenting very large images tile by tile: ``isnet predict --tile H W --overlap P``.

The image is read a band of rows at a time (:func:`isnet.data.large_image.open_rows`), its
windows run through :func:`isnet.inference.streaming.stream_slide`, which reduces each cell
of the windows' grid to labels (and confidences) as soon as it is final, and each band of
rows is written at once into PNG files that are encoded row by row (pypng; Pillow and
OpenCV encode only whole arrays). The overlay is drawn from every s-th row and column, kept
as the bands pass, with s the stride that
:func:`~isnet.utils.visualize.save_overlay_with_legend` uses for a large image, so it is the
same figure a whole-image prediction would draw. What is held at any time: the input rows
of about one window's height and a stride across the image's width, as bytes (normalised a
batch of windows at a time), the K-channel sums of one batch of windows' cells (those
waiting for the next row of windows are in the spill folder: see
:mod:`isnet.inference.streaming`), the labels (and 16-bit confidences) of the bands not yet
complete, and the overlay's thumbnails; never the whole image's pixels (with libvips) nor its
scores.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable, Sequence
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from isnet.apps.geotiff_outputs import GeoOutputs
from isnet.apps.predict_files import model_normalisation
from isnet.data.image import DataFileError, normalise
from isnet.data.large_image import header_size, open_rows
from isnet.inference.engine import InferenceConfig
from isnet.inference.predictor import Predictor, as_predictor
from isnet.inference.streaming import SpillError, stream_slide
from isnet.inference.temperature import confidence_uint16
from isnet.utils.atomic_files import PendingFiles
from isnet.utils.background_encoder import BackgroundEncoder
from isnet.utils.errors import describe_os_error
from isnet.utils.progress import progress_bar
from isnet.utils.visualize import MAX_OVERLAY_SIDE, PALETTE_CLASSES, label_dtype, save_overlay_with_legend


@dataclass(frozen=True)
class TileConfig:
    """Windows of ``tile`` (height, width) every ``stride`` pixels, blended by ``blend`` (see :mod:`isnet.inference.streaming`)."""

    tile: tuple[int, int] = (512, 512)
    stride: tuple[int, int] = (341, 341)
    blend: str = "mean"
    max_batch: int = 8


class PngRowWriter:
    """A PNG written row by row: pypng encodes from an iterator, fed here from another thread.

    ``put(rows)`` hands over a band of rows (the queue holds a few, so memory stays bounded);
    ``close()`` finishes the file and raises what the encoder raised (a full disk, say).
    """

    def __init__(self, path: Path, width: int, height: int, **png_options) -> None:
        import png

        self._file = open(path, "wb")
        writer = png.Writer(width, height, **png_options)
        self._encoder = BackgroundEncoder(lambda bands: writer.write(self._file, (row for band in bands for row in band)),
                                          name=f"png-{path.name}", queue_size=4)

    def put(self, rows: np.ndarray) -> None:
        self._encoder.put(rows)

    def close(self) -> None:
        """Finish the file (a second call does nothing); raise what the encoder raised."""
        try:
            self._encoder.close()
        finally:
            self._file.close()


def segment_large_image(
    model: Predictor | nn.Module,
    path: Path,
    outputs: Sequence[Path],
    tiles: TileConfig,
    classes: Sequence[str],
    palette: Sequence[tuple[int, int, int]],
    *,
    max_pixels: int,
    confidence: bool = False,
    progress: bool = True,
    spill_dir: Path | None = None,
) -> str | None:
    """Write ``outputs`` (labels, overlay[, confidence] PNGs) of one large image; the reason it could not, or None.

    Each output is written under a temporary name and renamed when complete, so a killed run
    leaves no partial file under a real name. The rows read are held as bytes and normalised a
    batch of windows at a time; the class scores waiting for the next row of tiles are kept in
    a temporary folder under ``spill_dir`` (default ``$TMPDIR``).
    """
    mean, std = model_normalisation(model)
    if len(mean) != 3:
        return (f"{path}: the model takes {len(mean)} image channels, and images are streamed in tiles as RGB; "
                "give it whole (without --tile, and below --tile-above)")
    try:
        reader = open_rows(path, max_pixels)
    except DataFileError as error:
        return str(error)
    height, width = reader.height, reader.width
    model = as_predictor(model)
    device = model.device
    step = max(1, -(-max(height, width) // MAX_OVERLAY_SIDE))
    thumbnail_pixels, thumbnail_labels = [], []

    def read_rows(start: int, stop: int) -> torch.Tensor:  # (3, n, W) uint8
        rows = reader.rows(start, stop)
        thumbnail_pixels.append(rows[(-start) % step::step, ::step].copy())
        return torch.from_numpy(np.ascontiguousarray(rows)).permute(2, 0, 1).to(device)

    pending: PendingFiles | None = None
    flat_palette = [tuple(colour) for colour in palette] + [(0, 0, 0)] * (256 - len(palette))
    writing = outputs[0]
    writers: list[PngRowWriter] = []
    geo = None
    try:
        pending = PendingFiles(*outputs)
        partials = pending.temporaries
        if len(palette) > PALETTE_CLASSES:  # 16-bit grey class indices, as label_image writes them
            writers += [PngRowWriter(partials[0], width, height, greyscale=True, bitdepth=16)]
        else:
            writers += [PngRowWriter(partials[0], width, height, palette=flat_palette, bitdepth=8)]
        if confidence:
            writers.append(PngRowWriter(partials[2], width, height, greyscale=True, bitdepth=16))
        geo = GeoOutputs.open(path, outputs[0], width, height, confidence=confidence,
                              num_classes=len(palette))  # None unless a GeoTIFF
        bar = progress_bar(total=height, desc=f"{path.name} rows", unit="row", disable=not progress, leave=False)

        def reduce(scores: torch.Tensor) -> tuple[torch.Tensor, ...]:  # a final cell, to what the writers take
            labels = scores.argmax(0).to(torch.uint8 if len(palette) <= PALETTE_CLASSES else torch.int32)
            return (labels, confidence_uint16(scores.softmax(0).amax(0))) if confidence else (labels,)

        bands = stream_slide(model, height, width, read_rows, crop=tiles.tile, stride=tiles.stride,
                             blend=tiles.blend, max_batch=tiles.max_batch, reduce=reduce,
                             prepare=lambda crops: normalise(crops, mean, std),
                             spill_dir=spill_dir)
        with closing(bands):  # its spill folder goes now, whatever stops the loop, not when it is collected
            for top, reduced in bands:
                labels = reduced[0].cpu().numpy().astype(label_dtype(len(palette)), copy=False)
                certainty = reduced[1].cpu().numpy().astype(np.uint16) if confidence else None
                if geo is not None:  # nodata pixels to the ignore label; the GeoTIFFs' rows
                    labels, certainty = geo.put(top, labels, certainty)
                thumbnail_labels.append(labels[(-top) % step::step, ::step].copy())
                writers[0].put(labels)
                if confidence:
                    writers[1].put(certainty)
                bar.update(labels.shape[0])
        bar.close()
        for writer in writers:
            writer.close()
        if geo is not None:
            geo.close()
        writing = outputs[1]
        save_overlay_with_legend(partials[1], np.concatenate(thumbnail_pixels), np.concatenate(thumbnail_labels),
                                 classes, palette, title=path.name)
        writing = None
        pending.commit()
        if geo is not None:
            geo.commit()
    except DataFileError as error:
        return str(error)
    except SpillError as error:
        return f"{path}: {error} (--spill-dir names another folder)"
    except OSError as error:  # named by the output file, not its temporary name (a failed commit names it)
        cause = error if writing is None else OSError(error.errno, error.strerror or str(error))
        return f"{path}: cannot write its output {describe_os_error(cause, writing)}"
    finally:
        for writer in writers:  # after a failure: the encoders stop, their files close
            try:
                writer.close()
            except Exception:  # the failure that brought us here is the one reported
                pass
        if geo is not None:
            geo.discard()
        if pending is not None:
            pending.discard()
    return None


def tile_config(tile: Sequence[int], overlap: int | None, blend: str, max_batch: int = 8) -> TileConfig:
    """Windows of ``tile`` overlapping by ``overlap`` pixels (default a third of the tile, as 512 / 341)."""
    if overlap is None:
        overlap_hw = tuple(math.ceil(side / 3) for side in tile)
    else:
        overlap_hw = (overlap, overlap)
    if any(o >= side for o, side in zip(overlap_hw, tile)):
        raise ValueError(f"--overlap {max(overlap_hw)} must be smaller than the tile ({tile[0]}×{tile[1]})")
    return TileConfig(tile=(tile[0], tile[1]), stride=(tile[0] - overlap_hw[0], tile[1] - overlap_hw[1]),
                      blend=blend, max_batch=max_batch)


LARGE_MAX_PIXELS = 4_000_000_000  # what a streamed image may have (a 63 000 × 63 000 slide); --max-pixels lowers it


def split_streamed(
    paths: Sequence[Path], tiles: TileConfig | None, config: InferenceConfig, *, tile_above: int, max_pixels: int | None
) -> tuple[list[Path], list[tuple[Path, TileConfig]]]:
    """The images predicted whole, and those streamed tile by tile (each with its tiles).

    With ``tiles`` every image is streamed. Without, an image whose header declares more
    than ``tile_above`` pixels is streamed in ``config``'s sliding windows (the labels are
    those of ``--mode slide``), provided ``config`` is single-scale without flip; an image
    whose header cannot be read is left to the whole path, which says what is wrong with it.
    """
    if tiles is not None:
        return [], [(path, tiles) for path in paths]
    if config.scales != (1.0,) or config.flip:
        return list(paths), []
    auto = TileConfig(tile=config.crop, stride=config.stride)
    whole, streamed = [], []
    for path in paths:
        try:
            height, width = header_size(path, max_pixels or LARGE_MAX_PIXELS)
        except DataFileError:
            whole.append(path)
            continue
        if height * width > tile_above:
            print(f"note: {path}: {width}×{height} is over --tile-above {tile_above:,} pixels; predicting it tile by "
                  f"tile ({auto.tile[0]}×{auto.tile[1]} windows every {auto.stride[0]}×{auto.stride[1]})", file=sys.stderr)
            streamed.append((path, auto))
        else:
            whole.append(path)
    return whole, streamed


def segment_large_files(
    model: Predictor | nn.Module,
    jobs: Sequence[tuple[Path, TileConfig]],
    output: Path,
    classes: Sequence[str],
    palette: Sequence[tuple[int, int, int]],
    *,
    max_pixels: int | None = None,
    confidence: bool = False,
    on_done: Callable[[Path], None] | None = None,
    spill_dir: Path | None = None,
) -> list[tuple[Path, str]]:
    """:func:`segment_large_image` for each ``(path, tiles)``; the files that failed, with the reason."""
    from isnet.apps.predict_files import output_files

    failures = []
    for path, tiles in jobs:
        outputs = output_files(path, output, confidence=confidence)
        reason = segment_large_image(model, path, outputs, tiles, classes, palette,
                                     max_pixels=max_pixels or LARGE_MAX_PIXELS, confidence=confidence,
                                     spill_dir=spill_dir)
        if reason is not None:
            failures.append((path, reason))
            print(f"skipped {reason}", file=sys.stderr)
        elif on_done is None:
            print(f"{path} → {outputs[1]}")
        if on_done is not None:
            on_done(path)
    return failures

"""GeoTIFF in, GeoTIFF out for ``isnet predict --tile``: label and confidence GeoTIFFs beside the PNGs.

When the image streamed is a georeferenced TIFF (:func:`isnet.data.geotiff.read_georeference`),
its tiled prediction also writes ``<stem>_labels.tif`` (class indices: uint8 with GDAL_NODATA 255
up to 255 classes, uint16 with GDAL_NODATA 65535 for more) and, with ``--confidence``,
``<stem>_confidence.tif`` (uint16, p · 65535, GDAL_NODATA 0), with the input's georeferencing tags
unchanged, so GIS tools place them where the image is. Pixels the input marks as nodata become
that nodata label (confidence 0) in every output, the PNGs included; a model of exactly 256
classes leaves no 8-bit value free for it, and such an image is refused by name. Each GeoTIFF is encoded tile row by tile row as the rows arrive, under an unpredictable
temporary name (:class:`~isnet.utils.atomic_files.PendingFiles`), and renamed with the PNGs when complete.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from isnet.data.geotiff import GeoTiffRowWriter, NodataRows, read_georeference
from isnet.data.image import DataFileError
from isnet.utils.atomic_files import PendingFiles
from isnet.utils.visualize import PALETTE_CLASSES

IGNORE = 255  # the nodata label of up to 255 classes (uint8); past that, uint16 and NODATA_16


NODATA_16 = 65535


def nodata_label(num_classes: int) -> tuple[type[np.integer], int]:
    """The label type and the nodata label of a model of ``num_classes`` classes: a value no class has."""
    if num_classes <= IGNORE:
        return np.uint8, IGNORE
    if num_classes <= NODATA_16 and num_classes != PALETTE_CLASSES:
        return np.uint16, NODATA_16
    raise ValueError(f"a model of {num_classes} classes leaves no {'8' if num_classes == PALETTE_CLASSES else '16'}-bit "
                     "label value free for the GeoTIFF's nodata pixels")


def geotiff_files(labels_png: Path, confidence: bool) -> list[Path]:
    """``<stem>_labels.tif`` (and ``<stem>_confidence.tif``) beside the label PNG."""
    files = [labels_png.with_suffix(".tif")]
    return files + [labels_png.with_name(labels_png.name.replace("_labels.png", "_confidence.tif"))] if confidence else files


class GeoOutputs:
    """The GeoTIFF outputs of one georeferenced image: ``put`` each band, then ``close``, ``commit`` (or ``discard``)."""

    def __init__(self, source: Path, finals: Sequence[Path], width: int, height: int, num_classes: int) -> None:
        georeference = read_georeference(source)
        assert georeference is not None
        try:
            dtype, self.nodata_label = nodata_label(num_classes)
        except ValueError as error:
            raise DataFileError(f"{source}: {error}") from None
        self.pending = PendingFiles(*finals)  # unpredictable temporary names, renamed into place by commit
        self.partials = self.pending.temporaries
        self.nodata = NodataRows(source, georeference.nodata) if georeference.nodata is not None else None
        self.writers = [GeoTiffRowWriter(self.partials[0], width, height, dtype, georeference, self.nodata_label)]
        if len(self.partials) > 1:
            self.writers.append(GeoTiffRowWriter(self.partials[1], width, height, np.uint16, georeference, 0))

    @classmethod
    def open(cls, source: Path, labels_png: Path, width: int, height: int, *, confidence: bool,
             num_classes: int) -> GeoOutputs | None:
        """The GeoTIFF outputs of ``source``, or None when it is not a georeferenced TIFF."""
        if read_georeference(source) is None:
            return None
        return cls(source, geotiff_files(labels_png, confidence), width, height, num_classes)

    def put(self, top: int, labels: np.ndarray, confidence: np.ndarray | None) -> tuple[np.ndarray, np.ndarray | None]:
        """Rows ``top..`` of the labels (and confidences) with nodata applied; written to the GeoTIFFs, returned for the PNGs."""
        if self.nodata is not None:
            empty = self.nodata.rows(top, top + labels.shape[0])
            labels = np.where(empty, self.nodata_label, labels).astype(labels.dtype)
            if confidence is not None:
                confidence = np.where(empty, 0, confidence).astype(confidence.dtype)
        self.writers[0].put(labels)
        if confidence is not None and len(self.writers) > 1:
            self.writers[1].put(confidence)
        return labels, confidence

    def close(self) -> None:
        for writer in self.writers:
            writer.close()

    def commit(self) -> None:
        self.pending.commit()

    def discard(self) -> None:
        for writer in self.writers:
            try:
                writer.close()
            except Exception:  # the failure that brought us here is the one reported
                pass
        self.pending.discard()

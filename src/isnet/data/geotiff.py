"""Georeferenced TIFFs: the georeferencing of an input carried to the outputs, nodata pixels found by rows.

A GeoTIFF places its pixels on the Earth with TIFF tags (GeoTIFF 1.1, OGC 19-008): the CRS in
``GeoKeyDirectory`` (with ``GeoDoubleParams`` / ``GeoAsciiParams``), the pixel-to-model
transform in ``ModelPixelScale`` + ``ModelTiepoint`` or ``ModelTransformation``; GDAL adds
``GDAL_NODATA`` (ASCII) for the value of pixels that hold no data. :func:`read_georeference`
reads those tags with tifffile (no GDAL needed), and :class:`GeoTiffRowWriter` writes them, as
they were, on a tiled, deflate-compressed (Big)TIFF whose tiles are encoded as rows arrive.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from isnet.utils.background_encoder import BackgroundEncoder

GEO_TAGS = (33550, 33922, 34264, 34735, 34736, 34737)  # pixel scale, tiepoints, transformation, GeoKeys, doubles, ASCII
GDAL_NODATA = 42113
TILE = 256
BIGTIFF_ABOVE = 2**32 - 2**25  # bytes of pixels past which a classic TIFF's 32-bit offsets may not reach


@dataclass(frozen=True)
class GeoReference:
    """The georeferencing tags of a TIFF, as tifffile's ``extratags`` take them, and its nodata value (or None)."""

    tags: tuple[tuple[int, int, int, object, bool], ...]
    nodata: float | None


def read_georeference(path: str | Path) -> GeoReference | None:
    """The georeferencing of a TIFF file; None for another file or a TIFF without GeoTIFF tags."""
    import tifffile

    path = Path(path)
    if path.suffix.lower() not in (".tif", ".tiff"):
        return None
    try:
        with tifffile.TiffFile(path) as tiff:
            found = {tag.code: tag for tag in tiff.pages[0].tags.values()}
            if not any(code in found for code in GEO_TAGS if code not in (34736, 34737)):
                return None
            # the values while the file is open: tifffile reads the larger ones only when asked
            tags = tuple((code, int(found[code].dtype), found[code].count, found[code].value, True)
                         for code in GEO_TAGS if code in found)
            nodata_text = str(found[GDAL_NODATA].value).strip("\x00 ") if GDAL_NODATA in found else None
    except (tifffile.TiffFileError, OSError, ValueError):
        return None  # the image reader says what is wrong with it
    nodata = None
    if nodata_text is not None:
        try:
            nodata = float(nodata_text)
        except ValueError:
            nodata = None
    return GeoReference(tags, nodata)


class NodataRows:
    """Which pixels of a GeoTIFF hold no data (every band equal to its GDAL_NODATA), a band of rows at a time.

    Read with libvips sequentially where it is installed (the raw values, before any scaling),
    else the file's raw values are read whole with tifffile. Rows are asked top to bottom.
    """

    def __init__(self, path: Path, nodata: float) -> None:
        self.path, self.nodata = path, nodata
        self._region = self._whole = None
        try:
            import pyvips

            image = pyvips.Image.new_from_file(str(path), access="sequential", fail_on="error")
            self._region, self._format, self._bands = pyvips.Region.new(image), image.format, image.bands
            self._width = image.width
        except (ImportError, OSError):
            import tifffile

            pixels = tifffile.imread(path)
            self._whole = pixels if pixels.ndim == 3 else pixels[..., None]

    def rows(self, start: int, stop: int) -> np.ndarray:
        """(stop − start, W) bool: True where the pixel holds no data."""
        if self._whole is not None:
            values = self._whole[start:stop]
        else:
            dtypes = {"uchar": np.uint8, "char": np.int8, "ushort": np.uint16, "short": np.int16, "uint": np.uint32,
                      "int": np.int32, "float": np.float32, "double": np.float64}
            data = self._region.fetch(0, start, self._width, stop - start)
            values = np.frombuffer(data, dtypes[self._format]).reshape(stop - start, self._width, self._bands)
        return (values == self.nodata).all(axis=2)




class GeoTiffRowWriter:
    """A tiled, deflate-compressed GeoTIFF written from bands of rows (``put``), tile row by tile row.

    tifffile encodes the tiles from an iterator on its own thread; a tile row is handed over
    when its ``TILE`` rows have arrived, so what is held is one tile row (and a short queue),
    never the whole map. BigTIFF when the pixels pass 4 GiB. ``close()`` finishes the file and
    raises what the encoder raised.
    """

    def __init__(self, path: Path, width: int, height: int, dtype: type, georeference: GeoReference,
                 nodata: float | None) -> None:
        import tifffile

        self.width, self.height, self.dtype = width, height, np.dtype(dtype)
        self._pending = np.zeros((0, width), self.dtype)
        tags = list(georeference.tags)
        if nodata is not None:
            tags.append((GDAL_NODATA, 2, 0, f"{nodata:g}", True))
        bigtiff = width * height * self.dtype.itemsize > BIGTIFF_ABOVE

        def tiles(bands: Iterator[np.ndarray]) -> Iterator[np.ndarray]:
            for band in bands:
                for left in range(0, width, TILE):
                    tile = np.zeros((TILE, TILE), self.dtype)
                    part = band[:, left:left + TILE]
                    tile[: part.shape[0], : part.shape[1]] = part
                    yield tile

        def encode(bands: Iterator[np.ndarray]) -> None:
            with tifffile.TiffWriter(path, bigtiff=bigtiff) as tiff:
                tiff.write(tiles(bands), shape=(height, width), dtype=self.dtype, tile=(TILE, TILE),
                           compression="zlib", photometric="minisblack", extratags=tags, metadata=None)

        self._encoder = BackgroundEncoder(encode, name=f"geotiff-{path.name}", queue_size=2)

    def put(self, rows: np.ndarray) -> None:
        self._pending = np.concatenate([self._pending, rows.astype(self.dtype, copy=False)])
        while len(self._pending) >= TILE:
            self._encoder.put(self._pending[:TILE].copy())
            self._pending = self._pending[TILE:]

    def close(self) -> None:
        """Finish the file (a second call does nothing); raise what the encoder raised."""
        if len(self._pending) and not self._encoder.failed:
            self._encoder.put(self._pending)
        self._pending = self._pending[:0]
        self._encoder.close()

"""Reading very large images a band of rows at a time (remote sensing, pathology).

:func:`open_rows` gives a :class:`RowReader`: the image's size and ``rows(start, stop)``,
(stop − start, W, 3) uint8 RGB, for starts and stops that never go back. With libvips
(``pip install 'isnet[large]'``: pyvips and its binary wheel) PNG, TIFF (stripped or tiled,
BigTIFF included), JPEG and the other formats libvips reads are decoded sequentially, so
only the rows still needed are in memory: the bound on memory is true for the pixels too.
Without libvips, or for an image that needs turning (an EXIF orientation other than 1) or
whose pixel format libvips cannot give as 8-bit RGB the way :func:`isnet.data.image.read_image`
does, the image is decoded whole by Pillow (its uint8 pixels are held, 3 bytes a pixel; the
scores are still streamed). :attr:`RowReader.streamed` says which.

Pixels are those of :func:`~isnet.data.image.read_image` (8-bit RGB; grey repeated, alpha
dropped, 16-bit scaled from 0..65535), so a streamed prediction equals a whole one.
"""

from __future__ import annotations

import abc
import warnings
from pathlib import Path

import numpy as np
from PIL import Image

from isnet.data.image import ImageReadError, open_image, read_image, scaled_to_8_bits

LARGE_EXTRA_HINT = "pip install 'isnet[large]' (libvips) to stream it"


def _vips():
    """pyvips, or None when it (or its libvips) is not installed."""
    try:
        import pyvips
    except (ImportError, OSError):
        return None
    return pyvips


def header_size(path: str | Path, max_pixels: int) -> tuple[int, int]:
    """(height, width) from the file's header, with libvips when installed (Pillow refuses > 179 Mpx)."""
    path = Path(path)
    pyvips = _vips()
    if pyvips is not None and path.is_file():
        try:
            image = pyvips.Image.new_from_file(str(path), access="sequential")
        except pyvips.Error:
            pass  # Pillow says what is wrong below
        else:
            height, width = image.height, image.width
            _check_pixels(path, height, width, max_pixels)
            return height, width
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        try:
            with open_image(path, max_pixels) as image:
                width, height = image.size
        except ImageReadError as error:
            if "decompression bomb" in str(error) and pyvips is None:
                raise ImageReadError(f"{error}; or {LARGE_EXTRA_HINT}") from None
            raise
    return height, width


def _check_pixels(path: Path, height: int, width: int, max_pixels: int) -> None:
    if height * width > max_pixels:
        raise ImageReadError(
            f"{path}: {width}×{height} = {width * height:,} pixels is over the limit of {max_pixels:,}; "
            "raise --max-pixels to accept it"
        )


class RowReader(abc.ABC):
    """Rows of an image, top to bottom; ``streamed`` is True when only a band is ever decoded."""

    def __init__(self, height: int, width: int, *, streamed: bool) -> None:
        self.height, self.width, self.streamed = height, width, streamed

    @abc.abstractmethod
    def rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as (n, W, 3) uint8; ``start`` and ``stop`` never decrease between calls."""


class _WholeRows(RowReader):
    def __init__(self, pixels: np.ndarray) -> None:
        super().__init__(*pixels.shape[:2], streamed=False)
        self.pixels = pixels

    def rows(self, start: int, stop: int) -> np.ndarray:
        return self.pixels[start:stop]


class _VipsRows(RowReader):
    """libvips' sequential decoder: each row is fetched once, in order, and kept while it is asked for."""

    def __init__(self, image, path: Path) -> None:
        super().__init__(image.height, image.width, streamed=True)
        import pyvips

        self.path = path
        self.region = pyvips.Region.new(image)
        self.bands, self.sixteen_bit = image.bands, image.format == "ushort"
        self.dtype = np.uint16 if self.sixteen_bit else np.uint8
        self.buffer = np.zeros((0, self.width, 3), np.uint8)
        self.top = 0  # the image row of buffer[0]

    def rows(self, start: int, stop: int) -> np.ndarray:
        if start < self.top:
            raise ValueError(f"rows {start}:{stop} asked after row {self.top} was let go (reads go top to bottom)")
        self.buffer = self.buffer[start - self.top:]
        self.top = start
        fetched_to = self.top + len(self.buffer)
        if stop > fetched_to:
            self.buffer = np.concatenate([self.buffer, self._fetch(fetched_to, stop)])
        return self.buffer[: stop - start]

    def _fetch(self, start: int, stop: int) -> np.ndarray:
        import pyvips

        try:
            data = self.region.fetch(0, start, self.width, stop - start)
        except pyvips.Error as error:
            detail = "; ".join(line.strip() for line in str(error).splitlines() if line.strip())  # one line
            raise ImageReadError(f"{self.path}: unreadable rows {start}..{stop} (truncated or corrupt?): {detail}") from None
        pixels = np.frombuffer(data, self.dtype).reshape(stop - start, self.width, self.bands)
        if self.sixteen_bit:  # 0..65535 onto 0..255, as read_image does
            pixels = scaled_to_8_bits(pixels, 65535)
        if self.bands in (1, 2):  # grey (+ alpha)
            return np.repeat(pixels[..., :1], 3, axis=2)
        return np.ascontiguousarray(pixels[..., :3])  # RGB (+ alpha)


def open_rows(path: str | Path, max_pixels: int) -> RowReader:
    """A :class:`RowReader` of ``path``: streamed by libvips where it can be, else decoded whole by Pillow."""
    path = Path(path)
    height, width = header_size(path, max_pixels)
    pyvips = _vips()
    if pyvips is not None:
        # fail_on="error": a file cut short or damaged is an error when its rows are fetched, not rows of zeros
        image = pyvips.Image.new_from_file(str(path), access="sequential", fail_on="error")
        if image.format in ("uchar", "ushort") and image.bands in (1, 2, 3, 4) and image.interpretation != "cmyk" \
                and _upright(image):
            return _VipsRows(image, path)
    return _WholeRows(read_image(path, max_pixels))


def _upright(image) -> bool:
    """Whether libvips found no EXIF orientation to apply (1, or none)."""
    if image.get_typeof("orientation") == 0:
        return True
    return int(image.get("orientation")) == 1

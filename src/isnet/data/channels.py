"""Images of other than 3 channels: RGB + near infrared, 16-bit multispectral stacks, one grey channel.

A dataset whose record has a mean and std of length C ≠ 3 is read here instead of as RGB
(:func:`isnet.data.image.read_image`, which stays the path of every 3-channel dataset): the
stored values are kept as they are (as float32, in the units the record's mean and std are in,
e.g. 0..65535 for 16-bit data) and every channel is normalised with its own mean and std.
TIFF files are read with tifffile (any number of channels, planar or interleaved, 8/16/32-bit,
the TIFF orientation tag applied); other formats with Pillow (grey, grey + alpha, RGBA, 16-bit
grey), their EXIF orientation applied. A file of another channel count than the record's is
refused by name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from isnet.data.image import (
    MAX_IMAGE_PIXELS,
    DataFileError,
    ImageReadError,
    decode_upright,
    image_size,
    open_image,
    open_regular_file,
)

TIFF_SUFFIXES = (".tif", ".tiff")
MAX_BANDS = 64  # channels of one image: with the pixel limit, bands × pixels is bounded before anything is decoded
_ORIENTATION_TAG = 274


def _spatial_layout(path: Path, axes: str, shape: tuple[int, ...]) -> tuple[int, int, int | None]:
    """Positions of the rows, columns and (if any) channel axis of a TIFF series, or an error naming the file."""
    kept = [(axis, size) for axis, size in zip(axes, shape) if size > 1 or axis in "YX"]
    letters = "".join(axis for axis, _ in kept)
    if "Y" not in letters or "X" not in letters or len(kept) > 3:
        raise ImageReadError(f"{path}: a TIFF of axes {axes} {shape}: expected rows, columns and at most one channel axis")
    others = [index for index, (axis, _) in enumerate(kept) if axis not in "YX"]
    return letters.index("Y"), letters.index("X"), others[0] if others else None


def tiff_shape(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int, int]:
    """(height, width, channels) of a TIFF as displayed, from its header."""
    import tifffile

    path = Path(path)
    with open_regular_file(path, "a TIFF file") as handle:
        try:
            with tifffile.TiffFile(handle, name=path.name) as tif:
                series = tif.series[0]
                axes, shape = series.axes, tuple(series.shape)
                tag = tif.pages[0].tags.get(_ORIENTATION_TAG)
                orientation = int(tag.value) if tag is not None else 1
        except (OSError, ValueError, IndexError, tifffile.TiffFileError) as error:
            raise ImageReadError(f"{path}: unreadable TIFF: {error}") from None
    kept = [size for axis, size in zip(axes, shape) if size > 1 or axis in "YX"]
    y, x, channel = _spatial_layout(path, axes, shape)
    height, width = kept[y], kept[x]
    if height * width > max_pixels:
        raise ImageReadError(f"{path}: {width}×{height} = {width * height:,} pixels is over the limit of {max_pixels:,}")
    bands = kept[channel] if channel is not None else 1
    if bands > MAX_BANDS:
        raise ImageReadError(f"{path}: {bands} bands is over the limit of {MAX_BANDS} (a TIFF of {width}×{height} "
                             f"pixels; its {bands * width * height:,} values were not decoded)")
    if orientation in (5, 6, 7, 8):
        height, width = width, height
    return height, width, bands


def upright(array: np.ndarray, orientation: int) -> np.ndarray:
    """(H, W[, C]) pixels as displayed under a TIFF/EXIF orientation (as PIL's ``exif_transpose``)."""
    swapped = np.swapaxes(array, 0, 1)
    return {
        2: lambda: array[:, ::-1], 3: lambda: array[::-1, ::-1], 4: lambda: array[::-1],
        5: lambda: swapped, 6: lambda: np.rot90(array, -1), 7: lambda: np.rot90(swapped, 2), 8: lambda: np.rot90(array, 1),
    }.get(orientation, lambda: array)()


def _read_tiff(path: Path, max_pixels: int) -> np.ndarray:
    import tifffile

    tiff_shape(path, max_pixels)  # the pixel limit, from the header, before decoding
    with open_regular_file(path, "a TIFF file") as handle:
        try:
            with tifffile.TiffFile(handle, name=path.name) as tif:
                series = tif.series[0]
                axes, shape = series.axes, tuple(series.shape)
                values = series.asarray()
                tag = tif.pages[0].tags.get(_ORIENTATION_TAG)
                orientation = int(tag.value) if tag is not None else 1
        except (OSError, ValueError, IndexError, tifffile.TiffFileError) as error:
            raise ImageReadError(f"{path}: unreadable TIFF (truncated or corrupt?): {error}") from None
    values = values.reshape([size for axis, size in zip(axes, shape) if size > 1 or axis in "YX"])
    y, x, channel = _spatial_layout(path, axes, shape)
    values = values[..., None] if channel is None else np.moveaxis(values, (y, x, channel), (0, 1, 2))
    return upright(values, orientation)


def read_channels(path: str | Path, channels: int, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """An image as (H, W, ``channels``) float32 stored values, as displayed; an error naming the file otherwise."""
    path = Path(path)
    if path.suffix.lower() in TIFF_SUFFIXES:
        _require_channels(path, tiff_shape(path, max_pixels)[2], channels)  # from the header, before decoding
        values = _read_tiff(path, max_pixels)
    else:
        with open_image(path, max_pixels) as image:
            upright = decode_upright(image, path)
            values = np.asarray(upright.convert("RGBA") if upright.mode in ("P", "PA") else upright)
        values = values[..., None] if values.ndim == 2 else values
    _require_channels(path, values.shape[2], channels)
    if not np.issubdtype(values.dtype, np.number):
        raise DataFileError(f"{path}: pixels of type {values.dtype} are not numbers")
    return np.ascontiguousarray(values, dtype=np.float32)


def _require_channels(path: Path, found: int, channels: int) -> None:
    if found != channels:
        raise DataFileError(
            f"{path}: {found} channel(s) but the dataset record has {channels} (the length of its mean "
            "and std); store every image with the same channels, or correct mean/std in dataset.json"
        )


def channels_size(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(height, width) as displayed, from the header alone, of an image of any channel count."""
    if Path(path).suffix.lower() in TIFF_SUFFIXES:
        return tiff_shape(path, max_pixels)[:2]
    return image_size(path, max_pixels)


def display_rgb(values: np.ndarray) -> np.ndarray:
    """An (H, W, C) image of any channels and range as (H, W, 3) uint8 to look at: its first three
    channels (one repeated for grey), each stretched from its 1st to 99th percentile unless already 8-bit."""
    picture = values[..., :3] if values.shape[2] >= 3 else np.repeat(values[..., :1], 3, axis=2)
    if picture.size and picture.min() >= 0 and picture.max() <= 255 and np.all(picture == np.round(picture)):
        return picture.astype(np.uint8)
    low, high = np.percentile(picture, 1, axis=(0, 1)), np.percentile(picture, 99, axis=(0, 1))
    stretched = (picture - low) / np.maximum(high - low, 1e-12)
    return np.round(np.clip(stretched, 0, 1) * 255).astype(np.uint8)

"""Reading images and turning them into the model's input.

Every file is used **as displayed**: an EXIF orientation tag (a phone photo stored sideways)
is applied, as OpenCV's ``imread`` does in the authors' pipeline and as an annotation tool
shows the photo, so a label drawn on the displayed image lines up with it. Every format
Pillow opens is read (the first frame of an animation). Grayscale, palette (transparency
dropped), RGBA and LA (alpha dropped), CMYK images become 8-bit RGB; 16-bit images are
scaled from their 0..65535 range, float images from 0..1 (or 0..255); other value ranges
are refused by name rather than clipped. An image with more than ``max_pixels`` pixels is
refused from its header, before anything is decoded (a decompression bomb). Every failure
is a :class:`DataFileError` whose message starts with the file's path and says what is
wrong with it.
"""

from __future__ import annotations

import os
import stat
import warnings
from collections.abc import Sequence
from typing import BinaryIO
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
# Formats Pillow registers but that are not pictures, or that it only reads through an
# outside program (EPS: Ghostscript) or a plugin the user must install (stubs).
_NOT_READ = {"EPS", "BUFR", "GRIB", "HDF5", "WMF", "MPEG", "PDF"}


def _image_suffixes() -> tuple[str, ...]:
    """Every file suffix of a format Pillow can open (JPEG, PNG, GIF, WEBP, TIFF, BMP, AVIF, ...)."""
    Image.init()
    return tuple(sorted(
        suffix for suffix, fmt in Image.registered_extensions().items() if fmt in Image.OPEN and fmt not in _NOT_READ
    ))


IMAGE_SUFFIXES = _image_suffixes()
PREDICTION_SUFFIXES = ("_labels.png", "_overlay.png", "_confidence.png")  # what `isnet predict` writes beside each name
MAX_IMAGE_PIXELS = 100_000_000  # 10 000 × 10 000; PIL's own hard limit (2 × PIL.Image.MAX_IMAGE_PIXELS) also applies
EXIF_ORIENTATION = 0x0112
_TRANSPOSED_ORIENTATIONS = (5, 6, 7, 8)  # the EXIF orientations that swap width and height


class DataFileError(OSError, ValueError):
    """An image or label file that cannot be used; the message names the file and the problem.

    It is an ``OSError`` (the file cannot be read as wanted) and a ``ValueError`` (its content
    is wrong), so callers written against either keep working.
    """


class ImageReadError(DataFileError):
    """A file that cannot be read as an image."""


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISSOCK, "a socket"),
               (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"))


def require_regular_file(path: Path, what: str = "a file") -> int:
    """The size of ``path`` when it is a regular file (a symbolic link to one included); otherwise an
    :class:`ImageReadError` naming it and what it is: a FIFO or a device would block a reader or never end."""
    try:
        status = os.stat(path)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except OSError as error:
        raise ImageReadError(f"{path}: {error.strerror or error}") from None
    if not stat.S_ISREG(status.st_mode):
        kind = next((name for test, name in _FILE_KINDS if test(status.st_mode)), "not a regular file")
        raise ImageReadError(f"{path}: is {kind}, not {what}")
    return status.st_size


def open_regular_file(path: Path, what: str = "a file") -> BinaryIO:
    """``path`` opened for reading when it is a regular file, checked on the opened file itself (a FIFO
    swapped in after a :func:`require_regular_file` would block a reader for ever). Opened without
    blocking (a FIFO's open waits for a writer), then handed back as a plain blocking file."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except OSError as error:
        raise ImageReadError(f"{path}: {error.strerror or error}") from None
    mode = os.fstat(descriptor).st_mode
    if not stat.S_ISREG(mode):
        os.close(descriptor)
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "not a regular file")
        raise ImageReadError(f"{path}: is {kind}, not {what}")
    os.set_blocking(descriptor, True)
    return os.fdopen(descriptor, "rb")


def open_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open an image file and read its header only; the caller closes it.

    Refuses directories, missing, empty, unreadable and non-image files, and images larger
    than ``max_pixels``, each with an :class:`ImageReadError` naming the file.
    """
    path = Path(path)
    handle = open_regular_file(path, "an image file")  # from here the image owns it: closing the image closes it
    try:
        image = _open_with_pillow(handle, path)
    except BaseException:
        handle.close()
        raise
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageReadError(
            f"{path}: {width}×{height} = {width * height:,} pixels is over the limit of {max_pixels:,} "
            "(a decompression bomb?); raise max_pixels (TrainConfig.max_image_pixels, --max-pixels) to accept it"
        )
    return image


def _open_with_pillow(handle: BinaryIO, path: Path) -> Image.Image:
    """Pillow's image of the opened file (its header read), or an :class:`ImageReadError` naming ``path``."""
    if os.fstat(handle.fileno()).st_size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked by the caller
            warnings.simplefilter("ignore", UserWarning)  # damaged metadata ("Truncated File Read"): named below if it matters
            return Image.open(handle)
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image (or an unsupported format)") from None
    except Image.DecompressionBombError as error:
        raise ImageReadError(
            f"{path}: refused as a possible decompression bomb: {error} (PIL's own limit: raise "
            "PIL.Image.MAX_IMAGE_PIXELS as well as max_pixels to accept such images)"
        ) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(f"{path}: unreadable image header: {error}") from None


def displayed_size(image: Image.Image) -> tuple[int, int]:
    """(height, width) of an opened image as displayed, i.e. after its EXIF orientation."""
    width, height = image.size
    if exif_orientation(image) in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return height, width


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = stored upright; 6 and 8 = turned by 90°), 1 when absent."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # "Corrupt EXIF data": read as stored upright
            return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a malformed EXIF block: the pixels are still usable as stored
        return 1


def decode_upright(image: Image.Image, path: Path, what: str = "image") -> Image.Image:
    """Decode an opened image and apply its EXIF orientation; errors name the file."""
    try:
        with warnings.catch_warnings():  # Pillow's warnings of damaged metadata ("Corrupt EXIF data"): the
            warnings.simplefilter("ignore", UserWarning)  # pixels decode, or the error below names the file
            image.load()
            return ImageOps.exif_transpose(image)
    except Exception as error:  # decoders of malformed files raise many exception types
        problem = f"{type(error).__name__}: {error}"
        raise ImageReadError(f"{path}: unreadable {what} (truncated or corrupt?): {problem}") from None


def image_size(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[int, int]:
    """(height, width) as displayed, from the header alone."""
    with open_image(path, max_pixels) as image:
        return displayed_size(image)


def read_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> np.ndarray:
    """Read an image as (H, W, 3) uint8 RGB, as displayed (EXIF orientation applied)."""
    path = Path(path)
    with open_image(path, max_pixels) as image:
        return to_rgb8(decode_upright(image, path), path)


def to_rgb8(image: Image.Image, path: Path) -> np.ndarray:
    """An image of any mode as (H, W, 3) uint8 RGB, its value range respected, or an ImageReadError naming it."""
    mode = image.mode
    if mode.startswith("I;16") or mode in ("I", "F"):
        values = np.asarray(image)
        if mode.startswith("I;16"):  # 16-bit grayscale: 0..65535 onto 0..255
            gray = scaled_to_8_bits(values, 65535)
        else:
            gray = _gray_of_unknown_range(values, mode, path)
        return np.repeat(gray[..., None], 3, axis=2)
    if (mode == "P" and "transparency" in image.info) or mode == "PA":
        image = image.convert("RGBA")  # the palette's colours; the transparency is dropped below
    try:
        return np.array(image.convert("RGB"))
    except (ValueError, OSError) as error:
        raise ImageReadError(f"{path}: image mode {mode} cannot be converted to RGB ({error})") from None


def scaled_to_8_bits(values: np.ndarray, top: int) -> np.ndarray:
    """Values of 0..``top`` onto 0..255, rounded."""
    return np.round(values.astype(np.float64) * (255 / top)).astype(np.uint8)


def _gray_of_unknown_range(values: np.ndarray, mode: str, path: Path) -> np.ndarray:
    """32-bit integer (``I``) or float (``F``) grayscale: mapped from the range its values fit, or refused."""
    kind = "32-bit integer" if mode == "I" else "floating-point"
    if values.size and not np.isfinite(values).all():
        raise ImageReadError(f"{path}: {kind} image with NaN or infinite values; convert it to 8-bit RGB")
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if mode == "F" and low >= 0 and high <= 1:
        return scaled_to_8_bits(values, 1)
    if low >= 0 and high <= 255:
        return np.round(values).astype(np.uint8)
    if mode == "I" and low >= 0 and high <= 65535:  # a 16-bit image read as 32-bit
        return scaled_to_8_bits(values, 65535)
    raise ImageReadError(
        f"{path}: {kind} image with values {low:g}..{high:g}: no known range to map onto 8 bits "
        "(expected 0..1, 0..255 or 0..65535); convert it to 8-bit RGB"
    )


def to_tensor(image: np.ndarray, mean: tuple[float, ...] = MEAN, std: tuple[float, ...] = STD) -> Tensor:
    """(H, W, C) image → (C, H, W) float32 normalised per channel (default: RGB with the ImageNet mean and std)."""
    return normalise(torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1), mean, std)


def normalise(pixels: Tensor, mean: Sequence[float] = MEAN, std: Sequence[float] = STD) -> Tensor:
    """(..., C, H, W) pixel values (uint8 or float) → float32 ``(x − mean) / std`` per channel, on ``pixels``' device."""
    shift = torch.tensor(mean, device=pixels.device).view(-1, 1, 1)
    scale = torch.tensor(std, device=pixels.device).view(-1, 1, 1)
    return (pixels.float() - shift) / scale


def find_images(inputs: list[str | Path], *, exclude: str | Path | None = None) -> list[Path]:
    """Expand files and folders (non-recursive) into a sorted list of image paths.

    Everything in a folder named like an image is listed, even a sub-folder or a broken
    link, so that it is reported as unreadable instead of silently left out. Files that
    ``isnet predict`` wrote in the folder ``exclude`` (``*_labels.png``, ``*_overlay.png``, ``*_confidence.png``,
    partial writes) are left out, so a prediction never takes its own outputs as inputs.
    """
    excluded = Path(exclude).resolve() if exclude is not None else None
    found: list[Path] = []
    for item in map(Path, inputs):
        if not item.is_dir():
            found.append(item)
            continue
        outputs_here = excluded is not None and item.resolve() == excluded
        for path in sorted(item.iterdir()):
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                continue
            if outputs_here and (path.name.endswith(PREDICTION_SUFFIXES) or path.name.endswith(".partial.png")):
                continue
            found.append(path)
    return found

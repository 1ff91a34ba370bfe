"""Reading images and turning them into the model's input.

Every file is used **as displayed**: an EXIF orientation tag (a phone photo stored sideways)
is applied, as OpenCV's ``imread`` does in the authors' pipeline and as an annotation tool
shows the photo, so a label drawn on the displayed image lines up with it. Grayscale,
palette, RGBA (alpha dropped), CMYK and 16-bit images become 8-bit RGB. An image with more
than ``max_pixels`` pixels is refused from its header, before anything is decoded (a
decompression bomb). Every failure is a :class:`DataFileError` whose message starts with
the file's path and says what is wrong with it.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps, UnidentifiedImageError
from torch import Tensor

MEAN = (123.675, 116.28, 103.53)
STD = (58.395, 57.12, 57.375)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
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


def open_image(path: str | Path, max_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """Open an image file and read its header only; the caller closes it.

    Refuses directories, missing, empty, unreadable and non-image files, and images larger
    than ``max_pixels``, each with an :class:`ImageReadError` naming the file.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageReadError(f"{path}: is a directory, not an image file")
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    if size == 0:
        raise ImageReadError(f"{path}: empty file (0 bytes)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own limit is checked below
            image = Image.open(path)
    except FileNotFoundError:
        raise ImageReadError(f"{path}: no such file") from None
    except PermissionError:
        raise ImageReadError(f"{path}: permission denied") from None
    except UnidentifiedImageError:
        raise ImageReadError(f"{path}: not an image (or an unsupported format)") from None
    except Image.DecompressionBombError as error:
        raise ImageReadError(
            f"{path}: refused as a possible decompression bomb: {error} (PIL's own limit: raise "
            "PIL.Image.MAX_IMAGE_PIXELS as well as max_pixels to accept such images)"
        ) from None
    except (OSError, ValueError, SyntaxError) as error:
        raise ImageReadError(f"{path}: unreadable image header: {error}") from None
    width, height = image.size
    if width * height > max_pixels:
        image.close()
        raise ImageReadError(
            f"{path}: {width}×{height} = {width * height:,} pixels is over the limit of {max_pixels:,} "
            "(a decompression bomb?); raise max_pixels (TrainConfig.max_image_pixels, --max-pixels) to accept it"
        )
    return image


def displayed_size(image: Image.Image) -> tuple[int, int]:
    """(height, width) of an opened image as displayed, i.e. after its EXIF orientation."""
    width, height = image.size
    if exif_orientation(image) in _TRANSPOSED_ORIENTATIONS:
        width, height = height, width
    return height, width


def exif_orientation(image: Image.Image) -> int:
    """The EXIF orientation tag (1 = stored upright; 6 and 8 = turned by 90°), 1 when absent."""
    try:
        return int(image.getexif().get(EXIF_ORIENTATION, 1))
    except Exception:  # a malformed EXIF block: the pixels are still usable as stored
        return 1


def decode_upright(image: Image.Image, path: Path, what: str = "image") -> Image.Image:
    """Decode an opened image and apply its EXIF orientation; errors name the file."""
    try:
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
        upright = decode_upright(image, path)
        if upright.mode.startswith("I;16"):  # 16-bit grayscale: keep the high byte, not a clipped low one
            gray = (np.asarray(upright) >> 8).astype(np.uint8)
            return np.repeat(gray[..., None], 3, axis=2)
        return np.array(upright.convert("RGB"))


def to_tensor(image: np.ndarray) -> Tensor:
    """(H, W, 3) uint8 RGB → (3, H, W) float32 normalised with the ImageNet mean and std."""
    tensor = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    mean = torch.tensor(MEAN).view(3, 1, 1)
    std = torch.tensor(STD).view(3, 1, 1)
    return (tensor - mean) / std


def find_images(inputs: list[str | Path]) -> list[Path]:
    """Expand files and folders (non-recursive) into a sorted list of image paths.

    Everything in a folder named like an image is listed, even a sub-folder or a broken
    link, so that it is reported as unreadable instead of silently left out.
    """
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            found += sorted(p for p in item.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        else:
            found.append(item)
    return found

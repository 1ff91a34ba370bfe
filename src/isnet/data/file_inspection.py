"""What one image or mask file is, as the dataset doctor (:mod:`isnet.data.doctor`) needs to know it.

A mask is decoded as the readers decode it (:func:`isnet.data.image.decode_upright`) but without
refusing anything, so that every encoding people store masks in is named: index maps (PNG
mode L, 1 or 16-bit), palette PNGs (the pixel values are the indices), RGB colour-coded masks,
RGB masks whose three channels are equal (a grey index map saved as RGB), and lossy JPEGs.
An image is inspected from its header (mode, channels, EXIF orientation), with tifffile for
stacks Pillow cannot open.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from isnet.data.base import LABEL_MODES
from isnet.data.channels import TIFF_SUFFIXES, tiff_shape
from isnet.data.image import MAX_IMAGE_PIXELS, DataFileError, decode_upright, displayed_size, exif_orientation, open_image
from isnet.data.info import RGB

class MaskEncoding(enum.StrEnum):
    """How a mask stores its labels (the value: the words for a message)."""

    INDEX = "index map"
    PALETTE = "palette PNG"
    SIXTEEN_BIT = "16-bit index map"
    COLOUR = "RGB colour"
    GREY_RGB = "RGB grey"


INDEX, PALETTE, SIXTEEN_BIT, COLOUR, GREY_RGB = MaskEncoding  # the short names the doctor uses


@dataclass
class MaskInfo:
    """A decoded mask: its encoding, size, and how many pixels hold each stored value (or colour)."""

    path: Path
    encoding: MaskEncoding
    shape: tuple[int, int]
    lossy: bool = False  # stored as JPEG
    values: dict[int, int] = field(default_factory=dict)  # stored value → pixels (every encoding but COLOUR)
    colours: dict[RGB, int] = field(default_factory=dict)  # colour → pixels (COLOUR)


@dataclass
class ImageInfo:
    """An image from its header: Pillow's mode (or "stack" for a TIFF Pillow cannot open), channels, sizes."""

    path: Path
    mode: str
    channels: int
    shape: tuple[int, int]  # as displayed
    stored_shape: tuple[int, int]
    orientation: int = 1


def value_counts(values: np.ndarray) -> dict[int, int]:
    """Pixels of each value of an integer label map."""
    if values.dtype == np.uint8:
        counts = np.bincount(values.ravel(), minlength=256)
        return {int(v): int(counts[v]) for v in np.flatnonzero(counts)}
    found, counts = np.unique(values, return_counts=True)
    return {int(v): int(c) for v, c in zip(found, counts)}


def colour_counts(pixels: np.ndarray) -> dict[RGB, int]:
    """(H, W, 3) uint8 colours → pixels of each colour."""
    packed = (pixels[..., 0].astype(np.int32) << 16) | (pixels[..., 1].astype(np.int32) << 8) | pixels[..., 2]
    found, counts = np.unique(packed, return_counts=True)
    return {(int(v) >> 16, (int(v) >> 8) & 255, int(v) & 255): int(c) for v, c in zip(found, counts)}


def decode_mask(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> tuple[np.ndarray, MaskEncoding, bool]:
    """A mask's pixels as the readers see them (EXIF applied): (H, W) values, or (H, W, 3) colours; its
    encoding; whether it is a lossy JPEG. An unreadable file is a :class:`DataFileError` naming it."""
    with open_image(path, max_pixels) as image:
        lossy, mode = image.format == "JPEG", image.mode
        upright = decode_upright(image, path, "label")
        if mode in LABEL_MODES:
            values = np.asarray(upright)
            encoding = PALETTE if mode == "P" else SIXTEEN_BIT if mode.startswith("I;16") else INDEX
            return (values.astype(np.uint8) if values.dtype == bool else values), encoding, lossy
        if mode == "LA":
            return np.asarray(upright)[..., 0], INDEX, lossy
        pixels = np.asarray(upright.convert("RGB"))
    if (pixels[..., 0] == pixels[..., 1]).all() and (pixels[..., 1] == pixels[..., 2]).all():
        return pixels[..., 0], GREY_RGB, lossy
    return pixels, COLOUR, lossy


def inspect_mask(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> MaskInfo:
    """The encoding, size and value (or colour) counts of a mask file."""
    pixels, encoding, lossy = decode_mask(path, max_pixels)
    info = MaskInfo(path, encoding, tuple(pixels.shape[:2]), lossy)
    if encoding == COLOUR:
        info.colours = colour_counts(pixels)
    else:
        info.values = value_counts(pixels)
    return info


def decode_cheaply(image: Image.Image, path: Path) -> None:
    """Decode an opened image, a JPEG at an eighth of its size (its DCT scaling still reads every byte of
    pixel data), so that a file cut short or damaged is a :class:`DataFileError` naming it."""
    if image.format == "JPEG":
        width, height = image.size
        image.draft(image.mode, (max(1, width // 8), max(1, height // 8)))
    decode_upright(image, path)


def inspect_image(path: Path, max_pixels: int = MAX_IMAGE_PIXELS) -> ImageInfo:
    """An image's mode, channels, displayed and stored size, EXIF orientation, from its header; its pixel
    data decoded (cheaply) to find files cut short."""
    tiff, info = path.suffix.lower() in TIFF_SUFFIXES, None
    try:
        with open_image(path, max_pixels) as image:
            info = ImageInfo(path, image.mode, len(image.getbands()), displayed_size(image), image.size[::-1],
                             exif_orientation(image))
            decode_cheaply(image, path)
    except DataFileError:
        if not tiff:
            raise
    if tiff:  # tifffile counts the channels of planar and multi-page stacks too
        height, width, channels = tiff_shape(path, max_pixels)
        if info is None:  # a stack Pillow cannot open
            return ImageInfo(path, "stack", channels, (height, width), (height, width))
        info.channels = channels
    return info

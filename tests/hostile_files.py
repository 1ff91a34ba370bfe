"""Writers of broken and unusual image files, shared by the reliability tests."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

EXIF_ORIENTATION = 0x0112


def write_png(path: Path, pixels: np.ndarray, mode: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels, mode=mode).save(path)
    return path


def random_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def truncate(path: Path, keep: float = 0.5) -> Path:
    """Keep the first ``keep`` of the file's bytes: the header survives, the pixels do not."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])
    return path


def write_bomb_png(path: Path, width: int = 100_000, height: int = 100_000) -> Path:
    """A PNG of a few dozen bytes whose header claims ``width × height`` pixels.

    Decoding it would need gigabytes; only the header may be read. Built by rewriting the
    IHDR chunk (and its CRC) of a 1×1 PNG.
    """
    write_png(path, np.zeros((1, 1), np.uint8), "L")
    data = bytearray(path.read_bytes())
    # Signature (8 bytes), IHDR length (4), "IHDR" (4), width (4), height (4), 5 more bytes, CRC (4).
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])) & 0xFFFFFFFF)
    path.write_bytes(bytes(data))
    return path


def write_rotated_jpeg(path: Path, stored: np.ndarray, orientation: int) -> Path:
    """A JPEG whose pixels are ``stored`` and whose EXIF says to show them with ``orientation``."""
    exif = Image.Exif()
    exif[EXIF_ORIENTATION] = orientation
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(stored).save(path, quality=95, exif=exif.tobytes())
    return path

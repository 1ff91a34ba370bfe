"""Tiny datasets as users really store them, written as real files: for the tests of the data workflows.

Each writer makes a folder dataset (``images/<split>``, ``masks/<split>``) of a few 48×64 scenes
(:func:`isnet.data.synthetic.draw_scene`) whose masks are stored in one of the encodings people
use: index PNGs, RGB colour-coded masks, 0/255 binary masks, ADE-style masks (0 = unlabelled),
plus images with an EXIF rotation and 4-channel TIFF stacks (RGB + a near-infrared channel).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from isnet.data import synthetic

HEIGHT, WIDTH = 48, 64
SPLITS = {"train": range(0, 8), "val": range(100, 103)}
PALETTE = synthetic.RECORD.palette


def scenes(split: str):
    return [(f"s{seed:03d}", synthetic.draw_scene(seed, HEIGHT, WIDTH)) for seed in SPLITS[split]]


def _folders(root: Path, split: str) -> tuple[Path, Path]:
    images, masks = root / "images" / split, root / "masks" / split
    images.mkdir(parents=True, exist_ok=True)
    masks.mkdir(parents=True, exist_ok=True)
    return images, masks


def write_masks(root: Path, encode, *, classes: list[str] | None = None) -> Path:
    """A folder dataset whose mask of each scene is ``encode(label)`` (an array or a PIL image)."""
    for split in SPLITS:
        images, masks = _folders(root, split)
        for stem, scene in scenes(split):
            Image.fromarray(scene.image).save(images / f"{stem}.png")
            mask = encode(scene.label)
            (mask if isinstance(mask, Image.Image) else Image.fromarray(mask)).save(masks / f"{stem}.png")
    if classes is not None:
        (root / "classes.txt").write_text("\n".join(classes) + "\n")
    return root


def colour_masks(root: Path) -> Path:
    """RGB colour-coded masks in the synthetic palette, no class list."""
    table = np.asarray(PALETTE, np.uint8)
    return write_masks(root, lambda label: table[label])


def binary_0_255(root: Path) -> Path:
    """Masks of 0 (background) and 255 (the road), as image editors save them."""
    return write_masks(root, lambda label: np.where(label == synthetic.ROAD, 255, 0).astype(np.uint8))


def ade_style(root: Path) -> Path:
    """Stored 0 = unlabelled (the top rows), k = class k − 1; classes.txt names the 6 classes."""
    def encode(label: np.ndarray) -> np.ndarray:
        stored = label.astype(np.uint8) + 1
        stored[:4] = 0
        return stored
    return write_masks(root, encode, classes=list(synthetic.CLASSES))


def exif_rotated(root: Path) -> Path:
    """Index masks; one training photo is stored sideways with EXIF orientation 6, its mask drawn on the stored pixels."""
    write_masks(root, lambda label: label.astype(np.uint8), classes=list(synthetic.CLASSES))
    stem, scene = scenes("train")[0]
    stored = np.ascontiguousarray(np.rot90(scene.image, 1))  # displayed upright after a 90° clockwise turn
    exif = Image.Exif()
    exif[0x0112] = 6
    (root / "images" / "train" / f"{stem}.png").unlink()
    Image.fromarray(stored).save(root / "images" / "train" / f"{stem}.jpg", exif=exif, quality=95)
    Image.fromarray(np.ascontiguousarray(np.rot90(scene.label.astype(np.uint8), 1))).save(
        root / "masks" / "train" / f"{stem}.png")
    return root


def four_channel_tiffs(root: Path, *, with_record: bool = True) -> Path:
    """RGB + near infrared as 16-bit 4-channel TIFFs (NIR bright on trees), index masks, a record of 4 channels."""
    import tifffile

    for split in SPLITS:
        images, masks = _folders(root, split)
        for stem, scene in scenes(split):
            nir = np.where(scene.label == synthetic.TREE, 220, 40).astype(np.uint8)
            stack = np.dstack([scene.image, nir]).astype(np.uint16) * 257  # 8 bits onto 16
            tifffile.imwrite(images / f"{stem}.tif", stack, photometric="minisblack", planarconfig="contig")
            Image.fromarray(scene.label.astype(np.uint8)).save(masks / f"{stem}.png")
    (root / "classes.txt").write_text("\n".join(synthetic.CLASSES) + "\n")
    if with_record:
        record = synthetic.RECORD.__class__(name="rgbn", classes=synthetic.CLASSES, palette=PALETTE,
                                            mean=(30000.0, 30000.0, 30000.0, 20000.0),
                                            std=(15000.0, 15000.0, 15000.0, 20000.0))
        (root / "dataset.json").write_text(record.to_json())
    return root

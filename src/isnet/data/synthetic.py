"""Street-like scenes drawn from a seed: a dataset that needs no download.

Each scene has a sky, a road with lane marks, buildings with windows, trees, cars and
people, with colour jitter and pixel noise so that a model must use shape and context, not
a lookup of colours. Used by ``isnet demo`` and the bundled sample image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from isnet.data.info import DatasetInfo

CLASSES = ("sky", "building", "road", "tree", "car", "person")
PALETTE = ((70, 130, 180), (128, 64, 64), (128, 64, 128), (60, 150, 40), (0, 0, 142), (220, 20, 60))
SKY, BUILDING, ROAD, TREE, CAR, PERSON = range(len(CLASSES))
# The record the demo's folder dataset carries (dataset.json): its colours, tested as drawn.
RECORD = DatasetInfo(name="synthetic_streets", classes=CLASSES, palette=PALETTE)


@dataclass(frozen=True)
class Scene:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    label: np.ndarray  # (H, W) uint8 class indices


def _jitter(rng: np.random.Generator, colour: tuple[int, int, int], amount: int = 30) -> np.ndarray:
    return np.clip(np.array(colour) + rng.integers(-amount, amount + 1, 3), 0, 255)


def draw_scene(seed: int, height: int = 96, width: int = 128) -> Scene:
    """Draw one scene; the same seed always gives the same scene."""
    rng = np.random.default_rng(seed)
    image = np.zeros((height, width, 3), np.float32)
    label = np.zeros((height, width), np.uint8)
    rows, cols = np.mgrid[0:height, 0:width]

    def paint(mask: np.ndarray, cls: int, colour: np.ndarray) -> None:
        image[mask] = colour
        label[mask] = cls

    unit = height / 96  # shapes are designed at 96 rows and scale with the image
    horizon = int(height * rng.uniform(0.35, 0.55))
    sky = _jitter(rng, (135, 180, 225))
    image[:] = sky * (0.8 + 0.2 * rows[..., None] / height)  # a vertical gradient
    paint(rows >= horizon, ROAD, _jitter(rng, (90, 90, 95), 15))
    for lane in range(0, width, 24):  # dashed lane marks belong to the road
        mark = (rows > horizon + (height - horizon) // 2) & (rows < horizon + (height - horizon) // 2 + 2)
        image[mark & (cols >= lane) & (cols < lane + 10)] = (230, 230, 230)

    left = 0
    while left < width:  # a row of buildings on the horizon
        building_width = int(rng.integers(width // 8, width // 3))
        top = int(rng.integers(max(horizon - height // 2, 2), horizon - 4))
        block = (rows >= top) & (rows < horizon) & (cols >= left) & (cols < left + building_width)
        paint(block, BUILDING, _jitter(rng, (150, 90, 80), 40))
        windows = block & ((rows - top) % max(int(6 * unit), 3) < unit * 2) & ((cols - left) % max(int(5 * unit), 3) < unit * 2)
        image[windows] = _jitter(rng, (230, 220, 150), 20)
        left += building_width + int(rng.integers(0, width // 10))

    for _ in range(int(rng.integers(1, 4))):  # trees: a trunk and a round crown
        x, radius = int(rng.integers(0, width)), int(rng.integers(6, 14) * unit)
        base = horizon + int(rng.integers(0, 6))
        crown = (rows - (base - 2 * radius)) ** 2 + (cols - x) ** 2 < radius**2
        trunk = (rows >= base - radius - 2) & (rows < base) & (abs(cols - x) < 2 * unit)
        paint(trunk | crown, TREE, _jitter(rng, (50, 140, 40), 25))

    for _ in range(int(rng.integers(1, 4))):  # cars on the road, bigger when nearer
        y = int(rng.integers(horizon + 4 * unit, height))
        scale = unit * (0.5 + (y - horizon) / max(height - horizon, 1))
        car_w, car_h = int(22 * scale), int(9 * scale)
        x = int(rng.integers(0, max(width - car_w, 1)))
        body = (rows >= y - car_h) & (rows < y) & (cols >= x) & (cols < x + car_w)
        cabin = (rows >= y - car_h - car_h // 2) & (rows < y - car_h) & (cols >= x + car_w // 4) & (cols < x + 3 * car_w // 4)
        paint(body | cabin, CAR, _jitter(rng, (30, 40, 160), 60))

    for _ in range(int(rng.integers(0, 4))):  # people: a head and a body
        y = int(rng.integers(horizon + 2, height))
        scale = unit * (0.5 + (y - horizon) / max(height - horizon, 1))
        x, tall = int(rng.integers(0, width)), int(14 * scale)
        body = (rows >= y - tall) & (rows < y) & (abs(cols - x) <= max(int(2 * scale), 1))
        head = (rows - (y - tall - 2)) ** 2 + (cols - x) ** 2 <= max(int(2.5 * scale), 1) ** 2
        paint(body | head, PERSON, _jitter(rng, (200, 60, 70), 40))

    image += rng.normal(0, 8, image.shape)  # sensor noise
    return Scene(np.clip(image, 0, 255).astype(np.uint8), label)


def write_dataset(root, *, num_train: int = 48, num_val: int = 16, height: int = 96, width: int = 128) -> None:
    """Write scenes as a folder dataset: ``images/{train,val}/*.png``, ``masks/...``, ``classes.txt``, ``dataset.json``."""
    from pathlib import Path

    from PIL import Image

    root = Path(root)
    for split, count, offset in (("train", num_train, 0), ("val", num_val, 100_000)):
        (root / "images" / split).mkdir(parents=True, exist_ok=True)
        (root / "masks" / split).mkdir(parents=True, exist_ok=True)
        for index in range(count):
            scene = draw_scene(offset + index, height, width)
            Image.fromarray(scene.image).save(root / "images" / split / f"{index:04d}.png")
            Image.fromarray(scene.label).save(root / "masks" / split / f"{index:04d}.png")
    (root / "classes.txt").write_text("\n".join(CLASSES) + "\n")
    (root / "dataset.json").write_text(RECORD.to_json())

"""The training augmentation: what each operation draws (distributions over many seeded draws),
that image and label move together (images whose pixels encode their own coordinates), and the
typed record a run lists in config.json and takes from ``--set data.augment.*``."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from isnet.data import LIP, Augmentation, training_transforms
from isnet.data.transforms import (
    CatMaxRatioCrop,
    GaussianBlur,
    HorizontalFlip,
    PadTo,
    PhotometricDistortion,
    Pipeline,
    RandomResize,
    RandomRotate,
)

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import first_line, isnet, tiny_training  # noqa: E402
from training_helpers import make_data  # noqa: E402

DRAWS = 300


def coordinates(height: int, width: int, dtype=np.float32) -> np.ndarray:
    """An image whose channels are each pixel's row, its column and 255 (inside the picture)."""
    rows, cols = np.mgrid[0:height, 0:width]
    return np.stack([rows, cols, np.full_like(rows, 255)], axis=-1).astype(dtype)


def blocks(height: int, width: int) -> np.ndarray:
    """A label of 10×10 blocks of 11 classes, a function of the coordinates."""
    rows, cols = np.mgrid[0:height, 0:width]
    return ((rows // 10) * 3 + cols // 10).astype(np.uint8) % 11


def uniform_ks(samples: np.ndarray, low: float, high: float) -> float:
    """Kolmogorov–Smirnov distance of ``samples`` from the uniform distribution on [low, high]."""
    ordered = np.sort((np.asarray(samples) - low) / (high - low))
    n = len(ordered)
    return float(max((np.arange(1, n + 1) / n - ordered).max(), (ordered - np.arange(n) / n).max()))


KS_CRITICAL = 1.95 / math.sqrt(DRAWS)  # α = 0.001
FLIP_BOUNDS = (DRAWS / 2 - 4 * math.sqrt(DRAWS) / 2, DRAWS / 2 + 4 * math.sqrt(DRAWS) / 2)  # ±4σ of Binomial(n, ½)


def test_scene_pipeline_draws_scales_crops_and_flips_as_intended():
    """Ratios uniform in scale_range, crop offsets uniform over the positions, flips half the time."""
    height, width, crop = 64, 96, 24
    pipeline = training_transforms(Augmentation(cat_max_ratio=1.0), (crop, crop), (width, height), (0.5, 2.0),
                                   rgb=False, seed=0)
    image = coordinates(height, width)
    ratios, positions, flips = [], [], 0
    for _ in range(DRAWS):
        out, _ = pipeline(image, blocks(height, width))
        assert out.shape == (crop, crop, 3)
        step = np.median(np.diff(out[crop // 2, :, 1]))  # source columns per output column (negative: flipped)
        flipped = step < 0
        scale = 1 / abs(step)
        k = crop // 2  # an inner column: bilinear weights there are exact, not clamped at an edge
        resized_column = (out[crop // 2, k, 1] + 0.5) * scale - 0.5
        left = resized_column - (crop - 1 - k if flipped else k)
        resized_width = int(width * scale + 0.5)
        ratios.append(scale)
        positions.append(left / (resized_width - crop))
        flips += flipped
    assert uniform_ks(ratios, 0.5, 2.0) < KS_CRITICAL
    positions = np.array(positions)
    assert positions.min() > -0.05 and positions.max() < 1.05
    assert abs(positions.mean() - 0.5) < 4 * 0.29 / math.sqrt(DRAWS)
    assert np.all(np.abs(np.histogram(positions, bins=4, range=(-0.05, 1.05))[0] / DRAWS - 0.25) < 0.1)
    assert FLIP_BOUNDS[0] < flips < FLIP_BOUNDS[1]


def test_lip_rotation_happens_at_its_rate_with_angles_uniform_in_30_degrees():
    size = 41
    augment = Augmentation(resize="exact", rotate=0.6, flip=0.0, cat_max_ratio=1.0)  # LIP's rotation alone
    pipeline = training_transforms(augment, (size, size), (size, size), (1.0, 1.0), rgb=False, seed=1)
    image = coordinates(size, size)
    angles = []
    for _ in range(DRAWS):
        out, _ = pipeline(image, blocks(size, size))
        centre = size // 2
        along_row = out[centre, centre + 1, 1] - out[centre, centre, 1]  # cos θ
        along_column = out[centre + 1, centre, 1] - out[centre, centre, 1]  # ± sin θ
        angles.append(math.degrees(math.atan2(along_column, along_row)))
    angles = np.array(angles)
    rotated = angles[np.abs(angles) > 1e-3]
    assert abs(len(rotated) - 0.6 * DRAWS) < 4 * math.sqrt(DRAWS * 0.6 * 0.4)
    assert uniform_ks(rotated, -30, 30) < 1.95 / math.sqrt(len(rotated))


@pytest.mark.parametrize("step, low, high", [("brightness", -32, 32), ("contrast", 0.5, 1.5)])
def test_photometric_steps_apply_half_the_time_with_their_ranges(step, low, high):
    only = {"brightness": dict(contrast=(1.0, 1.0)), "contrast": dict(brightness=0.0)}[step]
    distortion = Pipeline([PhotometricDistortion(saturation=(1.0, 1.0), hue=0.0, **only)], seed=2)
    grey = np.full((4, 4, 3), 100, np.uint8)
    changes = np.array([distortion(grey, None)[0][0, 0, 0] for _ in range(DRAWS)], float)
    changed = changes[changes != 100]
    assert FLIP_BOUNDS[0] < len(changed) < FLIP_BOUNDS[1]
    drawn = changed - 100 if step == "brightness" else changed / 100
    assert uniform_ks(drawn, low, high) < 2.5 / math.sqrt(len(changed))  # rounding to whole grey levels


def test_saturation_and_hue_change_colours_at_their_rate():
    colour = np.zeros((2, 2, 3), np.uint8)
    colour[...] = (200, 80, 40)
    for setting in (dict(hue=0.0), dict(saturation=(1.0, 1.0))):
        distortion = Pipeline([PhotometricDistortion(brightness=0.0, contrast=(1.0, 1.0), **setting)], seed=3)
        changed = sum(not np.array_equal(distortion(colour, None)[0], colour) for _ in range(DRAWS))
        assert FLIP_BOUNDS[0] < changed < FLIP_BOUNDS[1]


def test_blur_at_its_rate_and_never_on_the_label():
    image, label = (np.arange(30 * 30 * 3) % 251).astype(np.uint8).reshape(30, 30, 3), blocks(30, 30)
    blur = Pipeline([GaussianBlur(p=0.3, sigma=(1.0, 2.0))], seed=4)
    outcomes = [blur(image, label) for _ in range(DRAWS)]
    blurred = sum(not np.array_equal(out, image) for out, _ in outcomes)
    assert abs(blurred - 0.3 * DRAWS) < 4 * math.sqrt(DRAWS * 0.3 * 0.7)
    assert all(out_label is label for _, out_label in outcomes)


def assert_aligned(image: np.ndarray, label: np.ndarray, source_label: np.ndarray, reach: int = 2) -> None:
    """Every labelled output pixel shows a class found within ``reach`` source pixels of where the
    image says it came from; fully outside pixels are ignored in the label and black in the image."""
    inside = image[..., 2]
    assert np.all(label[inside == 255] != 255), "a pixel inside the picture lost its label"
    assert np.all(label[inside == 0] == 255), "a pixel outside the picture kept a label"
    labelled = (label != 255) & (inside == 255)  # an edge pixel's coordinates are blended with the black fill
    rows, cols = np.rint(image[..., 0]).astype(int), np.rint(image[..., 1]).astype(int)
    found = np.zeros(label.shape, bool)
    height, width = source_label.shape
    for dr in range(-reach, reach + 1):
        for dc in range(-reach, reach + 1):
            near = source_label[np.clip(rows + dr, 0, height - 1), np.clip(cols + dc, 0, width - 1)]
            found |= near == label
    assert found[labelled].all(), f"{(~found[labelled]).sum()} labelled pixels disagree with their image pixel"


GEOMETRIC = {
    "resize down": RandomResize((70, 50), (0.5, 0.5)),
    "resize up": RandomResize((70, 50), (2.0, 2.0)),
    "resize exact": RandomResize((37, 81), keep_ratio=False),
    "crop": CatMaxRatioCrop((30, 40)),
    "flip": HorizontalFlip(1.0),
    "rotate": RandomRotate(30.0, 1.0),
    "pad": PadTo((90, 120)),
}


@pytest.mark.parametrize("name", GEOMETRIC)
def test_each_geometric_operation_moves_image_and_label_together(name):
    image, label = coordinates(60, 80, np.uint8), blocks(60, 80)
    pipeline = Pipeline([GEOMETRIC[name]], seed=5)
    for _ in range(5):
        out_image, out_label = pipeline(image, label)
        assert out_image.shape[:2] == out_label.shape
        assert set(np.unique(out_label)) <= set(np.unique(label)) | {255}  # nearest: no new values
        assert_aligned(out_image, out_label, label)
    if name == "pad":
        assert (out_label == 255).any() and (out_image[out_label == 255] == 0).all()


@pytest.mark.parametrize("pipeline", ["scene", "person"])
def test_whole_training_pipelines_keep_image_and_label_aligned(pipeline):
    image, label = coordinates(100, 140, np.uint8), blocks(100, 140)
    augment = Augmentation.of_pipeline(pipeline)
    transforms = training_transforms(augment, (64, 64), (140, 100), (0.6, 1.5), rgb=False, seed=6)
    for _ in range(20):
        assert_aligned(*transforms(image, label), label)


def test_recipes_keep_their_augmentation_and_config_lists_it():
    from isnet.training.recipes import recipe

    camvid, lip = recipe("camvid_isnet"), recipe("isnet_resnet101os8_lip")
    assert camvid.data.augment == Augmentation()  # fit, class-balanced crop, flip ½, photometric ½, no rotation
    assert lip.data.augment == Augmentation(resize="exact", rotate=0.6)
    steps = training_transforms(lip.data.augment, lip.data.crop_size, lip.data.fit_size, lip.data.scale_range,
                                LIP.flip_pairs).steps
    assert [type(step).__name__ for step in steps] == [
        "RandomResize", "CatMaxRatioCrop", "HorizontalFlip", "RandomRotate", "PhotometricDistortion", "PadTo"]
    assert not steps[0].keep_ratio and steps[2].pairs == LIP.flip_pairs and steps[3].p == 0.6
    listed = json.loads(camvid.to_json())["data"]["augment"]
    assert listed["flip"] == 0.5 and listed["photometric"] == 0.5 and listed["blur"] == 0.0


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("scenes"))


@pytest.mark.slow
def test_augmentation_is_set_from_the_command_line_and_written_to_config_json(data_root, tmp_path):
    run = tmp_path / "run"
    result = isnet(*tiny_training(data_root, run, max_iters=1), "--set", "data.augment.blur=0.25",
                   "--set", "data.augment.rotate=0.5", "--set", "data.augment.hue=10")
    assert result.returncode == 0, result.stderr[-2000:]
    augment = json.loads((run / "config.json").read_text())["data"]["augment"]
    assert (augment["blur"], augment["rotate"], augment["hue"], augment["flip"]) == (0.25, 0.5, 10.0, 0.5)


def test_a_bad_augmentation_setting_is_refused_by_isnet_train(data_root, tmp_path):
    result = isnet(*tiny_training(data_root, tmp_path / "run"), "--set", "data.augment.flip=2")
    assert first_line(result, "train", 2) == "data.augment.flip must be a number from 0 to 1, not 2.0"
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("setting, expected", [
    ("data.augment.contrast=[1.5,0.5]", "data.augment.contrast must be (smallest, largest), not (1.5, 0.5)"),
    ("data.augment.resize=stretch", "data.augment.resize takes one of 'fit', 'exact', not 'stretch'"),
    ("data.augment.blurr=0.5", "unknown key data.augment.blurr: Augmentation has no field 'blurr' (did you mean"),
    ("data.augment.blur_sigma=[0,1]", "data.augment.blur_sigma must be a number from 0.01 to 50, not 0"),
    ("data.augment=0", "data.augment is a group of settings; set its fields one by one, e.g. data.augment.resize=..."),
])
def test_bad_augmentation_settings_are_named(setting, expected):
    from isnet.training.overrides import parse_overrides, with_overrides
    from isnet.training.recipes import recipe
    from isnet.utils.errors import ConfigError

    with pytest.raises(ConfigError) as error:
        with_overrides(recipe("camvid_isnet"), parse_overrides([setting]))
    assert str(error.value).startswith(expected)

"""Hostile data: every broken, unusual or misleading file is a clear error naming the file
before training starts, or, when the user asked to skip bad samples, a logged skip; never a
crash in the middle of an epoch and never a silently wrong label.

Run the whole reliability suite with ``pytest -k "hostile or corrupt or fault or resume or malformed"``.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from isnet.data import DataFileError, FolderDataset, train_transforms
from isnet.data.image import read_image
from isnet.data.validate import BadSampleLog, check_dataset
from isnet.data.sampling import SeededSamples
from isnet.training.loop import list_checkpoints, train

sys.path.insert(0, str(Path(__file__).parent))
from hostile_files import random_image, truncate, write_bomb_png, write_png, write_rotated_jpeg  # noqa: E402
from training_helpers import HEIGHT, WIDTH, make_data, tiny_config  # noqa: E402

NUM_CLASSES = 6  # the synthetic scenes' classes


pytestmark = pytest.mark.usefixtures("one_thread")  # fast on a shared machine; bitwise-stable kills


@pytest.fixture(scope="module")
def clean_data(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("clean"))


@pytest.fixture
def data(clean_data: Path, tmp_path: Path) -> Path:
    """A fresh copy of the 12 + 3 synthetic scenes (images/{train,val}/NNNN.png, masks/...)."""
    return shutil.copytree(clean_data, tmp_path / "data")


def image_of(root: Path, index: int = 3, split: str = "train") -> Path:
    return root / "images" / split / f"{index:04d}.png"


def label_of(root: Path, index: int = 3, split: str = "train") -> Path:
    return root / "masks" / split / f"{index:04d}.png"


def start_training(root: Path, tmp_path: Path, **overrides) -> str:
    """Start a training run on ``root`` that must stop before its first step; return the error.

    Checks that the run left nothing behind: no run folder, so no checkpoint and no output.
    """
    run = tmp_path / "run"
    with pytest.raises((DataFileError, FileNotFoundError)) as error:
        train(tiny_config(root, run, **overrides))
    assert not run.exists(), f"a run that never started wrote {sorted(run.rglob('*'))}"
    return str(error.value)


# --- one bad file among good ones ---------------------------------------------------------
# Each case damages sample 3 of the training split and returns the file at fault and the
# words that must explain the problem. "decode" cases pass a header check and are found by
# the full check (check_data="full") or during training.


def zero_byte_image(root: Path) -> tuple[Path, str]:
    image_of(root).write_bytes(b"")
    return image_of(root), "empty file (0 bytes)"


def text_file_named_png(root: Path) -> tuple[Path, str]:
    image_of(root).write_text("this is not an image\n")
    return image_of(root), "not an image"


def directory_named_like_an_image(root: Path) -> tuple[Path, str]:
    # Stands in for an unreadable file: the tests run as root, for whom permissions do not apply.
    image_of(root).unlink()
    image_of(root).mkdir()
    return image_of(root), "is a directory"


def image_and_label_of_different_sizes(root: Path) -> tuple[Path, str]:
    write_png(image_of(root), random_image(HEIGHT - 8, WIDTH))
    return image_of(root), f"is {HEIGHT - 8}×{WIDTH} (height×width) but its label {label_of(root)} is {HEIGHT}×"


def colour_label(root: Path) -> tuple[Path, str]:
    label = np.asarray(Image.open(label_of(root)))
    write_png(label_of(root), np.stack([label * 40] * 3, axis=2))
    return label_of(root), "label is a colour RGB image; expected an index map"


def jpeg_label(root: Path) -> tuple[Path, str]:
    Image.open(label_of(root)).save(label_of(root), format="JPEG")  # JPEG bytes under the .png name
    return label_of(root), "label stored as JPEG"


def two_channel_label(root: Path) -> tuple[Path, str]:
    label = np.asarray(Image.open(label_of(root)))
    Image.fromarray(np.stack([label, np.full_like(label, 255)], axis=2), mode="LA").save(label_of(root))
    return label_of(root), "label is an LA image"


def decompression_bomb(root: Path) -> tuple[Path, str]:
    write_bomb_png(image_of(root), 100_000, 100_000)
    return image_of(root), "decompression bomb"


def exif_rotation_against_the_label(root: Path) -> tuple[Path, str]:
    """A phone photo stored sideways (EXIF 6) whose label was drawn on the stored pixels."""
    image_of(root).unlink()
    rotated = write_rotated_jpeg(root / "images/train/0003.jpg", random_image(HEIGHT, WIDTH), orientation=6)
    return rotated, f"EXIF orientation 6, which turns its stored {HEIGHT}×{WIDTH} pixels"


def truncated_image(root: Path) -> tuple[Path, str]:
    truncate(image_of(root))
    return image_of(root), "truncated or corrupt"


def truncated_label(root: Path) -> tuple[Path, str]:
    truncate(label_of(root))
    return label_of(root), "unreadable label (truncated or corrupt?)"


def label_value_outside_the_classes(root: Path) -> tuple[Path, str]:
    label = np.asarray(Image.open(label_of(root))).copy()
    label[5, 7] = NUM_CLASSES + 3
    write_png(label_of(root), label)
    problem = f"label values [{NUM_CLASSES + 3}] are not defined by synthetic_streets (valid stored values: 0..5, 255)"
    return label_of(root), problem


def sixteen_bit_label_over_255(root: Path) -> tuple[Path, str]:
    label = np.asarray(Image.open(label_of(root))).astype(np.uint16)
    label[0, 0] = 300  # as an 8-bit value this would wrap round to class 44, or crash
    write_png(label_of(root), label)
    return label_of(root), "label values 0..300 do not fit 0..255"


HEADER_CASES: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "zero_byte_image": zero_byte_image,
    "text_file_named_png": text_file_named_png,
    "directory_named_like_an_image": directory_named_like_an_image,
    "image_and_label_of_different_sizes": image_and_label_of_different_sizes,
    "colour_label": colour_label,
    "jpeg_label": jpeg_label,
    "two_channel_label": two_channel_label,
    "decompression_bomb": decompression_bomb,
    "exif_rotation_against_the_label": exif_rotation_against_the_label,
}
DECODE_CASES: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "truncated_image": truncated_image,
    "truncated_label": truncated_label,
    "label_value_outside_the_classes": label_value_outside_the_classes,
    "sixteen_bit_label_over_255": sixteen_bit_label_over_255,
}
ALL_CASES = {**HEADER_CASES, **DECODE_CASES}


@pytest.mark.parametrize("case", ALL_CASES)
def test_hostile_file_stops_training_before_the_first_step(case, data, tmp_path):
    bad, problem = ALL_CASES[case](data)
    message = start_training(data, tmp_path, check_data="full" if case in DECODE_CASES else "headers")
    assert f"{bad}: " in message or f"{bad} is " in message, message  # the file is named ...
    assert problem in message  # ... with what is wrong with it
    assert "skip_bad_samples" in message  # and the way to go on without it


@pytest.mark.parametrize("case", ALL_CASES)
def test_hostile_file_is_skipped_and_logged_when_asked(case, data, tmp_path, capsys):
    bad, problem = ALL_CASES[case](data)
    dataset = tiny_config(data, tmp_path).data.build("train", train=True)
    log_file = tmp_path / "run" / "bad_samples.txt"
    kept = check_dataset(dataset, name="train", full=case in DECODE_CASES, skip_bad=True, log=BadSampleLog(log_file))
    assert len(kept) == len(dataset) - 1
    assert all(bad not in pair for pair in kept.pairs)
    logged = log_file.read_text()
    assert str(bad) in logged and problem in logged
    assert f"skipping bad sample: {bad}" in capsys.readouterr().err


def test_hostile_decode_failure_during_training_is_replaced_deterministically(data, tmp_path, capsys):
    # A truncated image passes the header check; when it is drawn, the next sample takes its place.
    bad, _ = truncated_image(data)
    dataset = tiny_config(data, tmp_path).data.build("train", train=True)
    bad_index = [image for image, _ in dataset.pairs].index(bad)
    log = BadSampleLog(tmp_path / "bad_samples.txt")
    replaced = SeededSamples(dataset, log)[(bad_index, 1234)]
    expected = SeededSamples(dataset)[(bad_index + 1, 1234)]
    assert replaced["path"] == expected["path"] == str(image_of(data, 4))
    assert (replaced["image"] == expected["image"]).all() and (replaced["label"] == expected["label"]).all()
    assert str(bad) in (tmp_path / "bad_samples.txt").read_text()
    with pytest.raises(DataFileError, match=str(bad)):  # without skipping: the error naming the file
        SeededSamples(dataset)[(bad_index, 1234)]


def test_hostile_samples_skipped_before_and_during_a_training_run(data, tmp_path, capsys):
    unusable, header_problem = zero_byte_image(data)  # dropped by the pre-flight check
    undecodable = truncate(image_of(data, 5))  # found when drawn during training
    run = tmp_path / "run"
    train(tiny_config(data, run, max_iters=3, skip_bad_samples=True))  # 12 draws cover the 11 samples
    logged = (run / "bad_samples.txt").read_text().splitlines()
    assert [line.split(": ")[0] for line in logged] == [str(unusable), str(undecodable)]
    assert header_problem in logged[0] and "truncated" in logged[1]
    err = capsys.readouterr().err
    assert f"skipping bad sample: {unusable}" in err and f"skipping bad sample: {undecodable}" in err
    assert (run / "model.safetensors").is_file()


def test_hostile_file_found_during_training_stops_with_its_name(data, tmp_path):
    bad = truncate(image_of(data, 5))  # passes the default header check
    run = tmp_path / "run"
    with pytest.raises(DataFileError, match=f"{bad}: unreadable image"):
        train(tiny_config(data, run, max_iters=6, checkpoint_interval=1))
    from isnet.weights.checkpoint import load_training_checkpoint

    for checkpoint in list_checkpoints(run):  # whatever was saved before is intact
        load_training_checkpoint(checkpoint)
    assert not list((run / "checkpoints").glob(".*.isnet-*.partial*")) and not (run / "model.safetensors").exists()


def test_hostile_images_over_the_configured_pixel_limit(data, tmp_path):
    message = start_training(data, tmp_path, max_image_pixels=1000)
    assert "12 of 12 train (training) sample(s) cannot be used" in message
    assert f"{image_of(data, 0)}: 64×48 = 3,072 pixels is over the limit of 1,000" in message


# --- the dataset's layout -------------------------------------------------------------------


def missing_split_folder(root: Path) -> tuple[str, str]:
    shutil.rmtree(root / "images/val")
    return str(root / "images/val"), "not found"


def empty_split_folder(root: Path) -> tuple[str, str]:
    for path in (root / "images/train").iterdir():
        path.unlink()
    return str(root / "images/train"), "the split is empty"


def image_without_label(root: Path) -> tuple[str, str]:
    label_of(root).unlink()
    return str(image_of(root)), f"1 image(s) without a label file: {image_of(root)} (expected {label_of(root)})"


def label_without_image(root: Path) -> tuple[str, str]:
    image_of(root).unlink()
    return str(label_of(root)), "1 label file(s) without an image"


def duplicate_stems(root: Path) -> tuple[str, str]:
    Image.open(image_of(root)).save(root / "images/train/0003.jpg")
    return str(root / "images/train/0003.jpg"), "two images share the stem '0003'"


LAYOUT_CASES = {
    "missing_split_folder": missing_split_folder,
    "empty_split_folder": empty_split_folder,
    "image_without_label": image_without_label,
    "label_without_image": label_without_image,
    "duplicate_stems": duplicate_stems,
}


@pytest.mark.parametrize("case", LAYOUT_CASES)
def test_hostile_dataset_layout_stops_training_before_it_starts(case, data, tmp_path):
    named, problem = LAYOUT_CASES[case](data)
    message = start_training(data, tmp_path, skip_bad_samples=True)  # a wrong layout is never skipped
    assert named in message and problem in message


@pytest.mark.skipif(os.geteuid() == 0, reason="permissions do not apply to root; see directory_named_like_an_image")
def test_hostile_permission_denied_is_named(data, tmp_path):
    image_of(data).chmod(0)
    message = start_training(data, tmp_path)
    assert f"{image_of(data)}: permission denied" in message


# --- unusual files that are fine, and must be read right ------------------------------------


def test_hostile_palette_label_reads_as_indices(data):
    indices = np.asarray(Image.open(label_of(data)))
    palette = Image.fromarray(indices, mode="P")
    palette.putpalette([channel for k in range(256) for channel in (255 - k, 7 * k % 256, 99)])
    palette.save(label_of(data))
    assert Image.open(label_of(data)).mode == "P"
    dataset = FolderDataset(data, images_dir="images/train", masks_dir="masks/train")
    _, label = dataset.load(3)
    np.testing.assert_array_equal(label, indices)  # the indices, not the colours they are shown in


def test_hostile_16bit_label_within_0_255_is_accepted(data):
    indices = np.asarray(Image.open(label_of(data)))
    indices = np.where(np.arange(indices.size).reshape(indices.shape) % 17 == 0, 255, indices)  # some ignored pixels
    write_png(label_of(data), indices.astype(np.uint16))
    assert Image.open(label_of(data)).mode.startswith("I;16")
    dataset = FolderDataset(data, images_dir="images/train", masks_dir="masks/train")
    np.testing.assert_array_equal(dataset.load(3)[1], indices)


@pytest.mark.parametrize(
    "mode, pixel, expected",
    [
        ("L", 77, (77, 77, 77)),
        ("RGBA", (10, 20, 30, 0), (10, 20, 30)),  # alpha dropped, colour kept
        ("CMYK", (0, 255, 255, 0), (255, 0, 0)),  # cyan 0, magenta and yellow full: red
        ("I;16", 0x1234, (0x12, 0x12, 0x12)),  # 16-bit: the high byte, not a clipped 255
        ("P", 1, (200, 100, 50)),
    ],
    ids=["grayscale", "rgba", "cmyk", "16bit", "palette"],
)
def test_hostile_image_modes_become_rgb(mode, pixel, expected, tmp_path):
    image = Image.new(mode, (5, 4), pixel)
    if mode == "P":
        image.putpalette([0, 0, 0, 200, 100, 50])
    path = tmp_path / ("image.jpg" if mode == "CMYK" else "image.png")
    image.save(path, **({"quality": 100} if mode == "CMYK" else {}))
    pixels = read_image(path)
    assert pixels.shape == (4, 5, 3) and pixels.dtype == np.uint8
    np.testing.assert_allclose(pixels.reshape(-1, 3).mean(0), expected, atol=2)


def test_hostile_exif_rotated_jpeg_is_used_as_displayed_and_stays_aligned(tmp_path):
    # Stored sideways: the left half is red, the right half blue. EXIF orientation 6 says
    # "turn 90° clockwise to display", which puts red on top. The label is drawn on the
    # displayed photo: class 1 on top, class 2 below.
    stored = np.zeros((32, 48, 3), np.uint8)
    stored[:, :24] = (255, 0, 0)
    stored[:, 24:] = (0, 0, 255)
    write_rotated_jpeg(tmp_path / "images/photo.jpg", stored, orientation=6)
    label = np.full((48, 32), 2, np.uint8)
    label[:24] = 1
    write_png(tmp_path / "masks/photo.png", label)
    dataset = FolderDataset(tmp_path, ["a", "b", "c"])
    dataset.check_sample(0)
    image, loaded = dataset.load(0)
    assert image.shape == (48, 32, 3)
    red, blue = image[loaded == 1].mean(0), image[loaded == 2].mean(0)
    assert red[0] > 200 and red[2] < 60 and blue[2] > 200 and blue[0] < 60


def test_hostile_image_smaller_than_the_crop_is_padded_with_ignore(tmp_path):
    write_png(tmp_path / "images/small.png", random_image(10, 12))
    write_png(tmp_path / "masks/small.png", np.ones((10, 12), np.uint8))
    transform = train_transforms(crop_size=(40, 56), fit_size=(12, 10), scale_range=(1.0, 1.0), seed=0)
    sample = FolderDataset(tmp_path, ["a", "b"], transform=transform)[0]
    assert sample["image"].shape == (3, 40, 56) and sample["label"].shape == (40, 56)
    assert (sample["label"][:10, :12] == 1).all()
    assert (sample["label"][10:] == 255).all() and (sample["label"][:, 12:] == 255).all()


@pytest.mark.parametrize("size", [(2, 600), (600, 2), (1, 1)], ids=["wide", "tall", "one_pixel"])
def test_hostile_extreme_aspect_ratio_never_resizes_to_zero(size, tmp_path):
    write_png(tmp_path / "images/strip.png", random_image(*size))
    write_png(tmp_path / "masks/strip.png", np.ones(size, np.uint8))
    for seed in range(5):
        transform = train_transforms(crop_size=(40, 56), fit_size=(64, 48), scale_range=(0.5, 2.0), seed=seed)
        sample = FolderDataset(tmp_path, ["a", "b"], transform=transform)[0]
        assert sample["image"].shape == (3, 40, 56)
        assert set(sample["label"].unique().tolist()) <= {1, 255} and (sample["label"] == 1).any()

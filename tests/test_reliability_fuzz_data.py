"""Every data file a user can hand ``isnet``, damaged or mistaken: ``dataset.json``,
``classes.txt``, a checkpoint's dataset record, images, calibration folders.

Dataset records are checked in one place (``isnet.data.record_rules``, run by
``DatasetInfo.__post_init__``); a refused one is one line naming the file. Damaged records
and images are drawn by hypothesis (a fixed seed: the same examples on every run). A text
file has no checksum: a flipped bit inside a class name gives another valid name, which is
read as written (the tests say exactly which damages may be accepted); everything else is
refused by name, through the command a user runs (``isnet train``, ``isnet predict``,
``isnet quantize``) in process, and a few cases in a subprocess.
"""

from __future__ import annotations

import io
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image

from isnet.data.folder import folder_record
from isnet.data.image import DataFileError
from isnet.data.info import COCO_STUFF_171, DATASETS, DatasetInfo
from isnet.data.record_rules import record_problems
from isnet.model.segmentor import build_model
from isnet.weights.checkpoint import CONFIG_METADATA_KEY, DATASET_METADATA_KEY

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import first_line, isnet, tiny_training  # noqa: E402
from fuzz_files import Damage, damaged_copy, damages, fuzz_settings, refusal, run_isnet  # noqa: E402
from hostile_files import random_image, write_png  # noqa: E402
from serve_helpers import TINY, tiny_checkpoint  # noqa: E402
from training_helpers import make_data  # noqa: E402


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("scenes"))


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return tiny_checkpoint(tmp_path_factory.mktemp("model") / "tiny.safetensors")


def test_builtin_dataset_records_pass_the_rules():
    for record in (*DATASETS.values(), COCO_STUFF_171):
        assert record_problems(record) == [], record.name
        assert len(set(record.classes)) == record.num_classes, record.name  # COCO-Stuff's and ADE20K's names too


# --- the rules, each refused with the file named -----------------------------------------------

def _record(**changes) -> str:
    """The synthetic dataset's record as JSON, with ``changes`` made to it."""
    from isnet.data.synthetic import RECORD

    data = json.loads(RECORD.to_json())
    data.update(changes)
    return json.dumps(data)


CLASSES = ["sky", "road", "building", "tree", "car", "person"]
PALETTE = [[70, 130, 180], [128, 64, 128], [70, 70, 70], [60, 150, 40], [0, 0, 142], [220, 20, 60]]
RECORD_CASES = {  # dataset.json content → words of the message
    "repeated_name": (_record(classes=[*CLASSES[:5], "road"]), "class name 'road' is given 2 times (classes 1, 5)"),
    "empty_name": (_record(classes=[*CLASSES[:5], " "]), "class 5 has an empty name"),
    "colour_over_255": (_record(palette=[*PALETTE[:5], [300, 0, 0]]), "colour of class 5 must be three integers in 0..255"),
    "colour_of_two_values": (_record(palette=[*PALETTE[:5], [1, 2]]), "colour of class 5 must be three integers"),
    "colour_of_fractions": (_record(palette=[*PALETTE[:5], [0.5, 0, 0]]), "colour of class 5 must be three integers"),
    "ignore_index_inside": (_record(ignore_index=3), "ignore_index 3 is one of the 6 classes (0..5)"),
    "no_classes": (_record(classes=[], palette=[]), "no classes: a dataset needs at least one class name"),
    "zero_std": (_record(std=[58.4, 0, 57.4]), "std must be finite numbers above 0, one per image channel"),
    "zero_test_size": (_record(test={"fit_size": [0, 48]}), "test.fit_size must be two positive integers"),
    "not_a_record": ("[1, 2, 3]", "a dataset record is a JSON object"),
}


def folder_with_record(data_root: Path, folder: Path, *, record: str | None = None, classes: bytes | None = None) -> Path:
    """A copy of the synthetic dataset whose ``dataset.json`` (or, without one, ``classes.txt``) is replaced."""
    root = shutil.copytree(data_root, folder, dirs_exist_ok=True)
    if record is not None:
        (root / "dataset.json").write_text(record)
    if classes is not None:
        (root / "dataset.json").unlink(missing_ok=True)
        (root / "classes.txt").write_bytes(classes)
    return root


@pytest.mark.parametrize("case", RECORD_CASES)
def test_malformed_dataset_record_is_refused_naming_the_file(case, data_root, tmp_path, capfd):
    content, words = RECORD_CASES[case]
    root = folder_with_record(data_root, tmp_path / "data", record=content)
    run = tmp_path / "run"
    message = refusal(*run_isnet(tiny_training(root, run), capfd), "train", root / "dataset.json")
    assert message.startswith(f"{root / 'dataset.json'}: not a usable dataset record: ") and words in message, message
    assert not run.exists()


@pytest.mark.parametrize("content, words", [
    (b"sky\nroad\nbuilding\ntree\ncar\nroad\n", "class name 'road' is given 2 times (classes 1, 5)"),
    (b"\n \n\t\n", "the class list is empty"),
    (b"sky\nroad\n", "the model has 6 classes (model.num_classes) but the train data (folder: {path}) has 2"),
])
def test_malformed_class_list_is_refused_naming_the_file(content, words, data_root, tmp_path, capfd):
    root = folder_with_record(data_root, tmp_path / "data", classes=content)
    path, run = root / "classes.txt", tmp_path / "run"
    status, output = run_isnet(tiny_training(root, run), capfd)
    message = refusal(status, output, "train", path, statuses=(1, 2))
    assert words.format(path=path) in message, message
    assert not run.exists()


@pytest.mark.parametrize("name", ["dataset.json", "classes.txt"])
def test_dataset_files_of_another_kind_are_refused_naming_the_file(name, data_root, checkpoint, tmp_path, capfd):
    for other, words in ((encoded(random_image(8, 8), "PNG"), "not UTF-8 text (byte 0x89"), (checkpoint.read_bytes(), "not ")):
        content = {"record": ""} if name == "dataset.json" else {"classes": b""}
        root = folder_with_record(data_root, tmp_path / "data", **content)
        (root / name).write_bytes(other)
        message = refusal(*run_isnet(tiny_training(root, tmp_path / "run"), capfd), "train", root / name)
        assert message.startswith(f"{root / name}: not ") and words in message, message
        assert not (tmp_path / "run").exists()


def test_malformed_dataset_record_of_a_checkpoint_is_refused_naming_the_file(tmp_path, capfd):
    """A model file whose record repeats a class name (crafted: a record cannot be made so in isnet)."""
    from safetensors.torch import save_file

    record = json.loads(_record(classes=["sky", "road", "sky", "car"], palette=PALETTE[:4]))
    path = tmp_path / "model.safetensors"
    save_file(build_model(TINY).state_dict(), str(path),
              metadata={CONFIG_METADATA_KEY: TINY.to_json(), DATASET_METADATA_KEY: json.dumps(record)})
    image = write_png(tmp_path / "x.png", random_image(30, 40))
    message = refusal(*run_isnet(["predict", image, "--checkpoint", path, "--output", tmp_path / "out"], capfd),
                      "predict", path)
    assert message == (f"{path}: unusable dataset record in the metadata: dataset record 'synthetic_streets': "
                       "class name 'sky' is given 2 times (classes 0, 2)")


def test_malformed_dataset_records_in_a_subprocess(data_root, tmp_path):
    root = folder_with_record(data_root, tmp_path / "a", record=RECORD_CASES["ignore_index_inside"][0])
    assert first_line(isnet(*tiny_training(root, tmp_path / "run_a")), "train", 1) == (
        f"{root / 'dataset.json'}: not a usable dataset record: dataset record 'synthetic_streets': ignore_index 3 is "
        "one of the 6 classes (0..5); it must lie outside them (255 is usual)")
    root = folder_with_record(data_root, tmp_path / "b", classes=b"sky\nroad\nbuilding\ntree\ncar\nroad\n")
    assert first_line(isnet(*tiny_training(root, tmp_path / "run_b")), "train", 1) == (
        f"{root / 'classes.txt'}: not a usable class list: dataset record 'folder': class name 'road' is given 2 "
        "times (classes 1, 5)")
    assert not (tmp_path / "run_a").exists() and not (tmp_path / "run_b").exists()


# --- damaged dataset.json and classes.txt ------------------------------------------------------


def assert_refused_by_train(root: Path, path: Path, tmp_path: Path, capfd) -> None:
    """The refusal ``folder_record`` gives is what ``isnet train`` tells the user, in one line."""
    run = tmp_path / "run"
    status, output = run_isnet(tiny_training(root, run), capfd)
    refusal(status, output, "train", path, statuses=(1, 2))
    assert not run.exists()


def test_fuzz_dataset_json_damaged_is_refused_by_name_or_read_as_written(data_root, tmp_path, capfd):
    original = (data_root / "dataset.json").read_bytes()

    @fuzz_settings(25)
    @given(data=st.data())
    def check(data):
        damage = data.draw(damages(len(original)), label="damage")
        root = folder_with_record(data_root, tmp_path / "data", record="")
        path = damaged_copy(data_root / "dataset.json", root / "dataset.json", damage)
        try:
            record = folder_record(root)
        except DataFileError as error:
            assert str(error).startswith(f"{path}: not "), str(error)
            if damage.kind != "flipped" or data.draw(st.integers(0, 4), label="through isnet train") == 0:
                assert_refused_by_train(root, path, tmp_path, capfd)
            return
        # Accepted: a flipped bit inside a name or a number, giving a record that passes the rules.
        assert damage.kind == "flipped" and record_problems(record) == [], str(damage)
        assert DatasetInfo.from_json(path.read_text()) == record

    check()


def test_fuzz_class_list_damaged_is_refused_by_name_or_read_as_written(data_root, tmp_path, capfd):
    original = (data_root / "classes.txt").read_bytes()
    names = [line for line in original.decode().splitlines() if line.strip()]

    @fuzz_settings(25)
    @given(data=st.data())
    def check(data):
        damage = data.draw(damages(len(original)), label="damage")
        root = folder_with_record(data_root, tmp_path / "data", classes=damage.apply(original))
        path = root / "classes.txt"
        try:
            record = folder_record(root)
            accepted = len(record.classes) == len(names)
        except DataFileError as error:
            assert str(error).startswith(f"{path}: "), str(error)
            accepted = False
        if not accepted:  # refused when read, or when its class count meets the model's
            assert_refused_by_train(root, path, tmp_path, capfd)
            return
        # Accepted: as many names as before, only the damaged one changed (no checksum can tell).
        read = list(record.classes)
        changed = [k for k, (old, new) in enumerate(zip(names, read)) if old != new]
        assert len(changed) <= 1 and read == [line.strip() for line in path.read_text().splitlines() if line.strip()]
        assert damage.kind == "flipped" or (damage.kind == "cut" and changed in ([], [len(names) - 1])), str(damage)

    check()


# --- images --------------------------------------------------------------------------------------

FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP", "TIFF")
LOSSLESS = {"PNG", "GIF", "BMP", "TIFF"}  # (GIF: the palette image it stores)


def encoded(image: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format=fmt)
    return buffer.getvalue()


@pytest.mark.filterwarnings("error::UserWarning")  # Pillow's complaints about damaged metadata never reach the user
def test_fuzz_damaged_images_are_listed_by_name_or_segmented(checkpoint, tmp_path, capfd):
    """``isnet predict`` on one damaged image: listed with its path and problem, and nothing written
    for it; or, where the damage leaves a decodable image, segmented. PNG's CRCs find every
    flipped bit; a cut is found in every format unless only the trailer after the pixels is cut."""
    pixels = random_image(40, 56, seed=3)
    files = {fmt: encoded(pixels, fmt) for fmt in FORMATS}

    @fuzz_settings(40)
    @given(fmt=st.sampled_from(FORMATS), data=st.data())
    def check(fmt, data):
        damage = data.draw(damages(len(files[fmt])), label="damage")
        folder = tmp_path / "in"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        path = folder / f"photo.{fmt.lower()}"
        path.write_bytes(damage.apply(files[fmt]))
        output = tmp_path / "out"
        shutil.rmtree(output, ignore_errors=True)
        # --max-pixels: a flipped size field can declare a huge image; refused at once (named) instead of segmented for seconds
        status, printed = run_isnet(["predict", path, "--checkpoint", checkpoint, "--output", output,
                                     "--max-pixels", 50_000], capfd)
        assert "Traceback" not in printed and status in (0, 1), printed[-2000:]
        if status == 1:
            assert any(line.startswith(f"  {path}: ") for line in printed.splitlines()), printed[-2000:]
            assert not output.exists() or list(output.iterdir()) == [], printed
            return
        assert (output / "photo_labels.png").is_file(), printed
        assert damage.kind != "empty" and (damage.kind != "flipped" or fmt != "PNG"), str(damage)
        if damage.kind == "cut":  # only bytes after the pixels were cut: the image is whole
            assert fmt in LOSSLESS and np.array_equal(np.asarray(Image.open(path).convert("RGB")),
                                                      np.asarray(Image.open(io.BytesIO(files[fmt])).convert("RGB")))

    check()


# --- calibration folders -------------------------------------------------------------------------


def test_malformed_calibration_folders_are_refused_naming_the_folder_or_image(checkpoint, tmp_path, capfd):
    good = write_png(tmp_path / "good" / "a.png", random_image(32, 40)).parent
    empty = tmp_path / "empty"
    empty.mkdir()
    notes = tmp_path / "notes"
    notes.mkdir()
    (notes / "readme.txt").write_text("not images")
    cases = [(tmp_path / "missing", "--calibration {path}: no such folder"),
             (good / "a.png", "--calibration {path}: not a folder of images"),
             (empty, "--calibration {path}: no images there"),
             (notes, "--calibration {path}: no images there")]
    for fmt, damage in (("png", Damage("empty")), ("png", Damage("cut", 60)), ("jpg", Damage("cut", 10))):
        folder = shutil.copytree(good, tmp_path / f"bad_{fmt}_{damage.kind}")
        bad = folder / f"b.{fmt}"
        bad.write_bytes(damage.apply(encoded(random_image(32, 40), "PNG" if fmt == "png" else "JPEG")))
        cases.append((folder, f"{bad}: "))
    text = shutil.copytree(good, tmp_path / "text")
    (text / "c.png").write_text("a text file under an image's name")
    cases.append((text, f"{text / 'c.png'}: not an image"))
    for folder, words in cases:
        output = tmp_path / "int8" / "model.xml"
        status, printed = run_isnet(["quantize", "--checkpoint", checkpoint, "--calibration", folder,
                                     "--output", output], capfd)
        message = refusal(status, printed, "quantize", folder, statuses=(1, 2), alone=False)
        assert words.format(path=folder) in message, message
        assert not output.exists()
    # As a user meets one: a subprocess.
    folder, words = cases[4]
    result = isnet("quantize", "--checkpoint", checkpoint, "--calibration", folder, "--output", tmp_path / "q.xml")
    assert first_line(result, "quantize", 1).startswith(words) and not (tmp_path / "q.xml").exists()

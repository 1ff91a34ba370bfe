"""The dataset doctor never guesses (issue 27, point 7): RGB masks are mapped only by a palette the user
gave or by the colours found (listed with their pixels), the names of classes.txt are kept, a value just
past the classes is offered as the ignore value, and every piece of advice ``check`` prints is followed
here, after which ``check`` passes.

Run the reliability suite with ``pytest -k "hostile or corrupt or fault or resume or malformed"``.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
import dataset_files  # noqa: E402
from cli_helpers import first_line, isnet  # noqa: E402

from isnet.data import synthetic  # noqa: E402
from isnet.data.info import make_palette  # noqa: E402

NAMES = list(synthetic.CLASSES)
# The colour of class k is the generated colour of class k + 1: a generated palette would map every colour,
# each to the wrong class (what `convert` did with a classes.txt and no colours).
COLOURS = [tuple(c) for c in make_palette(len(NAMES) + 1)[1:]]


def camvid_coloured(root: Path) -> Path:
    table = np.asarray(COLOURS, np.uint8)
    return dataset_files.write_masks(root, lambda label: table[label], classes=NAMES)


def advice(stdout: str, finding: str) -> str:
    lines = stdout.splitlines()
    at = next(number for number, line in enumerate(lines) if finding in line)
    return lines[at + 1]


def command_in(line: str) -> list[str]:
    return re.search(r"`isnet ([^`]+)`", line).group(1).split()


def test_hostile_rgb_masks_with_classes_txt_are_never_mapped_by_a_palette_not_given(tmp_path):
    root = camvid_coloured(tmp_path / "camvid")
    check = isnet("data", "check", root, "--output", tmp_path / "report")
    assert check.returncode == 1
    line = advice(check.stdout, "mask(s) are RGB colour images (6 colours)")
    assert f"{root / 'classes.txt'} names 6 classes but not their colours" in line
    assert f"{COLOURS[0]} " in line and " px" in line  # the colours found, with their pixels

    refused = isnet("data", "convert", root, tmp_path / "guessed")
    assert first_line(refused, "data", 1).startswith(
        f"{root / 'classes.txt'} names 6 classes but not their colours, and the RGB masks hold 6")
    assert not (tmp_path / "guessed").exists()

    table = tmp_path / "colours.json"  # the advice followed: each class's colour, no name needed
    table.write_text(json.dumps({"classes": NAMES, "palette": COLOURS}))
    arguments = [part.replace("DATASET_JSON", str(table)) for part in command_in(line)]
    converted = isnet(*arguments)
    assert converted.returncode == 0, converted.stdout + converted.stderr
    assert "clean: nothing found" in converted.stdout
    output = Path(arguments[3])
    assert json.loads((output / "dataset.json").read_text())["classes"] == NAMES
    for stem, scene in dataset_files.scenes("train"):
        np.testing.assert_array_equal(np.asarray(Image.open(output / "masks" / "train" / f"{stem}.png")), scene.label)
    assert isnet("data", "check", output, "--output", tmp_path / "report2").returncode == 0


def test_hostile_value_just_past_the_classes_is_offered_as_the_ignore_value(tmp_path):
    def camvid_style(label: np.ndarray) -> np.ndarray:  # 6 classes, 6 = unlabelled (CamVid's 11 of 11)
        stored = label.astype(np.uint8)
        stored[:3] = len(NAMES)
        return stored

    root = dataset_files.write_masks(tmp_path / "camvid", camvid_style, classes=NAMES)
    check = isnet("data", "check", root, "--output", tmp_path / "report")
    assert check.returncode == 1
    line = advice(check.stdout, "stored values 6 are outside the 6 classes")
    assert "if 6 marks unlabelled pixels, run `isnet data convert" in line and "--ignore-value 6" in line
    followed = isnet(*command_in(line))  # the first advice: 6 is the ignore value
    assert followed.returncode == 0, followed.stdout + followed.stderr
    output = Path(command_in(line)[3])
    for stem, scene in dataset_files.scenes("val"):
        expected = scene.label.astype(np.uint8)
        expected[:3] = 255
        np.testing.assert_array_equal(np.asarray(Image.open(output / "masks" / "val" / f"{stem}.png")), expected)
    assert json.loads((output / "dataset.json").read_text())["classes"] == NAMES  # no class dropped or shifted
    assert isnet("data", "check", output, "--output", tmp_path / "report2").returncode == 0


def test_hostile_jpeg_masks_check_and_convert_agree(tmp_path):
    root = dataset_files.write_masks(tmp_path / "jpeg", lambda label: label.astype(np.uint8), classes=NAMES)
    for mask in (root / "masks" / "train").glob("*.png"):
        Image.open(mask).convert("L").save(mask.with_suffix(".jpg"), quality=90)
        mask.unlink()
    check = isnet("data", "check", root, "--output", tmp_path / "report")
    assert check.returncode == 1
    assert "mask(s) stored as JPEG" in check.stdout
    assert "writes PNG masks" not in check.stdout  # convert refuses JPEG masks: check does not send the user there
    refused = isnet("data", "convert", root, tmp_path / "out")
    assert "mask(s) are JPEG" in first_line(refused, "data", 1)


def test_hostile_colour_table_without_a_name_is_read(tmp_path):
    from isnet.data.convert import read_colour_table

    table = tmp_path / "colours.json"
    table.write_text(json.dumps({"classes": ["a", "b"], "palette": [[0, 0, 0], [9, 9, 9]]}))
    assert read_colour_table(table).classes == ("a", "b")
    table.write_text(json.dumps({"palette": [[0, 0, 0]]}))
    try:
        read_colour_table(table)
    except ValueError as error:
        assert str(error) == f"{table}: not a dataset.json colour table (classes and palette): DatasetInfo needs classes"
    else:
        raise AssertionError("a table without classes was read")

"""``isnet data check`` and ``isnet data convert`` on datasets stored as users store them, in a subprocess.

Every encoding the doctor names is written as real files (:mod:`dataset_files`); the check must
exit 1 with the finding and what to do, the converted copy must hold the right class indices and
check clean, the input must stay unchanged; training and evaluation must refuse the same masks
with one line that names the file and points to ``isnet data convert``.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import dataset_files
from cli_helpers import first_line, isnet
from isnet.data import synthetic
from isnet.model.segmentor import build_model
from isnet.training.recipes import recipe
from isnet.weights.checkpoint import save_model


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*"))
            if p.is_file()}


def read_mask(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path))


def check(root: Path, report: Path):
    result = isnet("data", "check", root, "--output", report)
    assert "Traceback" not in result.stderr, result.stderr[-2000:]
    assert (report / "report.md").is_file() and (report / "class_frequencies.png").is_file()
    with Image.open(report / "class_frequencies.png") as chart:
        assert chart.format == "PNG" and chart.size[0] >= 600
    return result


def test_a_clean_dataset_checks_clean_and_the_report_counts_every_pixel(tmp_path):
    root = dataset_files.write_masks(tmp_path / "clean", lambda label: label.astype(np.uint8),
                                     classes=list(synthetic.CLASSES))
    result = check(root, tmp_path / "report")
    assert result.returncode == 0, result.stdout
    assert "clean: nothing found" in result.stdout
    report = (tmp_path / "report" / "report.md").read_text()
    for split in dataset_files.SPLITS:  # the table's counts are the masks' pixels, counted independently here
        counts = np.bincount(np.concatenate([scene.label.ravel() for _, scene in dataset_files.scenes(split)]),
                             minlength=6)
        for name, count in zip(synthetic.CLASSES, counts):
            row = next(line for line in report.splitlines() if line.startswith(f"| {name} |"))
            column = list(dataset_files.SPLITS).index(split) + 1
            assert row.split(" | ")[column].startswith(f"{count:,} ("), (name, split, row)


@pytest.mark.parametrize("kind, finding, fix", [
    ("colour_masks", "mask(s) are RGB colour images (6 colours)", "isnet data convert"),
    ("binary_0_255", "every mask holds only 0 and 255: 255 is read as 'ignore'", "it maps 255 to 1"),
    ("ade_style", "stored values 6 are outside the 6 classes", "--reduce-zero-label"),
    ("exif_rotated", "image(s) carry an EXIF rotation that their mask does not", "turns its mask alike"),
])
def test_check_names_each_silently_wrong_encoding_and_exits_1(tmp_path, kind, finding, fix):
    root = getattr(dataset_files, kind)(tmp_path / kind)
    result = check(root, tmp_path / "report")
    assert result.returncode == 1, result.stdout
    lines = result.stdout.splitlines()
    at = next(number for number, line in enumerate(lines) if finding in line)
    assert lines[at].lstrip().startswith("ERROR") and fix in lines[at + 1] and lines[at + 1].lstrip().startswith("→")
    assert "error(s): training would stop or be silently wrong" in result.stdout
    assert finding in (tmp_path / "report" / "report.md").read_text()


def test_check_finds_missing_masks_and_classes_absent_from_a_split(tmp_path):
    root = dataset_files.write_masks(tmp_path / "data", lambda label: np.minimum(label, 4).astype(np.uint8),
                                     classes=list(synthetic.CLASSES))  # "person" (5) stored nowhere
    (root / "masks" / "val" / "s101.png").unlink()
    result = check(root, tmp_path / "report")
    assert result.returncode == 1
    assert "val: 1 image(s) without a mask" in result.stdout and "s101.png" in result.stdout
    assert "1 class(es) appear in no training mask: person" in result.stdout


def test_a_16_bit_stack_without_a_record_is_an_error_with_measured_statistics(tmp_path):
    root = dataset_files.four_channel_tiffs(tmp_path / "rgbn", with_record=False)
    result = check(root, tmp_path / "report")
    assert result.returncode == 1
    assert "11 image(s) have 4 channels, which RGB reading cannot take" in result.stdout
    mean = json.loads(re.search(r"mean (\[[^\]]+\])", result.stdout).group(1))
    stacks = [np.dstack([s.image, np.where(s.label == synthetic.TREE, 220, 40)]) * 257.0
              for _, s in dataset_files.scenes("train")]
    np.testing.assert_allclose(mean, np.concatenate([s.reshape(-1, 4) for s in stacks]).mean(axis=0), atol=1e-3)


@pytest.mark.parametrize("kind, options", [("colour_masks", ()), ("binary_0_255", ()), ("ade_style", ("--reduce-zero-label",)),
                                           ("exif_rotated", ())])
def test_convert_writes_index_masks_that_check_clean_and_leaves_the_input(tmp_path, kind, options):
    source = getattr(dataset_files, kind)(tmp_path / kind)
    before = tree_digest(source)
    output = tmp_path / "converted"
    result = isnet("data", "convert", source, output, *options)
    assert result.returncode == 0, result.stdout + result.stderr[-2000:]
    assert "clean: nothing found" in result.stdout
    assert tree_digest(source) == before
    record = json.loads((output / "dataset.json").read_text())
    for split in dataset_files.SPLITS:
        for stem, scene in dataset_files.scenes(split):
            mask = read_mask(output / "masks" / split / f"{stem}.png")
            if kind == "colour_masks":  # the colours sorted by RGB value are the classes
                order = sorted(range(6), key=lambda k: synthetic.PALETTE[k])
                expected = np.argsort(order)[scene.label]
                assert [tuple(c) for c in record["palette"]] == sorted(synthetic.PALETTE)
            elif kind == "binary_0_255":
                expected = (scene.label == synthetic.ROAD).astype(np.uint8)
                assert record["classes"] == ["background", "foreground"]
            elif kind == "ade_style":
                expected = scene.label.astype(np.uint8).copy()
                expected[:4] = 255
            else:
                expected = scene.label
            np.testing.assert_array_equal(mask, expected, err_msg=f"{split}/{stem}")
    if kind == "exif_rotated":  # written upright, as displayed
        assert "1 image(s) with an EXIF orientation written upright as PNG" in result.stdout
        with Image.open(output / "images" / "train" / "s000.png") as image:
            assert image.size == (dataset_files.WIDTH, dataset_files.HEIGHT) and "exif" not in image.info


def test_convert_refuses_to_write_into_its_input(tmp_path):
    source = dataset_files.binary_0_255(tmp_path / "data")
    result = isnet("data", "convert", source, source / "fixed")
    assert result.returncode == 1
    assert "must go to a folder outside" in first_line(result, "data", 1)
    assert not (source / "fixed").exists()


def tiny_recipe_arguments(root: Path, output: Path, *extra: object, iters: int = 2) -> list[object]:
    """``isnet train`` of a ResNet-18 ISNet a few channels wide on a folder dataset of 48×64 images."""
    return ["train", "--recipe", "camvid_isnet", "--dataset", "folder", "--data-root", root, "--output", output,
            "--max-iters", iters, "--batch-size", 2, "--workers", 0, "--precision", "fp32",
            "--set", "model.backbone.base_channels=8", "--set", "model.backbone.stem_channels=8",
            "--set", "model.head.channels=16", "--set", "model.head.transform_channels=8",
            "--set", "model.aux.channels=8", "--set", "data.crop_size=[48,64]", "--set", "data.fit_size=[64,48]",
            "--set", "eval_interval=0", "--set", f"checkpoint_interval={iters}", "--set", "progress=false", *extra]


def test_training_refuses_rgb_masks_in_one_line_naming_the_file_and_convert(tmp_path):
    root = dataset_files.colour_masks(tmp_path / "data")
    (root / "classes.txt").write_text("\n".join(synthetic.CLASSES) + "\n")
    result = isnet(*tiny_recipe_arguments(root, tmp_path / "run"))
    message = first_line(result, "train", 1)
    assert "s000.png: label is a colour RGB image" in message and "isnet data convert" in message
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_training_and_evaluation_refuse_values_beyond_the_classes(tmp_path):
    root = dataset_files.ade_style(tmp_path / "data")
    result = isnet(*tiny_recipe_arguments(root, tmp_path / "run"))
    message = first_line(result, "train", 1)
    assert re.search(r"masks/train/s00\d\.png: label values \[6\] are not defined by", message)
    assert "isnet data convert" in message
    model = recipe("camvid_isnet").model.replace(num_classes=6)
    checkpoint = save_model(build_model(model), tmp_path / "six.safetensors")
    result = isnet("eval", "--checkpoint", checkpoint, "--dataset", "folder", "--data-root", root, "--split", "val",
                   "--output", tmp_path / "eval", "--precision", "fp32")
    message = first_line(result, "eval", 1)
    assert "masks/val/s100.png: label values [6]" in message and "isnet data convert" in message


def test_a_named_dataset_is_checked_through_its_reader_and_its_label_mapping(tmp_path):
    root = tmp_path / "camvid"
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for stem, scene in dataset_files.scenes(split):
            Image.fromarray(scene.image).save(root / "images" / split / f"{stem}.png")
            label = scene.label.astype(np.uint8)
            label[:2] = 11  # CamVid's "Unlabelled", ignored by its reader
            if stem == "s101":
                label[-1, -1] = 12  # no CamVid class
            Image.fromarray(label).save(root / "annotations" / split / f"{stem}.png")
    result = check(root, tmp_path / "report")  # as a folder: no class list
    assert result.returncode == 1 and "no classes.txt or dataset.json" in result.stdout
    result = isnet("data", "check", root, "--dataset", "camvid", "--output", tmp_path / "report")
    assert result.returncode == 1
    assert "stored values 12 are outside the 11 classes" in result.stdout and "s101.png" in result.stdout
    assert "11 (" not in result.stdout.split("stored values")[1].splitlines()[0]  # 11 is ignored, not invalid
    report = (tmp_path / "report" / "report.md").read_text()
    ignored = sum(2 * dataset_files.WIDTH for _ in dataset_files.scenes("train"))
    assert f"Ignored pixels (value 255): train {ignored:,}" in report


def test_convert_lists_the_pairs_it_leaves_out_and_exits_1(tmp_path):
    source = dataset_files.binary_0_255(tmp_path / "data")
    (source / "masks" / "train" / "s003.png").unlink()
    output = tmp_path / "converted"
    result = isnet("data", "convert", source, output)
    assert result.returncode == 1
    assert "1 pair(s) left out:" in result.stderr and "s003.png: no mask (expected" in result.stderr
    assert "wrote 10 image/mask pairs" in result.stdout and "clean: nothing found" in result.stdout
    assert not (output / "images" / "train" / "s003.png").exists()

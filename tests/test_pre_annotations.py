"""``isnet predict --rank uncertainty --top N --export coco|labelstudio|cvat``, run as a user runs it.

The exports are read back by pycocotools (COCO), by Label Studio's brush RLE decoding (checked
against label-studio-sdk's encoder in test_annotation_import.py) and by the CVAT mask reader,
and must equal the label PNGs predict wrote; the ranking is recomputed from the confidence PNGs.
"""

from __future__ import annotations

import csv
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import error_message, isnet
from PIL import Image

from scene_helpers import responsive_checkpoint, scene
from serve_helpers import RECORD

COCO = pytest.importorskip("pycocotools.coco")


@pytest.fixture(scope="module")
def predicted(tmp_path_factory):
    """Three images predicted with --rank uncertainty --top 2 --export coco: (images folder, output, checkpoint, result)."""
    root = tmp_path_factory.mktemp("loop")
    checkpoint = responsive_checkpoint(root / "tiny.safetensors")
    images = root / "unlabelled"
    images.mkdir()
    for index in range(3):
        Image.fromarray(scene(48, 64, seed=index)).save(images / f"img{index}.png")
    output = root / "out"
    result = isnet("predict", images, "--checkpoint", checkpoint, "--output", output, "--device", "cpu",
                   "--rank", "uncertainty", "--top", "2", "--export", "coco")
    assert result.returncode == 0, result.stdout + result.stderr
    return images, output, checkpoint, result


def _labels(output: Path, name: str) -> np.ndarray:
    return np.asarray(Image.open(output / f"{Path(name).stem}_labels.png"))


def _ranked(output: Path) -> list[dict]:
    with open(output / "ranked.csv", newline="") as handle:
        return list(csv.DictReader(handle))


def test_ranking_is_mean_one_minus_confidence_most_uncertain_first(predicted):
    images, output, _, result = predicted
    rows = _ranked(output)
    assert [row["rank"] for row in rows] == ["1", "2", "3"]
    expected = {}
    for path in sorted(images.iterdir()):
        confidence = np.asarray(Image.open(output / f"{path.stem}_confidence.png")).astype(np.float64) / 65535
        expected[str(path)] = (1 - confidence).mean()
    assert [row["image"] for row in rows] == sorted(expected, key=lambda k: -expected[k])
    for row in rows:
        assert float(row["mean_1_minus_max_probability"]) == pytest.approx(expected[row["image"]], abs=1e-6)
        assert row["pixels"] == str(48 * 64)
    assert "ranked 3 image(s)" in result.stdout and "2 image(s) as coco pre-annotations" in result.stdout


def test_coco_export_holds_the_top_n_and_pycocotools_reads_back_the_label_maps(predicted):
    _, output, _, _ = predicted
    coco = COCO.COCO(str(output / "coco_predictions.json"))
    top = [Path(row["image"]).name for row in _ranked(output)[:2]]
    assert [coco.imgs[k]["file_name"] for k in sorted(coco.imgs)] == top
    present = {k for record in coco.imgs.values() for k in np.unique(_labels(output, record["file_name"])).tolist()}
    assert len(present) >= 2, present  # regions of more than one class, or the round trip proves little
    for image_id, record in coco.imgs.items():
        painted = np.zeros((record["height"], record["width"]), np.uint8)
        for annotation in coco.loadAnns(coco.getAnnIds(imgIds=[image_id])):
            mask = coco.annToMask(annotation).astype(bool)
            assert not painted[mask].any()  # one region per class: no overlap
            painted[mask] = annotation["category_id"]
        assert painted.tolist() == _labels(output, record["file_name"]).tolist()
    assert coco.loadRes(coco.dataset["annotations"]).getAnnIds()  # the results list pycocotools' evaluation takes


def test_labelstudio_and_cvat_exports_decode_to_the_label_maps(predicted):
    from isnet.data.formats.labelstudio import rle_mask
    from isnet.data.formats.voc import read_labelmap, read_mask

    images, output, checkpoint, _ = predicted
    for tool in ("labelstudio", "cvat"):
        result = isnet("predict", images, "--checkpoint", checkpoint, "--output", output, "--device", "cpu",
                       "--export", tool)
        assert result.returncode == 0 and "3 of 3 image(s) already done" in result.stdout, result.stderr
    tasks = json.loads((output / "labelstudio_predictions.json").read_text())
    assert len(tasks) == 3
    for task in tasks:
        prediction = task["predictions"][0]
        assert prediction["model_version"] == "tiny"
        labels = _labels(output, task["data"]["image"])
        painted = np.zeros(labels.shape, np.uint8)
        for region in prediction["result"]:
            assert region["type"] == "brushlabels" and region["value"]["format"] == "rle"
            painted[rle_mask(region["value"]["rle"], *labels.shape)] = RECORD.classes.index(region["value"]["brushlabels"][0])
        assert painted.tolist() == labels.tolist()
    with zipfile.ZipFile(output / "cvat_segmentation_mask.zip") as archive:
        archive.extractall(output / "cvat")
    names, colours = read_labelmap(output / "cvat" / "labelmap.txt")
    assert names == list(RECORD.classes)
    for mask in sorted((output / "cvat" / "SegmentationClass").iterdir()):
        assert read_mask(mask, names, colours).tolist() == _labels(output, mask.name).tolist()


def test_top_without_rank_is_one_line(tmp_path):
    result = isnet("predict", tmp_path, "--model", "isnet_resnet18", "--allow-random", "--top", "3")
    assert error_message(result, "predict", 2)[0].endswith("--top and --rank-class go with --rank uncertainty")


def test_per_class_uncertainty_is_over_that_class_pixels_only():
    from isnet.apps.pre_annotations import uncertainty

    labels = np.array([[0, 0, 1, 1]])
    confidence = np.array([[65535, 32768, 13107, 0]], np.uint16)  # p = 1, ~0.5, 0.2, no data
    assert uncertainty(labels, confidence) == pytest.approx(((0 + 32767 / 65535 + 0.8) / 3, 3))
    assert uncertainty(labels, confidence, 1) == pytest.approx((0.8, 1))
    assert uncertainty(labels, confidence, 2) == (0.0, 0)  # no pixel of the class: least uncertain
    assert uncertainty(labels, confidence, 1) == uncertainty(labels[:, :3], confidence[:, :3], 1)  # 0: no data


def test_an_unknown_rank_class_names_the_classes(predicted):
    images, output, checkpoint, _ = predicted
    result = isnet("predict", images, "--checkpoint", checkpoint, "--output", output, "--device", "cpu",
                   "--rank", "uncertainty", "--rank-class", "lamppost")
    line = error_message(result, "predict", 1)[0]
    assert "--rank-class 'lamppost': not a class of the model" in line and RECORD.classes[0] in line

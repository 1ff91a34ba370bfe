"""isnet eval --per-image: per-image scores by hand, the N worst kept, the files a user gets."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
import torch

from cli_helpers import error_message, isnet
from isnet.evaluation.per_image import PerImageScores, image_score
from isnet.model.config import AuxConfig, BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.segmentor import build_model
from isnet.data import synthetic
from isnet.weights.checkpoint import save_model
from training_helpers import make_data


def test_scores_of_one_image_by_hand():
    labels = np.array([[0, 0, 1, 1, 255]])
    prediction = np.array([[0, 1, 1, 1, 2]])  # the unlabelled pixel's prediction (class 2) is not counted
    score = image_score(prediction, labels, 3, 255, "a.png")
    # class 0: 1 hit of a union of 2; class 1: 2 of 3; class 2 absent from both
    assert score.miou == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert score.pixel_accuracy == pytest.approx(3 / 4)
    assert (score.worst_class, score.worst_iou, score.labelled_pixels) == (0, pytest.approx(0.5), 4)
    # classes 1 and 2 both missed (IoU 0): the worst is the one with more labelled pixels
    assert image_score(np.array([[0, 0, 0, 0, 0]]), np.array([[0, 1, 2, 2, 255]]), 3, 255, "c.png").worst_class == 2
    unlabelled = image_score(prediction, np.full_like(labels, 255), 3, 255, "b.png")
    assert math.isnan(unlabelled.miou) and unlabelled.worst_class == -1


def test_only_the_worst_are_kept_worst_first():
    scores = PerImageScores(2, worst=2)
    labels = torch.tensor([[[0, 0, 1, 1]]])
    for name, prediction in [("right", [0, 0, 1, 1]), ("one_off", [0, 1, 1, 1]), ("all_wrong", [1, 1, 0, 0]),
                             ("half", [0, 1, 0, 1])]:
        predicted = torch.tensor([[prediction]])
        scores.observe(None, predicted, labels, {"path": [f"{name}.png"]})
    assert [score.path for score in scores.scores] == ["right.png", "one_off.png", "all_wrong.png", "half.png"]
    assert [kept.path for kept in scores.worst_images()] == ["all_wrong.png", "half.png"]  # mIoU 0, then 1/3


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    root = tmp_path_factory.mktemp("per_image")
    data = make_data(root / "data")
    model = build_model(ModelConfig(num_classes=len(synthetic.CLASSES),
                                    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
                                    head=ISNetHeadConfig(channels=16, transform_channels=8), aux=AuxConfig(channels=8)))
    checkpoint = save_model(model, root / "model.safetensors")
    output = root / "eval"
    result = isnet("eval", "--checkpoint", checkpoint, "--dataset", "folder", "--data-root", data, "--split", "val",
                   "--output", output, "--per-image", "--worst", 2, "--precision", "fp32", "--device", "cpu")
    return data, checkpoint, output, result


def test_eval_per_image_writes_the_table_the_worst_panels_and_the_histogram(evaluated):
    data, _, output, result = evaluated
    assert result.returncode == 0, result.stderr[-2000:]
    with open(output / "per_image.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    images = sorted((data / "images" / "val").iterdir())
    assert sorted(row["image"] for row in rows) == [str(path) for path in images]
    for row in rows:
        assert 0 <= float(row["miou"]) <= 1 and 0 <= float(row["pixel_accuracy"]) <= 1
        assert row["worst_class"] in synthetic.CLASSES
    lowest = [row["image"] for row in sorted(rows, key=lambda row: float(row["miou"]))][:2]
    drawn = sorted(path.name for path in (output / "worst").iterdir())
    assert drawn == [f"{rank:02d}_{name.rsplit('/', 1)[-1].rsplit('.', 1)[0]}.png" for rank, name in
                     enumerate(lowest, start=1)]
    assert (output / "per_image_miou.png").stat().st_size > 5000
    summary = json.loads((output / "summary.json").read_text())
    assert set(summary["boundary_iou"]["per_class"]) == set(synthetic.CLASSES)
    assert 0 <= summary["boundary_iou"]["mean"] <= 1
    assert "worst in" in result.stdout


def test_eval_refuses_a_worst_of_zero(evaluated, tmp_path):
    data, checkpoint, _, _ = evaluated
    result = isnet("eval", "--checkpoint", checkpoint, "--dataset", "folder", "--data-root", data, "--per-image",
                   "--worst", 0, "--output", tmp_path / "eval")
    lines = error_message(result, "eval", 2)
    assert "--worst" in lines[0]

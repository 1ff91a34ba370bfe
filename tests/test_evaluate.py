"""Evaluation end to end: whole, multi-scale + flip and sliding window, through the API and `isnet eval`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from isnet.weights.checkpoint import save_model
from isnet.cli import main
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.data import CamVidDataset, eval_transforms
from isnet.evaluation import evaluate
from isnet.inference.engine import InferenceConfig
from isnet.model.segmentor import build_model

TINY = ModelConfig(
    num_classes=11,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8),
)


@pytest.fixture(scope="module")
def camvid_root(tmp_path_factory):
    """Three 40×56 frames in CamVid's layout; label 11 (unlabelled) must be ignored."""
    root = tmp_path_factory.mktemp("camvid")
    rng = np.random.default_rng(0)
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "annotations" / split).mkdir(parents=True)
        for index in range(3):
            Image.fromarray(rng.integers(0, 255, (40, 56, 3), np.uint8)).save(root / "images" / split / f"f{index}.jpg")
            Image.fromarray(rng.integers(0, 12, (40, 56), np.uint8)).save(root / "annotations" / split / f"f{index}.png")
    return root


@pytest.mark.parametrize(
    "config",
    [
        InferenceConfig(),
        InferenceConfig(scales=(0.75, 1.0, 1.25), flip=True, probs_before_resize=True),
        InferenceConfig(mode="slide", crop=(32, 32), stride=(16, 24)),
        InferenceConfig(mode="slide", crop=(32, 32), stride=(16, 24), scales=(0.75, 1.0), flip=True, probs_before_resize=True),
    ],
    ids=["whole", "msflip", "slide", "slide-msflip"],
)
def test_protocols_score_the_whole_set(camvid_root, config):
    dataset = CamVidDataset(camvid_root, "val", eval_transforms((48, 36)))  # test-time resize, labels kept
    matrix = evaluate(build_model(TINY), dataset, 11, config)
    labels = np.stack([np.asarray(Image.open(p)) for p in sorted((camvid_root / "annotations" / "val").glob("*.png"))])
    assert matrix.matrix.sum().item() == int((labels != 11).sum())  # every labelled pixel, at full size
    assert 0 <= matrix.summary().mean_iou <= 1


def test_isnet_eval_command_writes_the_report(camvid_root, tmp_path, capsys):
    checkpoint = save_model(build_model(TINY), tmp_path / "tiny.safetensors")
    output = tmp_path / "report"
    code = main(["eval", "--checkpoint", str(checkpoint), "--dataset", "camvid", "--data-root", str(camvid_root),
                 "--split", "val", "--fit", "48", "36", "--scales", "0.75", "1.0", "--flip", "--output", str(output)])
    assert code == 0
    summary = json.loads((output / "summary.json").read_text())
    assert set(summary["iou"]) == {"Sky", "Building", "Pole", "Road", "Pavement", "Tree", "SignSymbol", "Fence",
                                   "Car", "Pedestrian", "Bicyclist"}
    for name in ("per_class_iou.png", "confusion_matrix.png", "per_class.csv", "scores.txt"):
        assert (output / name).stat().st_size > 0
    assert "mIoU" in capsys.readouterr().out


def test_distributed_shards_cover_the_set_once(camvid_root):
    dataset = CamVidDataset(camvid_root, "val", eval_transforms(None))
    model = build_model(TINY)
    whole = evaluate(model, dataset, 11)
    parts = [evaluate(model, dataset, 11, rank=r, world_size=2).matrix for r in range(2)]  # no process group: no reduce
    assert torch.equal(parts[0] + parts[1], whole.matrix)

"""Binary models: the F1-optimal threshold (isnet calibrate --threshold-for f1) and --threshold in predict / eval."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import error_message, isnet
from isnet.evaluation.threshold import f1_at, f1_optimal_threshold
from isnet.inference.engine import InferenceConfig, predict
from isnet.deploy.predictor import load_predictor
from isnet.inference.predictor import ModulePredictor
from isnet.model.config import AuxConfig, BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.segmentor import build_model
from isnet.weights.checkpoint import save_model
from isnet.weights.decision_threshold import read_threshold


def test_f1_optimal_threshold_by_hand():
    p = torch.tensor([0.9, 0.8, 0.6, 0.4, 0.3])
    truth = torch.tensor([1, 1, 0, 1, 0])
    # top 1: F1 2/4; top 2: 4/5; top 3: 4/6; top 4: 6/7 (best); top 5: 6/8 → t between 0.4 and 0.3
    threshold, f1 = f1_optimal_threshold(p, truth)
    assert threshold == pytest.approx(0.35) and f1 == pytest.approx(6 / 7)
    assert f1_at(p, truth, 0.5) == pytest.approx(4 / 6) and f1_at(p, truth, threshold) == pytest.approx(6 / 7)


def tiny_binary() -> torch.nn.Module:
    """An untrained binary model whose classifier is scaled up: foreground probabilities spread over (0, 1)."""
    torch.manual_seed(0)
    model = build_model(ModelConfig(num_classes=2, backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
                                    head=ISNetHeadConfig(channels=16, transform_channels=8), aux=AuxConfig(channels=8)))
    with torch.no_grad():
        model.head.decoder.classifier[1].weight.mul_(-20000)  # the sign that makes it informative
    return model.eval()


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_labels_are_the_foreground_where_its_probability_exceeds_the_threshold(threshold):
    class TwoClassLogits(torch.nn.Module):  # logits at a quarter of the input size, of a wide spread
        def __init__(self) -> None:
            super().__init__()
            self.projection = torch.nn.Conv2d(3, 2, 1, bias=False)

        def logits(self, images: torch.Tensor) -> torch.Tensor:
            return 10 * self.projection(torch.nn.functional.avg_pool2d(images, 4))

    torch.manual_seed(1)
    model = TwoClassLogits()
    images = 3 * torch.randn(2, 3, 40, 56)
    with torch.no_grad():
        probability = predict(model, images, InferenceConfig()).softmax(1)[:, 1]
        labels = predict(ModulePredictor(model).with_threshold(threshold), images, InferenceConfig()).argmax(1)
    away = (probability - threshold).abs() > 1e-5  # round-off at the threshold itself aside
    assert torch.equal(labels[away].bool(), (probability > threshold)[away])
    assert 0.05 < (probability > threshold).float().mean() < 0.95


@pytest.fixture(scope="module")
def binary_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("binary")
    rng = np.random.default_rng(0)
    (root / "classes.txt").write_text("background\nforeground\n")
    for split in ("train", "val"):
        (root / "images" / split).mkdir(parents=True)
        (root / "masks" / split).mkdir(parents=True)
        for index in range(3):
            image = rng.integers(0, 255, (40, 56, 3), np.uint8)
            mask = np.zeros((40, 56), np.uint8)
            mask[10:30, 5 + 10 * index:35 + 10 * index] = 1
            image[mask == 1] //= 3
            Image.fromarray(image).save(root / "images" / split / f"f{index}.png")
            Image.fromarray(mask).save(root / "masks" / split / f"f{index}.png")
    checkpoint = save_model(tiny_binary(), root / "binary.safetensors")
    return root, checkpoint


def test_calibrate_stores_the_f1_optimal_threshold_and_eval_and_predict_use_it(binary_run, tmp_path):
    root, checkpoint = binary_run
    calibrated = tmp_path / "calibrated.safetensors"
    result = isnet("calibrate", "--checkpoint", checkpoint, "--dataset", "folder", "--data-root", root, "--split", "val",
                   "--threshold-for", "f1", "--output", calibrated, "--device", "cpu")
    assert result.returncode == 0, result.stderr[-2000:]
    record = read_threshold(calibrated)
    assert record["for"] == "f1" and 0 < record["threshold"] < 1 and record["pixels"] == 3 * 40 * 56

    # Optimal: no threshold on these pixels' calibrated probabilities gives a higher foreground F1.
    model = load_predictor(calibrated).with_threshold(0.5)  # calibrated probabilities, before any threshold
    probabilities, truths = [], []
    for index in range(3):
        image = np.asarray(Image.open(root / "images" / "val" / f"f{index}.png"))
        from isnet.data.image import to_tensor

        with torch.no_grad():
            scores = predict(model, to_tensor(image)[None], InferenceConfig())
        probabilities.append(scores.softmax(1)[0, 1].flatten())
        truths.append(torch.from_numpy(np.asarray(Image.open(root / "masks" / "val" / f"f{index}.png"))).flatten())
    p, truth = torch.cat(probabilities), torch.cat(truths).bool()
    best = max(2 * (truth & (p > t)).sum().item() / ((p > t).sum().item() + truth.sum().item())
               for t in [0.0, *p.unique().tolist()])
    assert record["f1"] == pytest.approx(best, abs=1e-6)
    assert record["f1"] >= record["f1_at_0.5"]

    evaluated = isnet("eval", "--checkpoint", calibrated, "--dataset", "folder", "--data-root", root, "--split", "val",
                      "--output", tmp_path / "eval", "--precision", "fp32", "--device", "cpu")
    assert evaluated.returncode == 0, evaluated.stderr[-2000:]
    assert f"exceeds {record['threshold']:.4g}" in evaluated.stderr
    f1 = json.loads((tmp_path / "eval" / "summary.json").read_text())["foreground_f1"]
    assert f1 == pytest.approx(best, abs=1e-3)  # all pixels fit, the same protocol

    labelled = isnet("predict", root / "images" / "val" / "f0.png", "--checkpoint", calibrated, "--threshold", "0.3",
                     "--output", tmp_path / "predict", "--precision", "fp32", "--device", "cpu")
    assert labelled.returncode == 0, labelled.stderr[-2000:]
    written = np.asarray(Image.open(tmp_path / "predict" / "f0_labels.png"))
    expected = (probabilities[0].reshape(40, 56) > 0.3).numpy()
    away = (probabilities[0].reshape(40, 56) - 0.3).abs().numpy() > 1e-5
    assert np.array_equal(written[away].astype(bool), expected[away])


def test_a_threshold_for_a_model_of_more_classes_is_refused(binary_run, tmp_path):
    root, _ = binary_run
    model = build_model(ModelConfig(num_classes=3, backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
                                    head=ISNetHeadConfig(channels=16, transform_channels=8)))
    three = save_model(model, tmp_path / "three.safetensors")
    result = isnet("predict", root / "images" / "val" / "f0.png", "--checkpoint", three, "--threshold", "0.3",
                   "--output", tmp_path / "out")
    assert "--threshold 0.3" in error_message(result, "predict", 2)[0]
    result = isnet("eval", "--checkpoint", three, "--dataset", "folder", "--data-root", root, "--threshold", "1.5")
    assert "--threshold" in error_message(result, "eval", 2)[0]

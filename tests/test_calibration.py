"""Confidence you can trust: ECE and the reliability diagram in ``isnet eval``, a temperature fitted by
``isnet calibrate``, stored in the checkpoint and used by ``isnet predict``."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import first_line, isnet
from scene_helpers import responsive_model, scene

from isnet.data.image import read_image, to_tensor
from isnet.evaluation.calibration import CalibrationBins, ece_of_logits, fit_temperature, nll
from isnet.weights.calibration import read_calibration
from isnet.weights.checkpoint import load_model, read_safetensors, save_model

SIZE = (48, 64)


SHARPER = 25


def overconfident_model():
    """The responsive tiny model with its stage-2 classifier × 25: logits exactly 25× too sharp."""
    model = responsive_model()
    with torch.no_grad():
        classifier = model.head.decoder.classifier[1]
        classifier.weight *= SHARPER
        classifier.bias *= SHARPER
    return model


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """A folder dataset whose labels are drawn, pixel by pixel, from the plain model's softmax: that
    model is calibrated by construction, so the 25× sharper one is over-confident by a temperature of 25."""
    root = tmp_path_factory.mktemp("calibration")
    plain = responsive_model()
    checkpoint = save_model(overconfident_model(), root / "overconfident.safetensors")
    (root / "data" / "classes.txt").parent.mkdir()
    (root / "data" / "classes.txt").write_text("\n".join(plain.dataset.classes) + "\n")
    generator = torch.Generator().manual_seed(0)
    for split in ("val", "test"):
        (root / "data" / "images" / split).mkdir(parents=True)
        (root / "data" / "masks" / split).mkdir(parents=True)
        for index in range(3):
            image = scene(*SIZE, seed=100 * (split == "test") + index)
            Image.fromarray(image).save(root / "data" / "images" / split / f"{index}.png")
            with torch.no_grad():
                logits = plain.logits(to_tensor(image)[None])
                logits = torch.nn.functional.interpolate(logits, size=SIZE, mode="bilinear", align_corners=False)
            probabilities = logits.softmax(1)[0].flatten(1).T
            labels = torch.multinomial(probabilities, 1, generator=generator).reshape(SIZE).numpy().astype(np.uint8)
            Image.fromarray(labels).save(root / "data" / "masks" / split / f"{index}.png")
    return root, checkpoint


def eval_ece(checkpoint, data, output, precision: str = "fp32") -> float:
    result = isnet("eval", "--checkpoint", checkpoint, "--dataset", "folder", "--data-root", data, "--split", "test",
                   "--precision", precision, "--output", output)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ECE " in result.stdout and "15 equal-width bins" in result.stdout
    reliability = Image.open(output / "reliability.png")
    assert reliability.size[0] > 200 and reliability.size[1] > 200
    summary = json.loads((output / "summary.json").read_text())
    assert summary["ece_bins"] == 15
    return summary["ece"]


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_calibrate_lowers_the_ece_of_an_overconfident_model(folder, tmp_path):
    root, checkpoint = folder
    before = eval_ece(checkpoint, root / "data", tmp_path / "before")
    assert before > 0.2  # far surer than it is right

    calibrated = tmp_path / "calibrated.safetensors"
    result = isnet("calibrate", "--checkpoint", checkpoint, "--dataset", "folder", "--data-root", root / "data",
                   "--split", "val", "--output", calibrated)
    assert result.returncode == 0, result.stderr[-2000:]
    record = read_calibration(calibrated)
    assert record["temperature"] == pytest.approx(SHARPER, rel=0.25) and record["split"] == "val" and record["pixels"] == 3 * SIZE[0] * SIZE[1]
    assert record["nll_after"] < record["nll_before"] and record["ece_after"] < record["ece_before"]
    assert f"temperature {record['temperature']:.4f}" in result.stdout and f"stored in {calibrated}" in result.stdout
    assert read_calibration(checkpoint) is None  # --output left the original as it was
    weights_after, weights_before = read_safetensors(calibrated)[0], read_safetensors(checkpoint)[0]
    assert weights_after.keys() == weights_before.keys()
    assert all(torch.equal(weights_after[key], weights_before[key]) for key in weights_before)  # tensors untouched

    after = eval_ece(calibrated, root / "data", tmp_path / "after")  # on the other split
    assert after < before / 2
    # on a fast inference-only path (bf16 wraps the model in a FastSegmentor) too
    assert eval_ece(calibrated, root / "data", tmp_path / "after_bf16", precision="bf16") < before / 2

    # predict uses the temperature: the labels stay, the confidence map is the calibrated one
    image = root / "data" / "images" / "test" / "0.png"
    for name, model_file in (("plain", checkpoint), ("calibrated", calibrated)):
        result = isnet("predict", image, "--checkpoint", model_file, "--confidence", "--precision", "fp32",
                       "--output", tmp_path / name)
        assert result.returncode == 0, result.stderr[-2000:]
    assert "is calibrated" in result.stderr
    plain = np.asarray(Image.open(tmp_path / "plain" / "0_confidence.png")).astype(np.float64) / 65535
    scaled = np.asarray(Image.open(tmp_path / "calibrated" / "0_confidence.png")).astype(np.float64) / 65535
    assert np.array_equal(np.asarray(Image.open(tmp_path / "plain" / "0_labels.png")),
                          np.asarray(Image.open(tmp_path / "calibrated" / "0_labels.png")))
    assert plain.mean() > 0.85 and scaled.mean() < plain.mean() - 0.1
    with torch.no_grad():
        logits = load_model(checkpoint).eval().logits(to_tensor(read_image(image))[None]) / record["temperature"]
        logits = torch.nn.functional.interpolate(logits, size=SIZE, mode="bilinear", align_corners=False)
    assert np.abs(scaled - logits.softmax(1).amax(1)[0].numpy()).max() < 1e-4


def test_calibrate_refuses_what_is_not_our_checkpoint(tmp_path):
    result = isnet("calibrate", "--checkpoint", tmp_path / "model.pth", "--dataset", "folder", "--data-root", tmp_path)
    assert first_line(result, "calibrate", 2).startswith(f"--checkpoint {tmp_path / 'model.pth'}: expected one of our")


def test_ece_and_the_fitted_temperature_on_known_numbers():
    # 100 pixels at confidence 0.9 of which 60 are right: ECE = |0.6 − 0.9| = 0.3 in one bin
    probabilities = torch.tensor([0.9, 0.1])[None, :, None, None].expand(1, 2, 100, 1)
    labels = torch.tensor([0] * 60 + [1] * 40)[None, :, None]
    bins = CalibrationBins()
    bins.update(probabilities, labels)
    assert bins.ece() == pytest.approx(0.3)
    assert bins.count[13] == 100  # 0.9 falls in [13/15, 14/15)
    # logits of a model right 75 % of the time whatever it says: the NLL-optimal T makes it say 0.75
    generator = torch.Generator().manual_seed(0)
    logits = torch.randn(4000, 3, generator=generator) * 0.1
    logits[:, 0] += 8
    labels = torch.where(torch.rand(4000, generator=generator) < 0.75, 0, torch.randint(1, 3, (4000,), generator=generator))
    temperature = fit_temperature(logits, labels)
    confidence = (logits / temperature).softmax(1)[:, 0].mean()
    assert confidence == pytest.approx(float((labels == 0).double().mean()), abs=0.01)
    assert nll(logits, labels, temperature) < nll(logits, labels)
    assert ece_of_logits(logits, labels, temperature) < 0.02 < ece_of_logits(logits, labels)


def test_a_broken_calibration_record_is_refused(tmp_path):
    from isnet.weights.calibration import CALIBRATION_METADATA_KEY

    model = responsive_model()
    for text, problem in (('{"temperature": -2}', "is not a number > 0"), ("{not json", "unreadable calibration record")):
        path = save_model(model, tmp_path / "model.safetensors", extra_metadata={CALIBRATION_METADATA_KEY: text})
        image = tmp_path / "a.png"
        Image.fromarray(scene(*SIZE)).save(image)
        result = isnet("predict", image, "--checkpoint", path, "--output", tmp_path / "out")
        line = first_line(result, "predict", 1)
        assert line.startswith(f"{path}: ") and problem in line

"""One way to a runnable model (``load_predictor``) and one number per checkpoint.

As a user runs them: a calibrated file gives the same probabilities from Python as from
``isnet predict``; and one small checkpoint whose dataset record carries a test resize gives
the same mIoU from training's evaluation, from ``isnet eval`` at its defaults and from the
labels ``isnet predict`` writes, with ``calibrate`` applying the same protocol.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cli_helpers import first_line, isnet, tiny_training
from isnet import load_predictor
from isnet.data.image import read_image, to_tensor
from isnet.evaluation.metrics import ConfusionMatrix
from isnet.inference.predictor import ModulePredictor, Predictor
from isnet.weights.calibration import store_calibration
from isnet.weights.checkpoint import load_model
from training_helpers import make_data

TEMPERATURE = 2.5
pytestmark = pytest.mark.slow  # a training run and a dozen commands as subprocesses (a few minutes on a busy machine)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("scenes"))


@pytest.fixture(scope="module")
def run(data_root, tmp_path_factory) -> Path:
    """A tiny model trained by ``isnet train``, evaluated (and so recorded) at a 32×24 fit resize."""
    output = tmp_path_factory.mktemp("run")
    arguments = tiny_training(data_root, output, "--set", "lr=0.05", max_iters=8)  # enough to predict several classes
    arguments[arguments.index("data.eval_fit_size=null")] = "data.eval_fit_size=[32,24]"
    result = isnet(*arguments)
    assert result.returncode == 0, result.stderr[-3000:]
    return output


@pytest.fixture(scope="module")
def calibrated(run, tmp_path_factory) -> tuple[Path, Path]:
    """The trained file, and its twin with a temperature stored as ``isnet calibrate`` stores it."""
    plain = run / "model.safetensors"
    twin = store_calibration(plain, {"temperature": TEMPERATURE}, tmp_path_factory.mktemp("calibrated") / "twin.safetensors")
    return plain, twin


def images_of(folder: Path, model) -> tuple[list[Path], torch.Tensor]:
    paths = sorted(folder.glob("*.png"))
    record = model.dataset
    return paths, torch.stack([to_tensor(read_image(path), record.mean, record.std) for path in paths])


def test_a_calibrated_file_gives_the_same_probabilities_from_python_and_from_isnet_predict(calibrated, data_root, tmp_path):
    plain, twin = calibrated
    predictor = load_predictor(twin, device="cpu")
    assert isinstance(predictor, Predictor) and predictor.temperature == TEMPERATURE
    paths, images = images_of(data_root / "images" / "val", predictor)
    confidence = predictor.probabilities(images).amax(dim=1)
    result = isnet("predict", *paths, "--checkpoint", twin, "--precision", "fp32", "--fit", 64, 48,
                   "--confidence", "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "is calibrated" in result.stderr and "test resize: fit 64×48 (from --fit)" in result.stderr
    for index, path in enumerate(paths):
        written = np.asarray(Image.open(tmp_path / "out" / f"{path.stem}_confidence.png")).astype(np.float64) / 65535
        np.testing.assert_allclose(written, confidence[index].double().numpy(), atol=1 / 65535)
        labels = np.asarray(Image.open(tmp_path / "out" / f"{path.stem}_labels.png"))
        np.testing.assert_array_equal(labels, predictor.labels(images[index : index + 1])[0].numpy())


def test_a_plain_file_and_its_calibrated_twin_differ_only_by_the_temperature(calibrated, data_root):
    plain, twin = (load_predictor(path, device="cpu") for path in calibrated)
    assert plain.temperature == 1.0 and "calibrated (T = 2.5)" in twin.describe()
    _, images = images_of(data_root / "images" / "val", plain)
    torch.testing.assert_close(twin.logits(images), plain.logits(images) / TEMPERATURE, rtol=0, atol=0)
    expected = torch.nn.functional.interpolate(plain.logits(images) / TEMPERATURE, size=images.shape[2:],
                                               mode="bilinear", align_corners=False).softmax(dim=1)
    torch.testing.assert_close(twin.probabilities(images), expected)
    assert torch.equal(twin.labels(images), plain.labels(images))  # the argmax stays
    sharp, soft = plain.probabilities(images).amax(1), twin.probabilities(images).amax(1)
    assert (soft <= sharp + 1e-6).all() and (soft < sharp - 1e-3).any()  # a temperature > 1 softens


def test_a_predictor_is_no_module_and_leaves_a_training_model_training(run):
    model = load_model(run / "model.safetensors").train()
    predictor = ModulePredictor(model)
    predictor.logits(torch.randn(1, 3, 24, 32))
    assert model.training  # evaluated in eval mode, put back as it was
    assert not isinstance(predictor, torch.nn.Module)
    assert not any(hasattr(predictor, name) for name in ("parameters", "train", "to", "__call__"))
    assert isinstance(model(torch.randn(1, 3, 24, 32)), dict)  # Segmentor stays a module returning a dict


def test_one_checkpoint_gives_one_miou_from_training_eval_and_predict(run, data_root, tmp_path):
    checkpoint = run / "model.safetensors"
    trained = json.loads((run / "eval" / "summary.json").read_text())["mIoU"]

    result = isnet("eval", "--checkpoint", checkpoint, "--dataset", "folder", "--data-root", data_root,
                   "--split", "val", "--output", tmp_path / "eval")
    assert result.returncode == 0, result.stderr[-3000:]
    line = f"test resize: fit 32×24 (from the dataset record of {checkpoint})"
    assert line in result.stderr
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    assert summary["path"]["precision"] == "fp32" and summary["path"]["runtime"] == "torch"
    assert line in summary["path"]["protocol"]
    assert summary["mIoU"] == trained

    result = isnet("predict", data_root / "images" / "val", "--checkpoint", checkpoint, "--output", tmp_path / "labels")
    assert result.returncode == 0, result.stderr[-3000:]
    assert line in result.stderr
    matrix, predicted = ConfusionMatrix(len(load_model(checkpoint).dataset.classes)), set()
    for mask in sorted((data_root / "masks" / "val").glob("*.png")):
        labels = np.asarray(Image.open(tmp_path / "labels" / f"{mask.stem}_labels.png")).astype(np.int64)
        matrix.update(torch.from_numpy(labels)[None], torch.from_numpy(np.asarray(Image.open(mask)).astype(np.int64))[None])
        predicted |= set(np.unique(labels).tolist())
    assert len(predicted) > 1  # a model that says one class everywhere would agree with anything
    assert matrix.summary().mean_iou == trained

    result = isnet("calibrate", "--checkpoint", checkpoint, "--dataset", "folder", "--data-root", data_root,
                   "--split", "val", "--output", tmp_path / "calibrated.safetensors")
    assert result.returncode == 0, result.stderr[-3000:]
    assert line in result.stderr


def test_serve_applies_the_recorded_resize_as_predict_does(run, data_root, tmp_path):
    from isnet.apps.serve.client import running_server

    checkpoint, image = run / "model.safetensors", data_root / "images" / "val" / "0000.png"
    result = isnet("predict", image, "--checkpoint", checkpoint, "--precision", "fp32", "--output", tmp_path / "out")
    assert result.returncode == 0, result.stderr[-3000:]
    with running_server(checkpoint, "--precision", "fp32", log=tmp_path / "server.log") as server:
        status, _, body = server.post(image.read_bytes(), "0000.png")
    assert status == 200
    assert body == (tmp_path / "out" / "0000_labels.png").read_bytes()
    assert f"test resize: fit 32×24 (from the dataset record of {checkpoint})" in (tmp_path / "server.log").read_text()
    whole = isnet("predict", image, "--checkpoint", checkpoint, "--precision", "fp32", "--fit", 64, 48,
                  "--output", tmp_path / "whole")
    assert whole.returncode == 0, whole.stderr[-3000:]  # at the image's own size the labels differ: the resize applied
    assert (tmp_path / "whole" / "0000_labels.png").read_bytes() != body


def test_tiles_say_the_recorded_resize_is_not_applied_and_refuse_fit(run, data_root, tmp_path):
    """``--tile`` streams each image at its own size: with a model that records a resize it says so
    (and the labels are those of the image at its own size), and ``--fit`` with it is refused."""
    checkpoint, image = run / "model.safetensors", data_root / "images" / "val" / "0000.png"
    tiled = isnet("predict", image, "--checkpoint", checkpoint, "--precision", "fp32", "--tile", 32, 32,
                  "--overlap", 8, "--output", tmp_path / "tiled")
    assert tiled.returncode == 0, tiled.stderr[-3000:]
    assert (f"the test resize of the dataset record of {checkpoint} (fit 32×24) is not applied"
            in tiled.stderr.splitlines()[0])
    resized = isnet("predict", image, "--checkpoint", checkpoint, "--precision", "fp32", "--output", tmp_path / "fit")
    assert resized.returncode == 0, resized.stderr[-3000:]
    labels = (np.asarray(Image.open(tmp_path / name / "0000_labels.png")) for name in ("tiled", "fit"))
    assert not np.array_equal(*labels)  # the tiles did not borrow the resize
    refused = isnet("predict", image, "--checkpoint", checkpoint, "--tile", 32, 32, "--fit", 32, 24,
                    "--output", tmp_path / "refused")
    assert first_line(refused, "predict", 2) == ("--tile streams every image at its own size, --fit resizes it first; "
                                                 "leave out one of them")


def test_threads_is_an_option_of_every_command_that_computes(calibrated, data_root, tmp_path):
    for command in ("train", "eval", "predict", "calibrate", "quantize", "export", "serve", "demo"):
        assert "--threads" in isnet(command, "--help").stdout, command
    result = isnet("predict", data_root / "images" / "val", "--checkpoint", calibrated[0], "--threads", 1,
                   "--output", tmp_path / "one")
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(path.name for path in (tmp_path / "one").iterdir()) == ["0000_labels.png", "0000_overlay.png",
                                                                          "0001_labels.png", "0001_overlay.png",
                                                                          "0002_labels.png", "0002_overlay.png"]


def test_threads_zero_is_refused_with_one_line():
    result = isnet("predict", "x.png", "--checkpoint", "m.safetensors", "--threads", "0")
    assert result.returncode == 2 and "--threads: 0 is not a positive integer" in result.stderr
    assert "Traceback" not in result.stderr

"""The everyday workflows as a new user runs them: the CLI in a subprocess, on real files.

No weights → refused; a trained model's classes, colours and test protocol travel with its
checkpoint and its ONNX export; class counts are checked before any work; fine-tuning from a
checkpoint of another class count re-initialises the classifiers and says so.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

from isnet.weights.checkpoint import save_model
from isnet.data import synthetic
from isnet.training.recipes import recipe
from isnet.weights.released import RELEASED_PREFIXES
from isnet.model.segmentor import build_model
from isnet.training.loop import train
from training_helpers import make_data, tiny_config

SOURCE = Path(__file__).resolve().parents[1] / "src"


def isnet(*arguments: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """``isnet ARGUMENTS`` in a subprocess, as a user runs it."""
    env = {**os.environ, "PYTHONPATH": str(SOURCE), "OMP_NUM_THREADS": "2"}
    return subprocess.run([sys.executable, "-m", "isnet.cli", *map(str, arguments)], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("scenes"))


@pytest.fixture(scope="module")
def trained(data_root, tmp_path_factory) -> tuple[Path, float]:
    """A tiny model trained on the synthetic scenes (folder with dataset.json): its run and final mIoU."""
    run = tmp_path_factory.mktemp("run")
    summary = train(tiny_config(data_root, run, max_iters=8, checkpoint_interval=8))
    return run, summary["mIoU"]


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("photos") / "street.png"
    Image.fromarray(synthetic.draw_scene(3, 48, 64).image).save(path)
    return path


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_predict_without_weights_is_refused(image, tmp_path):
    output = tmp_path / "out"
    result = isnet("predict", image, "--model", "isnet_resnet50os8_ade20k", "--output", output)
    assert result.returncode == 2
    first = result.stderr.strip().splitlines()[0]
    assert "--model isnet_resnet50os8_ade20k has no weights" in first and "--allow-random" in first
    assert "Traceback" not in result.stderr and not output.exists()
    result = isnet("predict", image, "--output", output)
    assert result.returncode == 2 and "which model?" in result.stderr and not output.exists()


def test_released_weights_name_offline_names_url_and_cache(image, tmp_path):
    env_home = tmp_path / "torch_home"
    result = subprocess.run(
        [sys.executable, "-m", "isnet.cli", "predict", str(image), "--model", "isnet_resnet50os8_lip",
         "--weights", "isnet_resnet50os8_lip", "--output", str(tmp_path / "out")],
        capture_output=True, text=True, timeout=300,
        env={**os.environ, "PYTHONPATH": str(SOURCE), "TORCH_HOME": str(env_home), "https_proxy": "http://127.0.0.1:9"},
    )
    assert result.returncode != 0
    assert "ssseg_isnet/isnet_resnet50os8_lip.pth" in result.stderr
    assert str(env_home / "hub" / "checkpoints" / "isnet_resnet50os8_lip.pth") in result.stderr


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_eval_of_a_trained_folder_model_at_defaults_reproduces_its_training_miou(trained, data_root, tmp_path):
    run, training_miou = trained
    output = tmp_path / "eval"
    result = isnet("eval", "--checkpoint", run / "model.safetensors", "--dataset", "folder",
                   "--data-root", data_root, "--split", "val", "--output", output)
    assert result.returncode == 0, result.stderr
    assert "test resize: no resize (from" in result.stderr
    reported = float(re.search(r"mIoU\s+([0-9.]+)", (output / "scores.txt").read_text()).group(1))
    assert reported == pytest.approx(100 * training_miou, abs=0.5)


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_train_with_another_class_count_is_refused_before_step_one(data_root, tmp_path):
    output = tmp_path / "run"
    result = isnet("train", "--recipe", "camvid_isnet", "--set", "data.dataset=folder", "--data-root", data_root,
                   "--output", output, "--workers", "0")
    assert result.returncode != 0
    assert "the model has 11 classes (model.num_classes) but the train data" in result.stderr
    assert "has 6: sky, building" in result.stderr
    assert not (output / "checkpoints").exists() and not (output / "metrics.csv").exists()


def test_eval_with_another_class_count_is_refused_before_the_first_image(data_root, tmp_path):
    config = tiny_config(data_root, tmp_path).model.replace(num_classes=4)
    checkpoint = save_model(build_model(config), tmp_path / "four.safetensors")
    output = tmp_path / "eval"
    result = isnet("eval", "--checkpoint", checkpoint, "--dataset", "folder", "--data-root", data_root,
                   "--split", "val", "--output", output)
    assert result.returncode == 1
    assert "predicts 4 classes but" in result.stderr and "has 6; nothing was evaluated" in result.stderr
    assert not output.exists()


def ours_to_released(key: str) -> str:
    for released, ours in RELEASED_PREFIXES:
        if key.startswith(ours):
            return released + key[len(ours):]
    return key


@pytest.mark.parametrize("layout", ["safetensors", "released_pth"])
@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_fine_tune_from_another_class_count_reports_reinitialised_keys(data_root, tmp_path, layout):
    source_model = build_model(recipe("camvid_isnet").model)  # 11 classes, the recipe's architecture
    if layout == "safetensors":
        source = save_model(source_model, tmp_path / "camvid11.safetensors")
    else:
        source = tmp_path / "camvid11.pth"
        torch.save({"model": {ours_to_released(k): v for k, v in source_model.state_dict().items()}}, source)
    output = tmp_path / "run"
    result = isnet("train", "--recipe", "camvid_isnet", "--dataset", "folder", "--data-root", data_root,
                   "--init-from", source, "--output", output, "--max-iters", "2", "--batch-size", "2",
                   "--workers", "0", "--precision", "fp32", "--set", "data.crop_size=[40,56]",
                   "--set", "eval_interval=0", "--set", "progress=false")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "model.num_classes 11 → 6" in result.stdout
    log = result.stderr
    total = len(build_model(recipe("camvid_isnet").model.replace(num_classes=6)).state_dict())
    assert f"weights from {source}: {total - 6} of the model's {total} tensors loaded, 6 freshly initialised" in log
    assert "re-initialised head.classifier_stage1.4.weight: file (11, 64, 1, 1) vs model (6, 64, 1, 1)" in log
    assert "re-initialised head.decoder.classifier.1.bias: file (11,) vs model (6,)" in log
    with safe_open(str(output / "model.safetensors"), "pt") as handle:
        record = json.loads(handle.metadata()["isnet_dataset"])
        assert handle.get_tensor("head.decoder.classifier.1.weight").shape[0] == 6
    assert record["classes"] == list(synthetic.CLASSES)


def test_fine_tune_in_python_needs_the_flag(tmp_path):
    from isnet import create_model
    from isnet.weights.checkpoint import CheckpointError

    config = recipe("camvid_isnet").model
    source = save_model(build_model(config), tmp_path / "eleven.safetensors")
    with pytest.raises(CheckpointError, match="misshapen"):
        create_model(config, num_classes=5, weights=source)
    model = create_model(config, num_classes=5, weights=source, ignore_mismatched_sizes=True)
    reference = build_model(config).state_dict()
    kept = model.state_dict()["backbone.stem.0.weight"]
    assert kept.shape == reference["backbone.stem.0.weight"].shape
    from safetensors.torch import load_file

    assert torch.equal(kept, load_file(str(source))["backbone.stem.0.weight"])
    assert model.config.num_classes == 5 and model.dataset is None


def palette_of(path: Path) -> list[int]:
    image = Image.open(path)
    assert image.mode == "P", f"{path} is not a palette PNG"
    return image.getpalette()[: 3 * len(synthetic.PALETTE)]


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_classes_and_palette_survive_checkpoint_predict_and_onnx(trained, image, tmp_path):
    run, _ = trained
    expected = [channel for colour in synthetic.PALETTE for channel in colour]

    result = isnet("predict", image, "--checkpoint", run / "model.safetensors", "--output", tmp_path / "torch")
    assert result.returncode == 0, result.stderr
    assert palette_of(tmp_path / "torch" / "street_labels.png") == expected

    onnx_path = tmp_path / "model.onnx"
    result = isnet("export", "--checkpoint", run / "model.safetensors", "--output", onnx_path, "--size", "48", "64")
    assert result.returncode == 0, result.stderr
    result = isnet("predict", image, "--runtime", "onnx", "--weights", onnx_path, "--output", tmp_path / "onnx")
    assert result.returncode == 0, result.stderr
    assert palette_of(tmp_path / "onnx" / "street_labels.png") == expected
    torch_labels = np.asarray(Image.open(tmp_path / "torch" / "street_labels.png"))
    onnx_labels = np.asarray(Image.open(tmp_path / "onnx" / "street_labels.png"))
    assert (torch_labels == onnx_labels).mean() > 0.999


def test_hub_directory_round_trips(trained, tmp_path):
    from isnet.weights.checkpoint import load_model
    from isnet.weights.hub import from_pretrained, save_pretrained

    run, miou = trained
    model = load_model(run / "model.safetensors")
    directory = save_pretrained(model, tmp_path / "hub", recipe="tiny", metrics={"mIoU": miou})
    assert sorted(p.name for p in directory.iterdir()) == ["README.md", "config.json", "model.safetensors"]
    card = (directory / "README.md").read_text()
    assert "library_name: isnet" in card and "| 0 | sky | (70, 130, 180) |" in card and "Trained with the recipe `tiny`" in card
    config = json.loads((directory / "config.json").read_text())
    assert config["dataset"]["classes"] == list(synthetic.CLASSES) and config["model"]["num_classes"] == 6
    loaded = from_pretrained(directory)
    assert loaded.dataset == model.dataset
    images = torch.randn(1, 3, 48, 64)
    with torch.no_grad():
        assert torch.equal(loaded.eval().logits(images), model.eval().logits(images))


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_folder_without_a_record_is_tested_by_the_checkpoints_protocol(trained, data_root, tmp_path):
    """A folder with only classes.txt takes the test resize the checkpoint's record carries, and says so."""
    import shutil
    from dataclasses import replace

    from isnet.weights.checkpoint import load_model

    run, _ = trained
    model = load_model(run / "model.safetensors")
    model.dataset = replace(model.dataset, test=replace(model.dataset.test, fit_size=(32, 24)))
    checkpoint = save_model(model, tmp_path / "fit32.safetensors")
    plain = tmp_path / "plain"
    shutil.copytree(data_root, plain)
    (plain / "dataset.json").unlink()
    result = isnet("eval", "--checkpoint", checkpoint, "--dataset", "folder", "--data-root", plain,
                   "--split", "val", "--output", tmp_path / "eval")
    assert result.returncode == 0, result.stderr
    assert f"test resize: fit 32×24 (from the dataset record of {checkpoint})" in result.stderr


def test_overlay_legend_wraps_and_large_images_are_drawn_smaller(tmp_path):
    from isnet.data.info import ADE20K
    from isnet.utils.visualize import MAX_OVERLAY_SIDE, save_overlay_with_legend

    rng = np.random.default_rng(0)
    labels = np.repeat(np.repeat(rng.integers(0, 150, (20, 30)), 8, 0), 8, 1)  # every class present
    picture = rng.integers(0, 255, (*labels.shape, 3), dtype=np.uint8)
    small = Image.open(save_overlay_with_legend(tmp_path / "many.png", picture, labels, ADE20K.classes, ADE20K.palette))
    assert small.height < 400  # 150 names in columns, not one 150-row column
    big_labels = np.zeros((5000, 7000), np.int64)
    big = Image.open(save_overlay_with_legend(tmp_path / "big.png", np.zeros((5000, 7000, 3), np.uint8), big_labels,
                                              ADE20K.classes, ADE20K.palette))
    assert big.height <= MAX_OVERLAY_SIDE + 100 and big.width <= 2 * MAX_OVERLAY_SIDE + 400

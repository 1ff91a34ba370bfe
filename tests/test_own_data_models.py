"""Models for users' own data: binary (2-class), C ≠ 3 input channels, fine-tuning by class name.

The workflows run the CLI in a subprocess on tiny real files; the weight adaptations (inflated
first convolution, classifier rows kept by name) are checked tensor by tensor.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors import safe_open

import dataset_files
from cli_helpers import first_line, isnet
from isnet.data import ADE20K, CAMVID, synthetic
from isnet.data.info import DatasetInfo, make_palette
from isnet.model.segmentor import build_model
from isnet.training.recipes import recipe
from isnet.weights.checkpoint import load_model, save_model
from isnet.weights.imagenet import load_imagenet_weights
from isnet.weights.loading import load_weights
from isnet.weights.transfer import class_indexed_keys, inflate_input_conv, match_classes, weights_classes
from test_data_doctor import tiny_recipe_arguments


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_binary_masks_are_converted_trained_evaluated_with_foreground_iou_and_f1_and_predicted(tmp_path):
    converted = tmp_path / "converted"
    assert isnet("data", "convert", dataset_files.binary_0_255(tmp_path / "raw"), converted).returncode == 0
    run = tmp_path / "run"
    result = isnet(*tiny_recipe_arguments(converted, run, "--set", "lr=0.05", iters=30))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "model.num_classes 11 → 2" in result.stdout
    result = isnet("eval", "--checkpoint", run / "model.safetensors", "--dataset", "folder", "--data-root", converted,
                   "--split", "val", "--output", tmp_path / "eval", "--precision", "fp32")
    assert result.returncode == 0, result.stderr[-2000:]
    assert "foreground (class 1, foreground): IoU" in result.stdout
    summary = json.loads((tmp_path / "eval" / "summary.json").read_text())
    iou = summary["foreground_iou"]
    assert summary["foreground_f1"] == pytest.approx(2 * iou / (1 + iou))  # F1 and IoU of one confusion matrix
    assert iou > 0.5  # 30 steps learn the road of the scenes
    predictions = tmp_path / "predict"
    result = isnet("predict", converted / "images" / "val", "--checkpoint", run / "model.safetensors",
                   "--output", predictions, "--precision", "fp32")
    assert result.returncode == 0, result.stderr[-2000:]
    labels = np.asarray(Image.open(predictions / "s100_labels.png"))
    assert labels.shape == (dataset_files.HEIGHT, dataset_files.WIDTH) and set(np.unique(labels)) <= {0, 1}


def test_one_class_is_refused_with_the_two_class_path_named(tmp_path):
    root = dataset_files.write_masks(tmp_path / "data", lambda label: (label == synthetic.ROAD).astype(np.uint8),
                                     classes=["road"])
    result = isnet(*tiny_recipe_arguments(root, tmp_path / "run"))
    message = first_line(result, "train", 1)
    assert "num_classes 1" in message and "two (background, foreground)" in message


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_a_four_channel_tiff_folder_trains_and_predicts(tmp_path):
    root = dataset_files.four_channel_tiffs(tmp_path / "rgbn")
    run = tmp_path / "run"
    result = isnet(*tiny_recipe_arguments(root, run, iters=3))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "model.backbone.in_channels 3 → 4" in result.stdout
    model = load_model(run / "model.safetensors")
    assert model.config.backbone.in_channels == 4 and model.backbone.stem[0].weight.shape[1] == 4
    assert model.dataset.mean == (30000.0, 30000.0, 30000.0, 20000.0)
    output = tmp_path / "predict"
    result = isnet("predict", root / "images" / "val", "--checkpoint", run / "model.safetensors", "--output", output,
                   "--precision", "fp32")
    assert result.returncode == 0, result.stderr[-2000:]
    import tifffile

    stack = tifffile.imread(root / "images" / "val" / "s101.tif").astype(np.float32)
    normalised = (stack - np.float32([30000, 30000, 30000, 20000])) / np.float32([15000, 15000, 15000, 20000])
    with torch.no_grad():
        logits = model.eval().logits(torch.from_numpy(normalised).permute(2, 0, 1)[None])
        expected = F.interpolate(logits, size=stack.shape[:2], mode="bilinear", align_corners=False).argmax(1)[0]
    np.testing.assert_array_equal(np.asarray(Image.open(output / "s101_labels.png")), expected.numpy())
    with Image.open(output / "s101_overlay.png") as overlay:
        assert overlay.mode in ("RGB", "RGBA")


@pytest.mark.parametrize("channels", [1, 4, 6])
def test_the_inflated_first_convolution_computes_the_rgb_one_on_repeated_channels(channels):
    weight = torch.randn(8, 3, 3, 3)
    grey = torch.randn(1, 1, 10, 10)
    rgb = torch.randn(1, 3, 10, 10) if channels != 1 else grey.repeat(1, 3, 1, 1)
    inflated = inflate_input_conv(weight, channels)
    assert inflated.shape == (8, channels, 3, 3)
    if channels == 1:  # a grey image: the RGB network on three equal channels
        torch.testing.assert_close(F.conv2d(grey, inflated), F.conv2d(rgb, weight))
    elif channels == 6:  # RGB twice: the same activations (the 3/C scale keeps them)
        torch.testing.assert_close(F.conv2d(rgb.repeat(1, 2, 1, 1), inflated), F.conv2d(rgb, weight))
    else:  # R, G, B, R: channel c takes RGB channel c mod 3, scaled by 3/4
        torch.testing.assert_close(inflated, weight[:, [0, 1, 2, 0]] * 0.75)


def test_imagenet_weights_load_into_a_four_channel_backbone_with_the_stem_inflated(tmp_path):
    config = recipe("camvid_isnet").model
    source = build_model(config).backbone
    torch.save(source.state_dict(), tmp_path / "imagenet.pth")
    four = build_model(config.replace(backbone=replace(config.backbone, in_channels=4))).backbone
    load_imagenet_weights(four, tmp_path / "imagenet.pth")
    for key, value in source.state_dict().items():
        expected = inflate_input_conv(value, 4) if key == "stem.0.weight" else value
        torch.testing.assert_close(four.state_dict()[key], expected, rtol=0, atol=0)


def test_class_names_match_across_spellings_synonyms_and_ade20k_to_camvid():
    assert match_classes(["wall", "road, route", "traffic_light"], ["Road", "Traffic-Light", "sea"]) == {0: 1, 1: 2}
    kept = {CAMVID.classes[new]: ADE20K.classes[old] for new, old in match_classes(ADE20K.classes, CAMVID.classes).items()}
    assert kept == {"Sky": "sky", "Building": "building", "Pole": "pole", "Road": "road", "Pavement": "sidewalk",
                    "Tree": "tree", "Fence": "fence", "Car": "car", "Pedestrian": "person"}
    assert weights_classes(Path("anywhere/isnet_resnet50os8_ade20k.pth")) == ADE20K.classes


TARGET_CLASSES = ["Road", "vegetation", "Sky", "car", "pedestrian"]  # road, sky, car, person are in the source


def source_model(tmp_path: Path) -> tuple[torch.nn.Module, Path]:
    """A randomly initialised model of the recipe's architecture, trained on nothing, with the synthetic record."""
    model = build_model(recipe("camvid_isnet").model.replace(num_classes=6))
    model.dataset = synthetic.RECORD
    return model, save_model(model, tmp_path / "source.safetensors")


def test_fine_tuning_keeps_the_classifier_rows_of_matching_class_names(tmp_path):
    source, path = source_model(tmp_path)
    target = build_model(recipe("camvid_isnet").model.replace(num_classes=len(TARGET_CLASSES)))
    fresh = {key: value.clone() for key, value in target.state_dict().items()}
    report = load_weights(target, path, ignore_mismatched_sizes=True, classes=TARGET_CLASSES)
    rows = {0: synthetic.ROAD, 2: synthetic.SKY, 3: synthetic.CAR, 4: synthetic.PERSON}
    keys = class_indexed_keys(target)
    assert len(keys) == 6  # stage-1, stage-2 and auxiliary classifiers: weight and bias
    for key in keys:
        for new, old in rows.items():
            torch.testing.assert_close(target.state_dict()[key][new], source.state_dict()[key][old], rtol=0, atol=0)
        torch.testing.assert_close(target.state_dict()[key][1], fresh[key][1], rtol=0, atol=0)  # vegetation: fresh
    torch.testing.assert_close(target.state_dict()["backbone.stem.0.weight"], source.state_dict()["backbone.stem.0.weight"])
    assert report.classes.kept == [("Road", "road"), ("Sky", "sky"), ("car", "car"), ("pedestrian", "person")]
    assert report.classes.reinitialised == ["vegetation"]


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_train_init_from_lists_kept_and_reinitialised_classes(tmp_path):
    source, path = source_model(tmp_path)
    palette = make_palette(len(TARGET_CLASSES))
    remap = np.array([2, 1, 0, 1, 3, 4], np.uint8)  # sky, building, road, tree, car, person onto the target classes
    root = dataset_files.write_masks(tmp_path / "data", lambda label: remap[label])
    record = DatasetInfo(name="target", classes=tuple(TARGET_CLASSES), palette=palette)
    (root / "dataset.json").write_text(record.to_json())
    run = tmp_path / "run"
    result = isnet("train", "--recipe", "camvid_isnet", "--dataset", "folder", "--data-root", root, "--init-from", path,
                   "--output", run, "--max-iters", 1, "--batch-size", 2, "--workers", 0, "--precision", "fp32",
                   "--set", "data.crop_size=[48,64]", "--set", "eval_interval=0", "--set", "progress=false",
                   "--set", "lr=1e-9")
    assert result.returncode == 0, result.stderr[-2000:]
    assert ("classes kept from the source weights (4): Road ← road, Sky ← sky, car, pedestrian ← person"
            in result.stderr)
    assert "classes re-initialised (1): vegetation" in result.stderr
    with safe_open(str(run / "model.safetensors"), "pt") as handle:  # one step at lr 1e-9: the rows as loaded
        trained = handle.get_tensor("head.decoder.classifier.1.weight")
    source_rows = source.state_dict()["head.decoder.classifier.1.weight"]
    torch.testing.assert_close(trained[[0, 2, 3, 4]], source_rows[[2, 0, 4, 5]], rtol=0, atol=1e-6)


def test_a_stack_of_another_channel_count_than_the_record_is_refused_by_name(tmp_path):
    from isnet.data.channels import read_channels
    from isnet.data.image import DataFileError

    root = dataset_files.four_channel_tiffs(tmp_path / "rgbn")
    path = root / "images" / "train" / "s000.tif"
    assert read_channels(path, 4).shape == (dataset_files.HEIGHT, dataset_files.WIDTH, 4)
    with pytest.raises(DataFileError, match=r"s000\.tif: 4 channel\(s\) but the dataset record has 3"):
        read_channels(path, 3)


def test_create_model_keeps_the_rows_of_matching_classes_in_python(tmp_path):
    from isnet import create_model

    source, path = source_model(tmp_path)
    config = recipe("camvid_isnet").model
    model = create_model(config, num_classes=len(TARGET_CLASSES), weights=path, ignore_mismatched_sizes=True,
                         classes=TARGET_CLASSES)
    key = "head.classifier_stage1.4.bias"
    torch.testing.assert_close(model.state_dict()[key][[0, 2, 3, 4]], source.state_dict()[key][[2, 0, 4, 5]])
    assert model.dataset is None  # the source's record names other classes

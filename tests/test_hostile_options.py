"""Hostile option values, ``--set`` fields and JSON (issue 27, point 6): each refused before any work,
in one line naming the option or file, never a traceback.

Run the reliability suite with ``pytest -k "hostile or corrupt or fault or resume or malformed"``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import first_line, isnet, tiny_training, without_busy_note  # noqa: E402
from training_helpers import make_data  # noqa: E402


def tiny_checkpoint(folder: Path, num_classes: int) -> Path:
    """A ResNet-18 ISNet a few channels wide, random weights, ``num_classes`` classes; its classifier made
    steep, and the last 50 classes favoured, so that its label maps vary and use the highest classes."""
    import torch

    from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
    from isnet.model.segmentor import build_model
    from isnet.weights.checkpoint import save_model

    config = ModelConfig(num_classes=num_classes, backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
                         head=ISNetHeadConfig(channels=16, transform_channels=8))
    torch.manual_seed(num_classes)
    model = build_model(config)
    classifier = model.head.decoder.classifier[1]
    with torch.no_grad():
        classifier.weight.normal_(0, 10)
        classifier.bias.zero_()[: max(0, num_classes - 50)] = -1e3
    return save_model(model, folder / f"tiny{num_classes}.safetensors")

SERVE_OPTIONS = {
    ("--port", "70000"): "argument --port: 70000 is not a port (1 … 65535)",
    ("--port", "0"): "argument --port: 0 is not a port (1 … 65535)",
    ("--max-upload-mb", "inf"): "argument --max-upload-mb: inf is not a finite number > 0",
    ("--max-upload-mb", "nan"): "argument --max-upload-mb: nan is not a finite number > 0",
    ("--request-timeout", "-1"): "argument --request-timeout: -1 is not a finite number > 0",
    ("--max-wait-ms", "-5"): "argument --max-wait-ms: -5 is not a finite number ≥ 0",
    ("--max-batch", "0"): "argument --max-batch: 0 is not a positive integer",
    ("--max-queue", "-1"): "argument --max-queue: -1 is not a positive integer",
    ("--max-pixels", "0"): "argument --max-pixels: 0 is not a positive integer",
}


@pytest.mark.parametrize("option", SERVE_OPTIONS, ids=" ".join)
def test_hostile_serve_option_is_refused_when_parsed(option, capsys):
    from isnet.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(["serve", "--checkpoint", "missing.safetensors", *option])
    assert stopped.value.code == 2
    assert without_busy_note(capsys.readouterr().err).splitlines()[0] == f"isnet serve: error: {SERVE_OPTIONS[option]}"


def test_hostile_serve_port_is_refused_before_the_checkpoint_is_read(tmp_path):
    result = isnet("serve", "--checkpoint", tmp_path / "missing.safetensors", "--port", "70000")
    assert first_line(result, "serve", 2) == "argument --port: 70000 is not a port (1 … 65535)"


def test_hostile_list_setting_takes_k_numbers_from_the_command_line():
    from isnet.training.overrides import parse_overrides, with_overrides
    from isnet.training.recipes import recipe
    from isnet.utils.errors import ConfigError

    base = recipe("camvid_isnet")
    k = base.model.num_classes
    weights = [round(0.5 + 0.1 * index, 1) for index in range(k)]
    config = with_overrides(base, parse_overrides([f"class_weights={json.dumps(weights)}"]))
    assert config.class_weights == tuple(weights)
    assert with_overrides(base, parse_overrides(["class_weights=median_frequency"])).class_weights == "median_frequency"
    with pytest.raises(ConfigError, match=f"class_weights has 2 values for {k} classes"):
        with_overrides(base, parse_overrides(["class_weights=[1,2]"]))


def test_hostile_evaluation_scale_is_refused_at_config_time(tmp_path):
    data_root = make_data(tmp_path / "scenes")
    run = tmp_path / "run"
    result = isnet(*tiny_training(data_root, run), "--set", "eval.scales=[0.01]")
    assert first_line(result, "train", 2) == (
        "eval.scales 0.01 would shrink a side of 40 pixels (data.crop_size) to nothing: the evaluation scales "
        "must be ≥ 0.025 for images of that size")
    assert not run.exists()


def test_hostile_tiny_image_at_a_scale_is_refused_naming_the_image_and_scale(tmp_path):
    from PIL import Image

    image = tmp_path / "dot.png"
    Image.fromarray(np.full((1, 1, 3), 90, np.uint8)).save(image)
    result = isnet("predict", image, "--checkpoint", tiny_checkpoint(tmp_path, 4), "--device", "cpu",
                   "--precision", "fp32", "--scales", "0.5", "1.0", "--output", tmp_path / "out")
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    assert f"{image}: ValueError: a 1×1 image at scale 0.5 would be 0×0 pixels; leave out scales below 1 for it" \
        in result.stderr
    assert not (tmp_path / "out" / "dot_labels.png").exists()


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


def test_hostile_deep_json_is_refused_in_one_line(tmp_path):
    from isnet.data.folder import folder_record
    from isnet.utils.json_text import load_json

    with pytest.raises(json.JSONDecodeError, match="nested deeper than 64 levels"):
        load_json(_nested(100_000))
    with pytest.raises(json.JSONDecodeError, match="nested deeper than 64 levels"):
        load_json(_nested(65))
    assert load_json(_nested(64)) == load_json(_nested(64))  # the limit itself parses
    (tmp_path / "dataset.json").write_text('{"name": "x", "classes": ' + _nested(100_000) + "}")
    with pytest.raises(OSError, match=r"dataset.json: not a usable dataset record: nested deeper than 64 levels"):
        folder_record(tmp_path)


def test_hostile_deep_config_json_of_a_model_directory_is_refused(tmp_path):
    from isnet.utils.errors import CheckpointError
    from isnet.weights.hub import check_config_file

    path = tmp_path / "config.json"
    path.write_text('{"model": ' + _nested(100_000) + "}")
    with pytest.raises(CheckpointError, match="config.json: damaged model directory configuration: not JSON "
                                              r"\(nested deeper than 64 levels"):
        check_config_file(path, model=None)


def test_hostile_deep_setting_is_refused():
    from isnet.training.overrides import parse_overrides, with_overrides
    from isnet.training.recipes import recipe
    from isnet.utils.errors import ConfigError

    with pytest.raises(ConfigError, match="class_weights is "):
        with_overrides(recipe("camvid_isnet"), parse_overrides([f"class_weights={_nested(100_000)}"]))


def test_hostile_missing_local_model_directory_is_named(tmp_path, monkeypatch):
    from isnet.utils.errors import CheckpointError
    from isnet.weights.hub import from_pretrained

    monkeypatch.chdir(tmp_path)
    for name in ("./missing_dir", str(tmp_path / "missing_dir"), "../missing_dir", "~/surely-missing-isnet-dir"):
        with pytest.raises(CheckpointError, match="no such model directory"):
            from_pretrained(name)


def test_hostile_duplicate_class_names_are_refused(tmp_path):
    from isnet.data.folder import folder_record

    (tmp_path / "classes.txt").write_text("road\nsky\nroad\n")
    with pytest.raises(OSError, match=r"classes.txt: not a usable class list: .*class name 'road' is given 2 times "
                                      r"\(classes 0, 2\)"):
        folder_record(tmp_path)

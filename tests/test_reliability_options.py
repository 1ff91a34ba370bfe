"""Malformed options are refused when they are parsed: one line naming the option and the rule,
exit status 2, no traceback, nothing written. ``--debug`` or ``ISNET_DEBUG=1`` shows the traceback.

Each test runs ``python -m isnet.cli`` in a subprocess, as a user would.
Run the whole reliability suite with ``pytest -k "hostile or corrupt or fault or resume or malformed"``.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import first_line, isnet, tiny_training, without_busy_note  # noqa: E402
from training_helpers import make_data  # noqa: E402


@pytest.fixture(scope="module")
def data_root(tmp_path_factory) -> Path:
    return make_data(tmp_path_factory.mktemp("scenes"))


TRAINING_OPTIONS = {
    # arguments: the first line of the error (after "isnet train: error: ")
    "lr_nan": (["--set", "lr=NaN"], "lr must be a finite number > 0, not nan"),
    "lr_text": (["--set", "lr=fast"], "lr takes a number, not 'fast'"),
    "crop_size_text": (["--set", "data.crop_size=40x56"],
                       "data.crop_size takes 2 integers as a list, not '40x56' (e.g. [512,1024])"),
    "checkpoint_interval_zero": (["--set", "checkpoint_interval=0"],
                                 "checkpoint_interval must be a positive integer, not 0"),
    "max_iters_negative": (["--max-iters", "-5"], "argument --max-iters: -5 is not a positive integer"),
    "unknown_key": (["--set", "max_iter=10"],
                    "unknown key max_iter: TrainConfig has no field 'max_iter' (did you mean max_iters?); its fields: "),
}


@pytest.mark.parametrize("case", TRAINING_OPTIONS)
def test_malformed_training_option_is_refused_when_parsed(case, data_root, tmp_path):
    arguments, expected = TRAINING_OPTIONS[case]
    run = tmp_path / "run"
    result = isnet(*tiny_training(data_root, run), *arguments)
    assert first_line(result, "train", 2).startswith(expected)
    assert not run.exists(), f"a refused run wrote {sorted(run.rglob('*'))}"


def test_malformed_options_of_predict_and_export_are_refused_when_parsed(tmp_path):
    image, out, onnx = tmp_path / "x.png", tmp_path / "out", tmp_path / "m.onnx"
    image.write_bytes(b"")
    for arguments, expected in (
        (["predict", image, "--output", out, "--mode", "slide", "--stride", "0", "0"],
         "argument --stride: 0 is not a positive integer"),
        (["export", "--output", onnx, "--size", "0", "0"], "argument --size: 0 is not a positive integer"),
    ):
        result = isnet(*arguments)
        assert first_line(result, arguments[0], 2) == expected
        assert not out.exists() and not onnx.exists()


MORE_MALFORMED = {
    # Checked in process (the same parser; a subprocess each would cost seconds).
    ("predict", "x.png", "--crop", "512", "-1"): "argument --crop: -1 is not a positive integer",
    ("predict", "x.png", "--scales", "nan"): "argument --scales: nan is not a finite number > 0",
    ("predict", "x.png", "--max-pixels", "0"): "argument --max-pixels: 0 is not a positive integer",
    ("predict", "x.png", "--max-pixels", "many"): "argument --max-pixels: 'many' is not an integer",
    ("train", "--recipe", "camvid_isnet", "--seed", "-1"): "argument --seed: -1 is negative",
    ("train", "--recipe", "camvid_isnt"): "argument --recipe: unknown recipe 'camvid_isnt'; did you mean camvid_isnet",
    ("train", "--recipe", "camvid_isnet", "--set", "=1"): "argument --set: '=1' is not KEY=VALUE (e.g. lr=0.01)",
    ("eval", "--dataset", "folder", "--data-root", "d", "--fit", "0", "0"): "argument --fit: 0 is not a positive integer",
}


@pytest.mark.parametrize("arguments", MORE_MALFORMED, ids=" ".join)
def test_malformed_options_more_of_them(arguments, capsys):
    from isnet.cli import main

    with pytest.raises(SystemExit) as stopped:
        main(list(arguments))
    assert stopped.value.code == 2
    assert without_busy_note(capsys.readouterr().err).splitlines()[0].startswith(f"isnet {arguments[0]}: error: {MORE_MALFORMED[arguments]}")


MALFORMED_SETTINGS = {
    "data.crop_size=[0,56]": "data.crop_size must be two positive integers such as [512, 512], not (0, 56)",
    "data.scale_range=[2.0,0.5]": "data.scale_range must be (smallest, largest), not (2.0, 0.5)",
    "model.num_classes=1e12": "model.num_classes: 1000000000000 is outside 1..65536",
    "model.head.channels=0": "model.head.channels: 0 is outside 1..65536",
    "model.head.dropuot=0.5": "unknown key model.head.dropuot: ISNetHeadConfig has no field 'dropuot' (did you mean",
    "model=1": "model is a group of settings; set its fields one by one, e.g. model.num_classes=...",
    "min_lr=1": "min_lr must be a finite number ≥ 0 and ≤ 0.01, not 1.0",
    "momentum=-0.9": "momentum must be a finite number ≥ 0 and ≤ 1, not -0.9",
    "batch_size=6": "batch_size 6 does not divide into 4 accumulation steps",
    "precision=fp8": "precision takes one of 'auto', 'fp32', 'bf16', 'fp16', not 'fp8'",
    "deterministic=yes": "deterministic takes true or false, not 'yes'",
    "loss_weights={\"auxx\":1}": "loss_weights is 'auxx'; choose one of aux, stage1, out",
    "eval.stride=[341,0]": "eval.stride must be two positive integers such as [512, 512], not (341, 0)",
    "seed=1.5": "seed takes an integer, not 1.5",
}


@pytest.mark.parametrize("setting", MALFORMED_SETTINGS)
def test_malformed_setting_is_named_before_anything_runs(setting):
    from isnet.utils.errors import ConfigError
    from isnet.training.recipes import recipe
    from isnet.training.overrides import parse_overrides, with_overrides

    base = with_overrides(recipe("camvid_isnet"), {"grad_accum_steps": 4, "batch_size": 8})
    with pytest.raises(ConfigError) as error:
        with_overrides(base, parse_overrides([setting]))
    assert str(error.value).startswith(MALFORMED_SETTINGS[setting])


def test_settings_are_read_by_the_type_of_their_field():
    from isnet.training.recipes import recipe
    from isnet.training.overrides import parse_overrides, with_overrides

    config = with_overrides(recipe("camvid_isnet"), parse_overrides([
        "lr=1e-3", "max_iters=1e3", "data.root=2024", "data.crop_size=[40,56]", "data.fit_size=null",
        "model.aux=null", "weights_backbone=none", "channels_last=false", "loss_weights={\"out\":1}",
    ]))
    assert (config.lr, config.max_iters, config.data.root, config.data.crop_size) == (1e-3, 1000, "2024", (40, 56))
    assert config.data.fit_size is None and config.model.aux is None and config.weights_backbone is None
    assert config.channels_last is False and config.loss_weights == {"out": 1.0}


def test_malformed_option_shows_the_traceback_with_debug(data_root, tmp_path):
    arguments = [*tiny_training(data_root, tmp_path / "run"), "--set", "checkpoint_interval=0"]
    for result in (isnet("--debug", *arguments), isnet(*arguments, ISNET_DEBUG="1")):
        assert result.returncode == 1
        assert "Traceback (most recent call last)" in result.stderr
        assert result.stderr.rstrip().splitlines()[-1] == (
            "isnet.utils.errors.ConfigError: checkpoint_interval must be a positive integer, not 0"
        )

"""``isnet predict`` on hostile inputs: the good images are segmented, every bad one is listed
with its problem, the exit code is 1, and a bad input leaves no output file, whole or partial.

Run the whole reliability suite with ``pytest -k "hostile or corrupt or fault or resume or malformed"``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from isnet.weights.checkpoint import save_model
from isnet.cli import main
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.segmentor import build_model

sys.path.insert(0, str(Path(__file__).parent))
from hostile_files import random_image, truncate, write_bomb_png, write_png  # noqa: E402

TINY = ModelConfig(
    num_classes=4,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8),
)


pytestmark = pytest.mark.usefixtures("one_thread")  # fast on a shared machine; bitwise-stable kills


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return save_model(build_model(TINY), tmp_path_factory.mktemp("model") / "tiny.safetensors")


def zero_byte(folder: Path) -> tuple[Path, str]:
    (folder / "bad.png").write_bytes(b"")
    return folder / "bad.png", "empty file (0 bytes)"


def text_named_jpg(folder: Path) -> tuple[Path, str]:
    (folder / "bad.jpg").write_text("<html>not a photo</html>")
    return folder / "bad.jpg", "not an image"


def truncated_png(folder: Path) -> tuple[Path, str]:
    truncate(write_png(folder / "bad.png", random_image(40, 50)))
    return folder / "bad.png", "truncated or corrupt"


def directory_named_png(folder: Path) -> tuple[Path, str]:
    (folder / "bad.png").mkdir()
    return folder / "bad.png", "is a directory"


def decompression_bomb(folder: Path) -> tuple[Path, str]:
    write_bomb_png(folder / "bad.png")
    return folder / "bad.png", "decompression bomb"


def over_the_pixel_limit(folder: Path) -> tuple[Path, str]:
    write_png(folder / "bad.png", random_image(60, 80))  # 4800 pixels; --max-pixels 3000 below
    return folder / "bad.png", "80×60 = 4,800 pixels is over the limit of 3,000"


def duplicate_stem(folder: Path) -> tuple[Path, str]:
    write_png(folder / "good.jpg", random_image(30, 40, seed=1))  # would overwrite good_labels.png
    return folder / "good.jpg", "would write the same good_labels.png"


CASES: dict[str, Callable[[Path], tuple[Path, str]]] = {
    "zero_byte": zero_byte,
    "text_named_jpg": text_named_jpg,
    "truncated_png": truncated_png,
    "directory_named_png": directory_named_png,
    "decompression_bomb": decompression_bomb,
    "over_the_pixel_limit": over_the_pixel_limit,
    "duplicate_stem": duplicate_stem,
}


@pytest.mark.parametrize("case", CASES)
def test_hostile_predict_input_is_listed_and_leaves_no_output(case, checkpoint, tmp_path, capsys):
    inputs, output = tmp_path / "inputs", tmp_path / "out"
    inputs.mkdir()
    write_png(inputs / "good.png", random_image(30, 40))
    write_png(inputs / "other.png", random_image(2, 90))  # an extreme aspect ratio is fine
    bad, problem = CASES[case](inputs)

    code = main(["predict", str(inputs), "--checkpoint", str(checkpoint), "--output", str(output),
                 "--max-pixels", "3000"])

    assert code == 1
    err = capsys.readouterr().err
    assert f"{bad}: " in err and problem in err, err
    assert "1 of" in err or "2 of" in err  # the summary counts the failures
    written = sorted(path.name for path in output.iterdir())
    if case == "duplicate_stem":  # neither good.png nor good.jpg may win silently
        assert written == ["other_labels.png", "other_overlay.png"]
    else:
        assert written == ["good_labels.png", "good_overlay.png", "other_labels.png", "other_overlay.png"]
        assert np.asarray(Image.open(output / "good_labels.png")).shape == (30, 40)
    assert np.asarray(Image.open(output / "other_labels.png")).shape == (2, 90)


def test_hostile_predict_missing_input_file_is_listed(checkpoint, tmp_path, capsys):
    good = write_png(tmp_path / "good.png", random_image(30, 40))
    missing = tmp_path / "absent.png"
    output = tmp_path / "out"
    code = main(["predict", str(good), str(missing), "--checkpoint", str(checkpoint), "--output", str(output)])
    assert code == 1
    assert f"{missing}: no such file" in capsys.readouterr().err
    assert sorted(p.name for p in output.iterdir()) == ["good_labels.png", "good_overlay.png"]

"""``isnet predict`` and its output folder: a folder that refuses writes, an ``--output`` that is
a file, a full disk for one file, outputs that must not become inputs, and every image format
and mode Pillow reads.

The CLI tests run ``python -m isnet.cli predict`` in a subprocess, as a user would.
Run the whole reliability suite with ``pytest -k "hostile or corrupt or fault or resume or malformed"``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from isnet.data.image import ImageReadError, find_images, read_image

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import first_line, isnet  # noqa: E402
from hostile_files import random_image, write_png  # noqa: E402
from test_reliability_predict import checkpoint  # noqa: E402, F401 (the tiny model, a fixture)


def images(folder: Path, *names: str) -> Path:
    for number, name in enumerate(names):
        write_png(folder / name, random_image(30, 40, seed=number))
    return folder


def written(folder: Path) -> list[str]:
    return sorted(path.name for path in folder.iterdir()) if folder.exists() else []


@pytest.mark.parametrize("how", ["fault_injected", "chmod"])
def test_fault_read_only_output_folder_is_named_before_any_image_is_read(how, checkpoint, tmp_path):
    inputs, output = images(tmp_path / "in", "a.png", "b.png"), tmp_path / "out"
    output.mkdir()
    if how == "chmod":
        if os.geteuid() == 0:
            pytest.skip("permissions do not apply to root; the fault-injected case covers it")
        output.chmod(0o555)
        result = isnet("predict", inputs, "--checkpoint", checkpoint, "--output", output)
        output.chmod(0o755)
    else:
        result = isnet("predict", inputs, "--checkpoint", checkpoint, "--output", output, fault=("eacces", output))
    assert first_line(result, "predict", 1) == f"{output}: permission denied (EACCES)"
    assert written(output) == []


def test_malformed_output_naming_a_file_is_refused(checkpoint, tmp_path):
    inputs, output = images(tmp_path / "in", "a.png"), tmp_path / "out.png"
    output.write_bytes(b"keep me")
    result = isnet("predict", inputs, "--checkpoint", checkpoint, "--output", output)
    assert first_line(result, "predict", 2) == (
        f"--output {output}: is a file, not a folder; name a folder for the label maps and overlays"
    )
    assert output.read_bytes() == b"keep me"


def problems(result) -> list[str]:
    """What ``isnet predict`` said on stderr after the line naming its test protocol (which it says first)."""
    lines = result.stderr.splitlines()
    assert lines[0].startswith("test protocol: "), lines[:2]
    return lines[1:]


def test_fault_disk_full_for_one_image_is_listed_and_the_others_are_written(checkpoint, tmp_path):
    inputs, output = images(tmp_path / "in", "a.png", "b.png", "c.png"), tmp_path / "out"
    result = isnet("predict", inputs, "--checkpoint", checkpoint, "--output", output,
                   fault=("enospc", ".b_overlay.isnet-*.partial.png"))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    reason = (f"{inputs / 'b.png'}: cannot write its output {output / 'b_overlay.png'}: no space left on device "
              "(ENOSPC); free some space, or write elsewhere")
    assert problems(result) == [f"skipped {reason}", "1 of 3 file(s) could not be segmented:", f"  {reason}"]
    assert written(output) == ["a_labels.png", "a_overlay.png", "c_labels.png", "c_overlay.png"]  # nothing partial


def test_hostile_output_path_taken_by_a_folder_is_listed_and_the_others_are_written(checkpoint, tmp_path):
    inputs, output = images(tmp_path / "in", "a.png", "b.png"), tmp_path / "out"
    (output / "a_labels.png").mkdir(parents=True)
    result = isnet("predict", inputs, "--checkpoint", checkpoint, "--output", output)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert problems(result)[0].startswith(
        f"skipped {inputs / 'a.png'}: cannot write its output {output / 'a_labels.png'}: is a directory (EISDIR)"
    )
    assert written(output) == ["a_labels.png", "b_labels.png", "b_overlay.png"]
    assert (output / "a_labels.png").is_dir()


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_hostile_outputs_in_the_input_folder_are_not_segmented_again(checkpoint, tmp_path):
    folder = images(tmp_path / "photos", "a.png", "b.jpg")
    for _ in range(2):
        result = isnet("predict", folder, "--checkpoint", checkpoint, "--output", folder)
        assert result.returncode == 0, result.stderr[-3000:]
        assert written(folder) == ["a.png", "a_labels.png", "a_overlay.png", "b.jpg", "b_labels.png", "b_overlay.png"]
    assert "_labels.png →" not in result.stdout and "_overlay.png →" not in result.stdout


def unusual_images(folder: Path) -> dict[str, tuple[int, int]]:
    """One image of each format and mode worth a test, with its (height, width)."""
    folder.mkdir(parents=True, exist_ok=True)
    frames = [Image.new("RGB", (40, 30), colour) for colour in ((250, 0, 0), (0, 0, 250))]
    frames[0].save(folder / "animated.gif", save_all=True, append_images=frames[1:], duration=100, loop=0)
    Image.fromarray(random_image(30, 40)).save(folder / "photo.webp")
    Image.fromarray(np.linspace(0, 65535, 30 * 40).astype(np.uint16).reshape(30, 40)).save(folder / "deep.png")
    Image.fromarray(np.linspace(0, 1, 30 * 40).astype(np.float32).reshape(30, 40)).save(folder / "unit.tif")
    Image.new("CMYK", (40, 30), (0, 255, 255, 0)).save(folder / "print.jpg")
    Image.new("LA", (40, 30), (128, 0)).save(folder / "gray_alpha.png")
    palette = Image.new("P", (40, 30), 1)
    palette.putpalette([0, 0, 0, 0, 200, 0])
    palette.save(folder / "transparent.png", transparency=0)
    return {name: (30, 40) for name in ("animated", "photo", "deep", "unit", "print", "gray_alpha", "transparent")}


def test_hostile_image_formats_and_modes_are_read_or_refused_by_name(checkpoint, tmp_path):
    folder, output = tmp_path / "in", tmp_path / "out"
    sizes = unusual_images(folder)
    Image.fromarray(np.full((30, 40), 1000.0, np.float32)).save(folder / "radar.tif")  # no known range
    result = isnet("predict", folder, "--checkpoint", checkpoint, "--output", output)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert problems(result)[0] == (
        f"skipped {folder / 'radar.tif'}: floating-point image with values 1000..1000: no known range to map "
        "onto 8 bits (expected 0..1, 0..255 or 0..65535); convert it to 8-bit RGB"
    )
    for stem, size in sizes.items():
        assert np.asarray(Image.open(output / f"{stem}_labels.png")).shape == size, stem
    assert not (output / "radar_labels.png").exists()


# In process: the values each mode becomes.


def test_hostile_image_modes_keep_their_value_range(tmp_path):
    unusual_images(tmp_path)
    assert find_images([tmp_path]) == sorted(tmp_path.iterdir())  # GIF and WEBP listed with the rest
    assert tuple(read_image(tmp_path / "animated.gif")[0, 0]) == (250, 0, 0)  # the first frame
    deep = read_image(tmp_path / "deep.png")[..., 0].ravel()
    assert (deep[0], deep[-1]) == (0, 255) and abs(int(deep[len(deep) // 2]) - 128) <= 1  # scaled, not clipped
    unit = read_image(tmp_path / "unit.tif")[..., 0].ravel()
    assert (unit[0], unit[-1]) == (0, 255)
    assert tuple(read_image(tmp_path / "print.jpg")[0, 0]) == pytest.approx((255, 0, 0), abs=3)
    assert tuple(read_image(tmp_path / "gray_alpha.png")[0, 0]) == (128, 128, 128)  # alpha dropped
    assert tuple(read_image(tmp_path / "transparent.png")[0, 0]) == (0, 200, 0)  # the palette colour


def test_hostile_images_of_unknown_value_range_are_refused_by_name(tmp_path):
    Image.fromarray(np.full((4, 4), -3.0, np.float32)).save(tmp_path / "negative.tif")
    Image.fromarray(np.full((4, 4), np.nan, np.float32)).save(tmp_path / "nan.tif")
    Image.fromarray(np.full((4, 4), 70_000, np.int32)).save(tmp_path / "wide.tif")
    for name, problem in (("negative.tif", "values -3..-3"), ("nan.tif", "NaN or infinite"), ("wide.tif", "70000..70000")):
        with pytest.raises(ImageReadError, match=problem) as error:
            read_image(tmp_path / name)
        assert str(error.value).startswith(f"{tmp_path / name}: ")

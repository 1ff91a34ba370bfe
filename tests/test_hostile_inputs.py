"""Inputs bounded before they are decoded (issue 27, point 2): regular files only (a FIFO or a device
named like an image is refused by name, never read), bands × pixels bounded from a TIFF's header before
its pixels are decoded, and pixel data cut short found by ``isnet data check``.

Run the reliability suite with ``pytest -k "hostile or corrupt or fault or resume or malformed"``.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

sys.path.insert(0, str(Path(__file__).parent))
from cli_helpers import isnet  # noqa: E402
from dataset_files import four_channel_tiffs, write_masks  # noqa: E402
from test_hostile_options import tiny_checkpoint  # noqa: E402

from isnet.data import synthetic  # noqa: E402

pytestmark = pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")


def test_hostile_fifo_named_like_an_image_is_refused_by_name(tmp_path):
    from isnet.data.channels import read_channels, tiff_shape
    from isnet.data.image import DataFileError, read_image

    fifo = tmp_path / "scan.tif"
    os.mkfifo(fifo)
    for read in (read_image, tiff_shape, lambda path: read_channels(path, 4)):
        with pytest.raises(DataFileError, match=f"{fifo}: is a FIFO \\(named pipe\\), not an? "):
            read(fifo)
    with pytest.raises(DataFileError, match="/dev/null: is a character device, not an image file"):
        read_image("/dev/null")


def test_hostile_fifo_swapped_in_after_the_check_is_refused_on_the_opened_file(tmp_path):
    """A FIFO put in an image's place between a check of its name and its opening: the readers check the
    file they opened (opened without blocking), so they refuse it instead of waiting for a writer for ever.
    Here ``os.stat`` says "a regular file" as it would have before the swap."""
    import subprocess

    fifo = tmp_path / "swapped.tif"
    os.mkfifo(fifo)
    script = (
        "import os, stat, sys\n"
        "from isnet.data.channels import tiff_shape\n"
        "from isnet.data.image import DataFileError, read_image\n"
        "real = os.stat\n"
        "def before_the_swap(path, *args, **kwargs):\n"
        "    found = real(path, *args, **kwargs)\n"
        "    if str(path) != sys.argv[1]:\n"
        "        return found\n"
        "    fields = list(found)\n"
        "    fields[0] = stat.S_IFREG | 0o644\n"
        "    fields[6] = 1000\n"
        "    return os.stat_result(fields)\n"
        "os.stat = before_the_swap\n"
        "for read in (read_image, tiff_shape):\n"
        "    try:\n"
        "        read(sys.argv[1])\n"
        "    except DataFileError as error:\n"
        "        print(error)\n"
    )
    result = subprocess.run([sys.executable, "-c", script, str(fifo)], capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1] / "src")})
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.splitlines() == [f"{fifo}: is a FIFO (named pipe), not an image file",
                                          f"{fifo}: is a FIFO (named pipe), not a TIFF file"]


def test_hostile_fifo_in_predict_and_data_check_ends(tmp_path):
    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.fromarray(np.full((30, 40, 3), 120, np.uint8)).save(inputs / "good.png")
    os.mkfifo(inputs / "stuck.tif")
    result = isnet("predict", inputs, "--checkpoint", tiny_checkpoint(tmp_path, 4), "--device", "cpu",
                   "--precision", "fp32", "--output", tmp_path / "out", timeout=120)
    assert result.returncode == 1, result.stderr
    assert f"{inputs / 'stuck.tif'}: is a FIFO (named pipe), not an image file" in result.stderr
    assert (tmp_path / "out" / "good_labels.png").is_file()

    root = write_masks(tmp_path / "data", lambda label: label.astype(np.uint8), classes=list(synthetic.CLASSES))
    os.mkfifo(root / "images" / "train" / "s900.png")
    os.mkfifo(root / "masks" / "train" / "s900.png")
    result = isnet("data", "check", root, "--output", tmp_path / "report", timeout=120)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "s900.png: is a FIFO (named pipe)" in result.stdout + result.stderr


def test_hostile_tiff_of_600_bands_is_refused_before_decoding(tmp_path, monkeypatch):
    import tifffile

    from isnet.data.channels import read_channels
    from isnet.data.image import DataFileError

    path = tmp_path / "bands.tif"
    tifffile.imwrite(path, np.zeros((600, 20, 30), np.uint8), photometric="minisblack", planarconfig="separate")

    def no_decoding(*args, **kwargs):
        raise AssertionError("the pixels were decoded")

    monkeypatch.setattr(tifffile.TiffPageSeries, "asarray", no_decoding)
    monkeypatch.setattr(tifffile.TiffFile, "asarray", no_decoding)
    with pytest.raises(DataFileError, match=f"{path}: 600 bands is over the limit of 64"):
        read_channels(path, 4)
    four = tmp_path / "four.tif"  # within the limits, but not the record's channel count: refused from the header
    tifffile.imwrite(four, np.zeros((20, 30, 5), np.uint16), photometric="minisblack", planarconfig="contig")
    with pytest.raises(DataFileError, match=f"{four}: 5 channel\\(s\\) but the dataset record has 4"):
        read_channels(four, 4)


def test_hostile_tiff_bands_in_data_check(tmp_path):
    import tifffile

    root = four_channel_tiffs(tmp_path / "data")
    tifffile.imwrite(root / "images" / "train" / "s000.tif", np.zeros((600, 48, 64), np.uint8),
                     photometric="minisblack", planarconfig="separate")
    result = isnet("data", "check", root, "--output", tmp_path / "report", timeout=120)
    assert result.returncode == 1
    assert "s000.tif: 600 bands is over the limit of 64" in result.stdout


def test_hostile_truncated_jpeg_is_found_by_data_check(tmp_path):
    root = write_masks(tmp_path / "data", lambda label: label.astype(np.uint8), classes=list(synthetic.CLASSES))
    photo = root / "images" / "train" / "s001.jpg"
    rng = np.random.default_rng(0)
    Image.fromarray((rng.random((48, 64, 3)) * 255).astype(np.uint8)).save(photo, quality=95)
    (root / "images" / "train" / "s001.png").unlink()
    whole = photo.read_bytes()
    result = isnet("data", "check", root, "--output", tmp_path / "report", timeout=120)
    assert f"{photo}" not in result.stdout  # the whole JPEG is fine
    photo.write_bytes(whole[: len(whole) // 2])
    result = isnet("data", "check", root, "--output", tmp_path / "report", timeout=120)
    assert result.returncode == 1
    assert f"{photo}: unreadable image (truncated or corrupt?)" in result.stdout

"""The command line, end to end on small inputs."""

from __future__ import annotations

import pytest
import torch
import numpy as np
from PIL import Image

from isnet.weights.checkpoint import save_model
from isnet.cli import main
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig
from isnet.model.segmentor import build_model

TINY = ModelConfig(
    num_classes=4,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8),
)


def test_predict_folder_writes_labels_and_overlays_and_reports_bad_files(tmp_path, capsys):
    checkpoint = save_model(build_model(TINY), tmp_path / "tiny.safetensors")
    images = tmp_path / "images"
    images.mkdir()
    for name, size in (("a.png", (40, 30)), ("b.jpg", (33, 47))):
        Image.fromarray(np.random.randint(0, 255, (*size, 3), np.uint8)).save(images / name)
    (images / "broken.png").write_bytes(b"not an image at all")
    output = tmp_path / "out"

    code = main(["predict", str(images), "--checkpoint", str(checkpoint), "--output", str(output)])

    assert code == 1  # some inputs failed
    assert "broken.png" in capsys.readouterr().err
    for stem, size in (("a", (40, 30)), ("b", (33, 47))):
        labels = np.asarray(Image.open(output / f"{stem}_labels.png"))
        assert labels.shape == size and labels.max() < TINY.num_classes
        assert (output / f"{stem}_overlay.png").stat().st_size > 0
    assert not (output / "broken_labels.png").exists()


def test_predict_with_flip_and_scales(tmp_path):
    checkpoint = save_model(build_model(TINY), tmp_path / "tiny.safetensors")
    image = tmp_path / "x.png"
    Image.fromarray(np.random.randint(0, 255, (36, 52, 3), np.uint8)).save(image)
    code = main(["predict", str(image), "--checkpoint", str(checkpoint), "--output", str(tmp_path),
                 "--scales", "0.75", "1.0", "--flip"])
    assert code == 0
    assert np.asarray(Image.open(tmp_path / "x_labels.png")).shape == (36, 52)


def test_presets_command_shows_dataset_records_and_released_scores():
    import subprocess
    import sys

    result = subprocess.run([sys.executable, "-m", "isnet.cli", "presets"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    lines = {line.split()[0]: line for line in result.stdout.splitlines()}
    assert len(lines) == 12 + 6 + 4 + 9  # released, ISNet‡, Table 1 ablations, Table 3 peers
    released = lines["isnet_resnet50os8_ade20k"]
    assert "ade20k (150 classes)" in released and "44.22 single-scale / 45.03 ms+flip" in released
    assert "44.09 in the paper" in released
    assert "lip (20 classes)" in lines["isnet_dagger_resnet101os8_lip"] and "released" not in lines["isnet_dagger_resnet101os8_lip"]
    assert "cocostuff10k (182 classes)" in lines["isnet_resnest101os8_cocostuff10k"]


@pytest.mark.parametrize("command, module", [("bench", "benchmarks --quick"), ("complexity", "benchmarks.complexity")])
def test_a_command_that_moved_to_the_benchmarks_says_where(command, module):
    from cli_helpers import isnet

    result = isnet(command)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert f"isnet {command} moved out of the installed package: run `python -m {module}" in result.stderr


def test_a_busy_machine_is_noted_unless_the_threads_were_chosen(tmp_path, capsys, monkeypatch):
    """A load average over twice the cores makes every command slower: a command that computes says so
    first and points at --threads; with --threads (or OMP_NUM_THREADS) given, it says nothing."""
    import os

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "getloadavg", lambda: (64.0, 64.0, 64.0))
    missing = tmp_path / "missing.safetensors"
    for extra, noted in (((), True), (("--threads", "1"), False)):
        threads = torch.get_num_threads()
        try:
            assert main(["predict", str(tmp_path), "--checkpoint", str(missing), *extra]) != 0
        finally:
            torch.set_num_threads(threads)
        first = capsys.readouterr().err.splitlines()[0]
        assert first.startswith("note: this machine is busy (load average 64.0 on ") == noted, first
        assert ("--threads sets how many threads this command takes" in first) == noted

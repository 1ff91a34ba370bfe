"""The command line, end to end on small inputs."""

from __future__ import annotations

import numpy as np
from PIL import Image

from isnet.checkpoint import save_model
from isnet.cli import main
from isnet.config import BackboneConfig, HeadConfig, ModelConfig
from isnet.segmentor import build_model

TINY = ModelConfig(
    num_classes=4,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=HeadConfig(channels=16, transform_channels=8),
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

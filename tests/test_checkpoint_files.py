"""Our safetensors checkpoints, and unsafe, truncated or tampered files."""

from __future__ import annotations

import json
import os
import pickle
from dataclasses import replace

import pytest
import torch

from isnet.weights.checkpoint import CheckpointError, load_model, save_model
from isnet.weights.released import load_released_checkpoint
from isnet.model.config import BackboneConfig, ISNetHeadConfig, ModelConfig, ShortcutConfig
from isnet.model.config import PEER_HEAD_CONFIGS
from isnet.model.segmentor import build_model

SMALL = ModelConfig(
    num_classes=5,
    backbone=BackboneConfig("resnet", 18, base_channels=8, stem_channels=8),
    head=ISNetHeadConfig(channels=16, transform_channels=8, shortcut=ShortcutConfig(channels=4)),
)


def test_safetensors_round_trip_carries_the_configuration(tmp_path):
    model = build_model(SMALL).eval()
    path = save_model(model, tmp_path / "model.safetensors")
    loaded = load_model(path).eval()
    assert loaded.config == SMALL
    images = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images)["out"], model(images)["out"], rtol=0, atol=0)


@pytest.mark.parametrize("head", sorted(PEER_HEAD_CONFIGS))
def test_every_peer_head_round_trips(tmp_path, head):
    """Including ANN, whose key and query share one projection (tied tensors in the state dict)."""
    config = replace(SMALL, head=PEER_HEAD_CONFIGS[head](channels=16))
    model = build_model(config).eval()
    loaded = load_model(save_model(model, tmp_path / f"{head}.safetensors")).eval()
    images = torch.randn(1, 3, 40, 48)
    with torch.no_grad():
        torch.testing.assert_close(loaded(images)["out"], model(images)["out"], rtol=0, atol=0)


def test_pickle_with_executable_content_is_refused_without_running(tmp_path):
    marker = tmp_path / "executed"

    class Payload:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    path = tmp_path / "evil.pth"
    with open(path, "wb") as handle:
        pickle.dump({"model": Payload()}, handle)
    with pytest.raises(CheckpointError, match="refused") as error:
        load_released_checkpoint(build_model(SMALL), path)
    assert str(path) in str(error.value)
    assert not marker.exists()


def test_truncated_checkpoint_is_reported(tmp_path):
    path = tmp_path / "model.pth"
    torch.save({"model": build_model(SMALL).state_dict()}, path)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt") as error:
        load_released_checkpoint(build_model(SMALL), path)
    assert str(path) in str(error.value)


def test_tampered_safetensors_header_is_rejected(tmp_path):
    path = save_model(build_model(SMALL), tmp_path / "model.safetensors")
    data = bytearray(path.read_bytes())
    header_size = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_size])
    name = next(key for key in header if key != "__metadata__")
    start, end = header[name]["data_offsets"]
    header[name]["data_offsets"] = [start, end + 4096]  # points past its data
    encoded = json.dumps(header).encode().ljust(header_size)[:header_size]
    path.write_bytes(bytes(data[:8]) + encoded + bytes(data[8 + header_size :]))
    with pytest.raises(CheckpointError, match="corrupt safetensors") as error:
        load_model(path)
    assert str(path) in str(error.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(CheckpointError, match="no such checkpoint file"):
        load_model(tmp_path / "absent.safetensors")

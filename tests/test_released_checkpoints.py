"""Every key of the 12 released checkpoints maps to exactly one parameter or buffer of its preset."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
import torch

from isnet.weights.checkpoint import CheckpointError
from isnet.weights.presets import create_model, get_config
from isnet.weights.released import WEIGHTS, load_released_checkpoint, released_to_ours
from isnet.model.segmentor import build_model

MANIFEST = Path(__file__).parent / "fixtures" / "official_isnet_state_dict_manifest.json.gz"
ENTRIES = json.loads(gzip.decompress(MANIFEST.read_bytes()))


def test_manifest_covers_every_released_preset():
    assert sorted(ENTRIES) == sorted(WEIGHTS)


@pytest.mark.parametrize("name", sorted(ENTRIES))
def test_released_keys_map_one_to_one(name: str):
    entry = ENTRIES[name]
    config = get_config(name)
    assert config.num_classes == entry["num_classes"]
    assert (config.head.shortcut is not None) == entry["shortcut"]
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = build_model(config)
    ours = {key: tuple(value.shape) for key, value in model.state_dict().items()}

    mapped = [(released_to_ours(key), tuple(shape)) for key, shape in entry["keys"]]
    targets = [key for key, _ in mapped]
    assert len(set(targets)) == len(targets), "two released keys map to the same parameter"
    missing = sorted(set(ours) - set(targets))
    unexpected = sorted(set(targets) - set(ours))
    assert not missing and not unexpected, f"missing {missing[:5]}, unexpected {unexpected[:5]}"
    misshapen = [(key, shape, ours[key]) for key, shape in mapped if ours[key] != shape]
    assert not misshapen, f"misshapen: {misshapen[:5]}"
    num_parameters = sum(p.numel() for p in model.parameters())
    assert num_parameters == entry["params"]


def _fake_released_checkpoint(name: str, path: Path, edit=None) -> None:
    """A checkpoint in the released layout, with random values, from the manifest's shapes."""
    state = {key: torch.randn(shape) if shape else torch.tensor(0) for key, shape in ENTRIES[name]["keys"]}
    if edit:
        edit(state)
    torch.save({"epoch": 1, "iter": 10, "model": state}, path)


LIP = "isnet_resnet50os8_lip"


def test_load_released_layout_from_local_file(tmp_path):
    path = tmp_path / "isnet.pth"
    _fake_released_checkpoint(LIP, path)
    model = create_model(LIP, weights=path)
    reloaded = torch.load(path, weights_only=True)["model"]
    assert torch.equal(model.head.decoder.shortcut[0].weight, reloaded["shortcut.0.weight"])
    assert torch.equal(model.aux_head[4].bias, reloaded["auxiliary_decoder.4.bias"])


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda s: s.pop("slc_net.bottleneck.0.weight"), "1 missing key(s):\n    head.semantic_context.fuse.0.weight"),
        (lambda s: s.__setitem__("extra.weight", torch.zeros(1)), "1 unexpected key(s):\n    extra.weight"),
        (
            lambda s: s.__setitem__("decoder_stage2.4.weight", torch.zeros(19, 512, 1, 1)),
            "head.decoder.classifier.4.weight: file (19, 512, 1, 1) vs model (20, 512, 1, 1)",
        ),
    ],
    ids=["missing", "unexpected", "misshapen"],
)
def test_mismatched_checkpoint_names_file_and_keys(tmp_path, edit, message):
    path = tmp_path / "mismatched.pth"
    _fake_released_checkpoint(LIP, path, edit)
    with pytest.raises(CheckpointError) as error:
        load_released_checkpoint(build_model(get_config(LIP)), path)
    assert str(path) in str(error.value)
    assert message in str(error.value)


def test_checkpoint_of_another_dataset_is_refused(tmp_path):
    path = tmp_path / "ade.pth"
    _fake_released_checkpoint("isnet_resnet50os8_ade20k", path)
    with pytest.raises(CheckpointError, match="misshapen") as error:
        create_model("isnet_resnet50os8_cityscapes", weights=path)
    assert "decoder_stage1" not in str(error.value)  # reported in our names
    assert "head.classifier_stage1.4.weight: file (150, 512, 1, 1) vs model (19, 512, 1, 1)" in str(error.value)

"""Backbone contract (stage channels and strides) and ImageNet initialisation from local files."""

from __future__ import annotations

import pytest
import torch

from isnet.model.backbones import build_backbone, stage_channels
from isnet.weights.imagenet import load_imagenet_weights
from isnet.weights.checkpoint import CheckpointError
from isnet.model.config import BackboneConfig


@pytest.mark.parametrize(
    "config, strides",
    [
        (BackboneConfig("resnet", 18, base_channels=8, stem_channels=8), (4, 8, 8, 8)),
        (BackboneConfig("resnet", 50, base_channels=4, stem_channels=8, output_stride=16), (4, 8, 16, 16)),
        (BackboneConfig("resnest", 50, base_channels=4, stem_channels=8), (4, 8, 8, 8)),
    ],
    ids=["r18-os8", "r50-os16", "s50-os8"],
)
def test_stage_outputs_match_feature_info(config, strides):
    backbone = build_backbone(config).eval()
    features = backbone(torch.randn(1, 3, 64, 48))
    assert [info.stride for info in backbone.feature_info] == list(strides)
    assert [info.channels for info in backbone.feature_info] == list(stage_channels(config))
    for feature, info in zip(features, backbone.feature_info):
        assert feature.shape[1] == info.channels
        assert feature.shape[2:] == (64 // info.stride, 48 // info.stride)


def test_dilation_is_contracted_in_the_first_block():
    backbone = build_backbone(BackboneConfig("resnet", 50, base_channels=4, stem_channels=8))
    assert backbone.layer4[0].conv2.dilation == (2, 2)
    assert backbone.layer4[1].conv2.dilation == (4, 4)
    assert backbone.layer3[0].conv2.dilation == (1, 1)


def _save(state_dict, path):
    torch.save({"state_dict": state_dict, "meta": {"epoch": 100}}, path)
    return path


def _randomised(backbone):
    return {k: (torch.randn_like(v) if v.is_floating_point() else v) for k, v in backbone.state_dict().items()}


def test_open_mmlab_v1c_layout(tmp_path):
    config = BackboneConfig("resnet", 50, base_channels=4, stem_channels=8)
    state = _randomised(build_backbone(config))
    file = {"backbone." + k: v for k, v in state.items()} | {"head.fc.weight": torch.zeros(10, 128)}
    backbone = load_imagenet_weights(build_backbone(config), _save(file, tmp_path / "r50_v1c.pth"))
    for key, value in backbone.state_dict().items():
        assert torch.equal(value, state[key]), key


@pytest.mark.slow  # over 15 s on the shared 2-core machine (load 10-15)
def test_open_mmlab_resnest_layout_without_identity_pool(tmp_path):
    config = BackboneConfig("resnest", 50, base_channels=4, stem_channels=8)
    state = _randomised(build_backbone(config))
    # open-mmlab numbers the stride-1 shortcut [conv, bn] as downsample.0 / .1.
    file = {k.replace("layer1.0.downsample.1.", "layer1.0.downsample.0.").replace(
        "layer1.0.downsample.2.", "layer1.0.downsample.1."): v for k, v in state.items()}
    assert "layer1.0.downsample.0.weight" in file
    backbone = load_imagenet_weights(build_backbone(config), _save(file, tmp_path / "resnest.pth"))
    assert torch.equal(backbone.layer1[0].downsample[1].weight, state["layer1.0.downsample.1.weight"])


def test_torchvision_layout_fits_the_plain_stem(tmp_path):
    config = BackboneConfig("resnet", 18, base_channels=8, stem_channels=8, stem="plain")
    state = _randomised(build_backbone(config))
    file = {k.replace("stem.0.", "conv1.").replace("stem.1.", "bn1."): v for k, v in state.items()}
    file |= {"fc.weight": torch.zeros(1000, 64), "fc.bias": torch.zeros(1000)}
    for key in [k for k in file if k.endswith("num_batches_tracked")]:
        del file[key]  # torchvision's own files predate the counters
    backbone = load_imagenet_weights(build_backbone(config), _save(file, tmp_path / "tv.pth"))
    assert torch.equal(backbone.stem[0].weight, state["stem.0.weight"])


def test_torchvision_layout_into_deep_stem_is_a_clear_error(tmp_path):
    plain = build_backbone(BackboneConfig("resnet", 18, base_channels=8, stem_channels=8, stem="plain"))
    file = {k.replace("stem.0.", "conv1.").replace("stem.1.", "bn1."): v for k, v in plain.state_dict().items()}
    path = _save(file, tmp_path / "tv.pth")
    with pytest.raises(CheckpointError, match="7×7") as error:
        load_imagenet_weights(build_backbone(BackboneConfig("resnet", 18, base_channels=8, stem_channels=8)), path)
    assert str(path) in str(error.value)


def test_wrong_depth_names_missing_keys(tmp_path):
    small = build_backbone(BackboneConfig("resnet", 50, base_channels=4, stem_channels=8))
    path = _save(small.state_dict(), tmp_path / "r50.pth")
    with pytest.raises(CheckpointError, match="missing key") as error:
        load_imagenet_weights(build_backbone(BackboneConfig("resnet", 101, base_channels=4, stem_channels=8)), path)
    assert "layer3.6.conv1.weight" in str(error.value)


@pytest.mark.parametrize("family", ["resnet", "resnest"])
@pytest.mark.parametrize("output_stride", [8, 16, 32])
def test_the_registry_knows_each_familys_stages_without_building_them(family, output_stride):
    from isnet.model.backbones import BACKBONES, build_backbone, feature_info

    for depth in sorted(BACKBONES[family].blocks):
        config = BackboneConfig(family, depth, base_channels=4, stem_channels=8, output_stride=output_stride)
        with torch.device("meta"):
            built = tuple(build_backbone(config).feature_info)
        assert feature_info(config) == built, (family, depth)


def test_an_unknown_backbone_is_named_with_the_choices():
    from isnet.model.backbones import build_backbone

    with pytest.raises(ValueError, match="unknown backbone type 'vit': expected one of resnet, resnest"):
        build_backbone(BackboneConfig("vit", 50))
    with pytest.raises(ValueError, match="resnest depth must be one of"):
        build_backbone(BackboneConfig("resnest", 18))

"""Dataset and weight records are the one source of dataset facts; head configs describe one head each."""

from __future__ import annotations

from dataclasses import fields

import pytest
import torch

from isnet.model.config import (
    HEAD_CONFIGS,
    ASPPContextConfig,
    ILCMConfig,
    ISNetHeadConfig,
    ModelConfig,
    PSPHeadConfig,
    ShortcutConfig,
)
from isnet.data import DATASETS, READERS
from isnet.weights.presets import PRESETS, create_model
from isnet.training.recipes import CAMVID_RECIPES, recipe, recipe_names
from isnet.weights.released import WEIGHTS
from isnet.training.config import DataConfig


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_preset_model_carries_its_dataset_record(name):
    with torch.device("meta"):
        model = create_model(name)
    record = PRESETS[name].dataset
    assert model.dataset is record and DATASETS[record.name] is record
    assert model.config.num_classes == record.num_classes == len(record.palette)


def test_a_model_with_other_classes_has_no_dataset_record():
    with torch.device("meta"):
        model = create_model("isnet_resnet50os8_lip", num_classes=5)
    assert model.dataset is None


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_takes_its_data_settings_from_the_record(name):
    config = recipe(name)
    record = DATASETS[config.data.dataset]
    assert config.model.num_classes == record.num_classes
    if name in CAMVID_RECIPES:
        assert config.data.root == record.training.root
        return
    assert config.data == DataConfig.of(record)
    schedule = record.training.schedule
    assert (config.batch_size, config.weight_decay, config.max_iters) == (
        schedule.batch_size, schedule.weight_decay, schedule.max_iters)
    expected_lr = WEIGHTS[name].lr if name in WEIGHTS and WEIGHTS[name].lr else schedule.lr
    assert config.lr == expected_lr


@pytest.mark.parametrize("name", sorted(WEIGHTS))
def test_released_weights_and_presets_agree(name):
    weights = WEIGHTS[name]
    assert PRESETS[name].dataset is weights.dataset
    assert weights.file_name == f"{name}.pth" and weights.url.endswith(weights.file_name)


def test_every_record_with_a_reader_is_complete():
    assert set(READERS) == set(DATASETS)
    for record in DATASETS.values():
        assert len(record.classes) == len(record.palette) and record.training is not None
        assert record.test.fit_size is None or record.test.resize_to is None
        for pair in record.flip_pairs:
            assert all(0 <= k < record.num_classes for k in pair)
        if record.test.multi_scale is not None:
            assert record.test.multi_scale.flip_pairs == record.flip_pairs


def test_record_facts_match_the_published_protocols():
    assert DATASETS["lip"].test.resize_to == (473, 473) and DATASETS["lip"].flip_pairs
    assert DATASETS["cityscapes"].test.multi_scale.mode == "slide"
    assert DATASETS["ade20k"].test.fit_size == (2048, 512)
    assert DATASETS["camvid"].test.fit_size is None


def test_head_config_rejects_fields_of_another_head():
    own = {kind: {f.name for f in fields(cls)} for kind, cls in HEAD_CONFIGS.items()}
    common = set.intersection(*own.values())
    assert common == {"channels", "dropout"}
    for kind, cls in HEAD_CONFIGS.items():
        for other, names in own.items():
            for name in sorted(names - own[kind]):
                with pytest.raises(TypeError):
                    cls(**{name: getattr(HEAD_CONFIGS[other](), name)})
    with pytest.raises(TypeError):
        PSPHeadConfig(image_context=ASPPContextConfig(), shortcut=ShortcutConfig())


@pytest.mark.parametrize("kind", sorted(HEAD_CONFIGS))
def test_head_config_round_trips_through_json(kind):
    config = ModelConfig(num_classes=3, head=HEAD_CONFIGS[kind](channels=32))
    assert ModelConfig.from_json(config.to_json()) == config


def test_a_saved_config_with_fields_of_another_head_is_refused():
    data = ModelConfig(num_classes=3, head=PSPHeadConfig()).to_dict()
    data["head"]["shortcut"] = True
    with pytest.raises(ValueError, match="shortcut do not belong to a ppm head"):
        ModelConfig.from_dict(data)
    assert ModelConfig.from_dict(ModelConfig(num_classes=3).to_dict()).head == ISNetHeadConfig()


@pytest.mark.parametrize("head", [
    ISNetHeadConfig(image_context=ASPPContextConfig(dilations=(1, 6, 12, 18)), shortcut=ShortcutConfig(channels=32)),
    ISNetHeadConfig(image_context=None, semantic_context=True),
    ISNetHeadConfig(),
], ids=["dagger-with-shortcut", "slcm-only", "isnet"])
def test_isnet_head_parts_round_trip_through_json(head):
    config = ModelConfig(num_classes=3, head=head)
    assert ModelConfig.from_json(config.to_json()) == config


def test_an_isnet_head_cannot_carry_settings_of_a_part_it_lacks():
    """ASPP's dilations belong to ASPP's config and the shortcut's width to the shortcut's:
    an ILCM head has nowhere to put dilations, and words instead of parts are refused."""
    with pytest.raises(TypeError):
        ISNetHeadConfig(aspp_dilations=(1, 2, 3))
    with pytest.raises(TypeError):
        ISNetHeadConfig(shortcut_channels=48)
    with pytest.raises(TypeError, match="ASPPContextConfig"):
        ISNetHeadConfig(image_context="aspp")
    with pytest.raises(TypeError, match="ShortcutConfig"):
        ISNetHeadConfig(shortcut=True)
    data = ModelConfig(num_classes=3).to_dict()
    data["head"]["image_context"]["dilations"] = [1, 2, 3]
    with pytest.raises(ValueError, match="dilations do not belong to a ilcm image_context"):
        ModelConfig.from_dict(data)


def test_configs_written_before_0_3_are_read_as_their_parts():
    """Files of earlier versions wrote the head flat: a word for the image-level module beside
    aspp_dilations, a flag for the shortcut beside shortcut_channels (all fields, always)."""
    old = {"num_classes": 3, "head": {"type": "isnet", "channels": 512, "dropout": 0.1, "transform_channels": 256,
                                      "image_context": "aspp", "semantic_context": True, "shortcut": True,
                                      "shortcut_channels": 48, "aspp_dilations": [1, 12, 24, 36]}}
    head = ModelConfig.from_dict(old).head
    assert head.image_context == ASPPContextConfig((1, 12, 24, 36)) and head.shortcut == ShortcutConfig(48)
    old["head"].update(image_context="ilcm", shortcut=False)
    head = ModelConfig.from_dict(old).head
    assert head.image_context == ILCMConfig() and head.shortcut is None
    old["head"]["image_context"] = "none"
    assert ModelConfig.from_dict(old).head.image_context is None

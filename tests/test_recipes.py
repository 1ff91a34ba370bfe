"""Every named recipe resolves, and the Table 3 peers plug into the same segmentor."""

from __future__ import annotations

import pytest
import torch

from isnet.model.config import PEER_HEAD_CONFIGS
from isnet.weights.presets import PEERS
from isnet.training.recipes import recipe, recipe_names
from isnet.model.segmentor import build_model


@pytest.mark.parametrize("name", recipe_names())
def test_recipe_resolves_and_builds(name):
    config = recipe(name)
    assert config.max_iters > 0 and config.batch_size > 0
    with torch.device("meta"):
        model = build_model(config.model)
    assert model.aux_head is not None


@pytest.mark.parametrize("peer", PEERS)
def test_table3_peer_is_the_same_segmentor_with_another_head(peer):
    isnet, other = recipe("ablation_isnet_resnet50os8_ade20k"), recipe(f"{peer}_resnet50os8_ade20k")
    assert other.model.backbone == isnet.model.backbone
    assert other.model.aux == isnet.model.aux
    assert (other.lr, other.batch_size, other.max_iters) == (isnet.lr, isnet.batch_size, isnet.max_iters)
    with torch.device("meta"):
        model = build_model(other.model)
    assert isinstance(other.model.head, PEER_HEAD_CONFIGS[peer])
    assert type(model.head).__name__ != "ISNetHead"


def test_released_recipe_follows_the_paper():
    ade = recipe("isnet_resnest101os8_ade20k")
    assert (ade.lr, ade.batch_size, ade.max_iters, ade.data.crop_size) == (0.004, 16, 160_000, (512, 512))
    lip = recipe("isnet_resnet50os8_lip")
    assert lip.model.head.shortcut and lip.data.crop_size == (473, 473) and lip.batch_size == 32
    city = recipe("isnet_resnet101os8_cityscapes")
    assert city.data.crop_size == (512, 1024) and city.max_iters == 80_000


def test_overrides_reach_nested_fields_and_reject_unknown_ones():
    from isnet.training.overrides import with_overrides

    base = recipe("camvid_isnet")
    config = with_overrides(base, {"lr": 0.02, "data.root": "elsewhere", "model.head.dropout": 0.0})
    assert (config.lr, config.data.root, config.model.head.dropout) == (0.02, "elsewhere", 0.0)
    assert config.model.backbone == base.model.backbone and base.model.head.dropout == 0.1
    with pytest.raises(ValueError, match="ISNetHeadConfig has no field 'dropuot'"):
        with_overrides(base, {"model.head.dropuot": 0.0})

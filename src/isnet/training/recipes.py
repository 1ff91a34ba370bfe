"""Training recipes: the released models', the Table 1 / Table 3 ones, and the CamVid miniatures.

A recipe is a :class:`~isnet.training.loop.TrainConfig` whose data settings and schedule come from the
dataset record (:mod:`isnet.data.info`) and whose model comes from the preset of the same
name, so ``isnet train --recipe isnet_resnet50os8_ade20k`` trains the model
``create_model("isnet_resnet50os8_ade20k")`` loads.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from isnet.data.info import CAMVID
from isnet.model.config import (
    PEER_HEAD_CONFIGS,
    AuxConfig,
    BackboneConfig,
    ISNetHeadConfig,
    ModelConfig,
)
from isnet.training.config import DataConfig, TrainConfig
from isnet.weights.presets import ABLATIONS, PEERS, PRESETS, get_preset
from isnet.weights.released import WEIGHTS


def preset_recipe(name: str, **overrides: Any) -> TrainConfig:
    """The paper's recipe for a preset: its dataset record's data settings and schedule.

    For released weights, a learning rate they were trained with that differs from the
    dataset's schedule (ResNeSt-101 on ADE20K: 0.004) is used.
    """
    preset = get_preset(name)
    defaults = preset.dataset.training
    if defaults is None or defaults.schedule is None:
        raise ValueError(f"{name}: its dataset {preset.dataset.name} has no published training schedule")
    schedule = defaults.schedule
    lr = WEIGHTS[name].lr if name in WEIGHTS and WEIGHTS[name].lr is not None else schedule.lr
    config = TrainConfig(
        model=preset.config(),
        data=DataConfig.of(preset.dataset),
        batch_size=schedule.batch_size,
        lr=lr,
        weight_decay=schedule.weight_decay,
        max_iters=schedule.max_iters,
        output_dir=f"runs/{name}",
    )
    return replace(config, **overrides)


def camvid_recipe(variant: str = "isnet", **overrides: Any) -> TrainConfig:
    """The CamVid miniature of Table 1: a small ResNet-18 ISNet trained from scratch.

    ``variant`` is one of the Table 1 ablations (baseline, ilcm, slcm, isnet) or a Table 3
    peer head (ppm, aspp, ocr, ccnet, danet, ann, nonlocal, dnl, apcnet). Sized to
    train in about ten minutes on 2 CPU cores: half-resolution CamVid (180×240 crops of
    images fitted to 240×180 and rescaled by [0.5, 2]), 1600 iterations of batch 8 in bf16.
    """
    if variant in ABLATIONS:
        head = ISNetHeadConfig(channels=64, transform_channels=32, **ABLATIONS[variant])
    elif variant in PEER_HEAD_CONFIGS:
        head = PEER_HEAD_CONFIGS[variant](channels=64)
    else:
        raise KeyError(f"unknown CamVid variant {variant!r}: expected one of {', '.join((*ABLATIONS, *PEERS))}")
    model = ModelConfig(
        num_classes=CAMVID.num_classes,
        backbone=BackboneConfig("resnet", 18, base_channels=16, stem_channels=16),
        head=head,
        aux=AuxConfig(channels=32),
    )
    config = TrainConfig(
        model=model,
        data=DataConfig.of(CAMVID, crop_size=(180, 240), fit_size=(240, 180), eval_fit_size=(240, 180)),
        batch_size=8,
        lr=0.01,
        weight_decay=5e-4,
        max_iters=1600,
        eval_interval=800,
        checkpoint_interval=200,
        precision="bf16",
        output_dir=f"runs/camvid_{variant}",
    )
    return replace(config, **overrides)


CAMVID_RECIPES = {f"camvid_{variant}": variant for variant in (*ABLATIONS, *PEERS)}


def recipe(name: str, **overrides: Any) -> TrainConfig:
    """A training recipe by name: a preset with a published schedule, or ``camvid_<variant>``."""
    if name in CAMVID_RECIPES:
        return camvid_recipe(CAMVID_RECIPES[name], **overrides)
    if name in PRESETS:
        return preset_recipe(name, **overrides)
    raise KeyError(f"unknown recipe {name!r}; see `isnet recipes`")


def recipe_names() -> list[str]:
    """Every preset (their datasets all have a published schedule) and the CamVid miniatures."""
    return sorted(PRESETS) + list(CAMVID_RECIPES)

"""Training recipes: data settings per dataset, and named recipes for the released models.

A recipe is a :class:`~isnet.train.TrainConfig`; the released ones follow the paper and the
authors' configs (isnet-reference.md, "Training recipes"). The recipe of a released model
has the model preset's name, so ``isnet train --recipe isnet_resnet50os8_ade20k`` trains the
model ``create_model("isnet_resnet50os8_ade20k")`` loads.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from torch.utils.data import Dataset

from .config import AuxConfig, BackboneConfig, HeadConfig, ModelConfig
from .data import (
    ADE20KDataset,
    CamVidDataset,
    CityscapesDataset,
    COCOStuff10kDataset,
    FolderDataset,
    LIPDataset,
    eval_transforms,
    lip_eval_transforms,
    lip_train_transforms,
    train_transforms,
)
from .data.info import DatasetInfo
from .inference import MS_SCALES, InferenceConfig
from .presets import ABLATIONS, PEERS, RELEASED, get_config


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where, and how its training crops and test images are sized.

    ``crop_size`` is (height, width); ``fit_size`` / ``eval_fit_size`` are the (long side,
    short side) box images are resized to fit, before the random rescale in training.
    """

    dataset: str = "ade20k"  # ade20k, cityscapes, cocostuff10k, lip, camvid, folder
    root: str = "data/ADEChallengeData2016"
    crop_size: tuple[int, int] = (512, 512)
    fit_size: tuple[int, int] | None = (2048, 512)
    scale_range: tuple[float, float] = (0.5, 2.0)
    eval_fit_size: tuple[int, int] | None = (2048, 512)
    train_split: str = "train"
    val_split: str = "val"

    def build(self, split: str, *, train: bool) -> Dataset:
        """The dataset of ``split`` with the training or the evaluation transform."""
        if self.dataset == "lip":
            transform = lip_train_transforms(crop_size=self.crop_size) if train else lip_eval_transforms()
            return LIPDataset(self.root, split, transform)
        if train:
            transform = train_transforms(
                crop_size=self.crop_size,
                fit_size=self.fit_size,
                scale_range=self.scale_range,
            )
        else:
            transform = eval_transforms(self.eval_fit_size)
        readers = {
            "ade20k": ADE20KDataset,
            "cityscapes": CityscapesDataset,
            "cocostuff10k": COCOStuff10kDataset,
            "camvid": CamVidDataset,
        }
        if self.dataset in readers:
            return readers[self.dataset](self.root, split, transform)
        if self.dataset == "folder":
            return FolderDataset(self.root, images_dir=f"images/{split}", masks_dir=f"masks/{split}", transform=transform)
        raise ValueError(f"unknown dataset {self.dataset!r}: expected one of {', '.join(DATASETS)} or folder")

    def info(self) -> DatasetInfo:
        return self.build(self.val_split, train=False).info


DATASETS: dict[str, dict[str, Any]] = {
    "ade20k": dict(root="data/ADEChallengeData2016", crop_size=(512, 512), fit_size=(2048, 512), eval_fit_size=(2048, 512)),
    "cocostuff10k": dict(
        root="data/cocostuff10k", crop_size=(512, 512), fit_size=(2048, 512), eval_fit_size=(2048, 512), val_split="test"
    ),
    "cityscapes": dict(root="data/cityscapes", crop_size=(512, 1024), fit_size=(2048, 1024), eval_fit_size=(2048, 1024)),
    "lip": dict(root="data/LIP", crop_size=(473, 473), fit_size=None, scale_range=(0.75, 1.25), eval_fit_size=None),
    "camvid": dict(root="data/camvid", crop_size=(360, 480), fit_size=(480, 360), eval_fit_size=None),
}

# The schedule of the paper and released configs, per dataset.
SCHEDULES: dict[str, dict[str, Any]] = {
    "ade20k": dict(batch_size=16, lr=0.01, weight_decay=5e-4, max_iters=160_000),
    "cocostuff10k": dict(batch_size=16, lr=0.001, weight_decay=1e-4, max_iters=60_000),
    "lip": dict(batch_size=32, lr=0.01, weight_decay=5e-4, max_iters=160_000),
    "cityscapes": dict(batch_size=16, lr=0.01, weight_decay=5e-4, max_iters=80_000),
}

# The released test protocols: multi-scale + flip, whole image or sliding window.
EVAL_PROTOCOLS: dict[str, InferenceConfig] = {
    "ade20k": InferenceConfig(scales=MS_SCALES, flip=True, probs_before_resize=True),
    "cocostuff10k": InferenceConfig(scales=MS_SCALES, flip=True, probs_before_resize=True),
    "cityscapes": InferenceConfig(
        mode="slide", crop=(512, 1024), stride=(341, 341), scales=MS_SCALES, flip=True, probs_before_resize=True
    ),
    "lip": InferenceConfig(flip=True, flip_pairs=((14, 15), (16, 17), (18, 19)), probs_before_resize=True),
}


def released_recipe(name: str, **overrides: Any):
    """The training recipe of a released model, e.g. ``isnet_resnest101os8_ade20k``."""
    from .train import TrainConfig

    dataset = name.rsplit("_", 1)[-1]
    schedule = dict(SCHEDULES[dataset])
    if "resnest" in name and dataset == "ade20k":
        schedule["lr"] = 0.004
    config = TrainConfig(
        model=get_config(name),
        data=DataConfig(dataset=dataset, **DATASETS[dataset]),
        **schedule,
        output_dir=f"runs/{name}",
    )
    return replace(config, **overrides)


def camvid_recipe(variant: str = "isnet", **overrides: Any):
    """The CamVid miniature of Table 1: a small ResNet-18 ISNet trained from scratch.

    ``variant`` is one of the Table 1 ablations (baseline, ilcm, slcm, isnet) or a Table 3
    peer head (ppm, aspp, ocr, ccnet, danet, ann, nonlocal, dnl, apcnet). Sized to
    train in about ten minutes on 2 CPU cores: half-resolution CamVid (180×240 crops of
    images fitted to 240×180 and rescaled by [0.5, 2]), 1600 iterations of batch 8 in bf16.
    """
    from .train import TrainConfig

    model = ModelConfig(
        num_classes=11,
        backbone=BackboneConfig("resnet", 18, base_channels=16, stem_channels=16),
        head=HeadConfig(channels=64, transform_channels=32, **(ABLATIONS[variant] if variant in ABLATIONS else {"type": variant})),
        aux=AuxConfig(channels=32),
    )
    config = TrainConfig(
        model=model,
        data=DataConfig(dataset="camvid", root="data/camvid", crop_size=(180, 240),
                        fit_size=(240, 180), scale_range=(0.5, 2.0), eval_fit_size=(240, 180)),
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


def recipe(name: str, **overrides: Any):
    """A training recipe by name: a released model's name, ``ablation_*``, or ``camvid_<variant>``."""
    if name in RELEASED:
        return released_recipe(name, **overrides)
    if name.startswith("ablation_") or name.split("_", 1)[0] in PEERS:
        from .train import TrainConfig

        config = TrainConfig(
            model=get_config(name),
            data=DataConfig(dataset="ade20k", **DATASETS["ade20k"]),
            **SCHEDULES["ade20k"],
            output_dir=f"runs/{name}",
        )
        return replace(config, **overrides)
    if name.startswith("camvid_"):
        return camvid_recipe(name.removeprefix("camvid_"), **overrides)
    raise KeyError(f"unknown recipe {name!r}; see `isnet recipes`")


def recipe_names() -> list[str]:
    return (
        sorted(RELEASED)
        + sorted(f"ablation_{v}_resnet50os8_ade20k" for v in ABLATIONS)
        + [f"{p}_resnet50os8_ade20k" for p in PEERS]
        + [f"camvid_{v}" for v in (*ABLATIONS, *PEERS)]
    )

"""What a training run is: the model, the data, the schedule, and how faults are handled."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from torch.utils.data import Dataset

from ..config import ModelConfig
from ..data import (
    DATASETS,
    DatasetInfo,
    eval_transforms,
    lip_eval_transforms,
    lip_train_transforms,
    open_dataset,
    train_transforms,
)
from ..data.folder import folder_record
from ..data.image import MAX_IMAGE_PIXELS
from ..inference import InferenceConfig
from ..losses import DEFAULT_LOSS_WEIGHTS

Size = tuple[int, int]


@dataclass(frozen=True)
class DataConfig:
    """Which dataset, where, and how its training crops and test images are sized.

    ``dataset`` names a record of :data:`isnet.data.DATASETS` or is "folder" (class names
    from the folder's ``classes.txt``). ``crop_size`` is (height, width); ``fit_size`` /
    ``eval_fit_size`` are the (long side, short side) box images are resized to fit, before the
    random rescale in training. :meth:`of` takes every value from a dataset record.
    """

    dataset: str
    root: str
    crop_size: Size = (512, 512)
    fit_size: Size | None = None
    scale_range: tuple[float, float] = (0.5, 2.0)
    eval_fit_size: Size | None = None
    train_split: str = "train"
    val_split: str = "val"

    @classmethod
    def of(cls, record: DatasetInfo, **overrides: Any) -> DataConfig:
        """The data settings of ``record``: its training defaults and its test resize.

        A record that is not one of :data:`~isnet.data.DATASETS` is a folder's (``dataset``
        "folder"); without training defaults the crop and rescale keep this class's defaults.
        """
        defaults = record.training
        named = DATASETS.get(record.name) == record
        config = cls(dataset=record.name if named else "folder", root=defaults.root if defaults else ".",
                     eval_fit_size=record.test.fit_size)
        if defaults is not None:
            config = replace(config, crop_size=defaults.crop_size, fit_size=defaults.fit_size,
                             scale_range=defaults.scale_range, train_split=defaults.train_split,
                             val_split=defaults.val_split)
        return replace(config, **overrides)

    def dataset_record(self) -> DatasetInfo:
        """The record of the dataset: a named one, or the folder's (``dataset.json`` or ``classes.txt``)."""
        if self.dataset == "folder":
            return folder_record(self.root)
        if self.dataset not in DATASETS:
            raise ValueError(f"unknown dataset {self.dataset!r}: expected one of {', '.join((*DATASETS, 'folder'))}")
        return DATASETS[self.dataset]

    def build(self, split: str, *, train: bool) -> Dataset:
        """The dataset of ``split`` with the training or the evaluation transform."""
        record = self.dataset_record()
        if train and record.training is not None and record.training.pipeline == "person":
            transform = lip_train_transforms(crop_size=self.crop_size, resize=self.fit_size,
                                             scale_range=self.scale_range, flip_pairs=record.flip_pairs)
        elif train:
            transform = train_transforms(crop_size=self.crop_size, fit_size=self.fit_size, scale_range=self.scale_range,
                                         flip_pairs=record.flip_pairs)
        elif self.eval_fit_size is None and record.test.resize_to is not None:
            transform = lip_eval_transforms(record.test.resize_to)
        else:
            transform = eval_transforms(self.eval_fit_size)
        return open_dataset(self.dataset, self.root, split, transform)


@dataclass(frozen=True)
class TrainConfig:
    model: ModelConfig
    data: DataConfig
    batch_size: int = 16  # global: summed over processes and accumulation steps
    grad_accum_steps: int = 1
    lr: float = 0.01
    min_lr: float = 0.0
    poly_power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 5e-4
    max_iters: int = 160_000
    loss_weights: dict[str, float] = field(default_factory=lambda: dict(DEFAULT_LOSS_WEIGHTS))
    precision: str = "fp32"  # fp32, bf16 (CPU or GPU), fp16 (GPU)
    channels_last: bool = True  # model and images in the layout oneDNN and tensor cores want (same results)
    # Recompute backbone activations in the backward pass instead of storing them: less memory
    # for large crops, about one more backbone forward of time, the same results.
    grad_checkpointing: bool = False
    eval: InferenceConfig = InferenceConfig()
    eval_interval: int = 4000  # 0: only at the end
    checkpoint_interval: int = 1000
    keep_checkpoints: int = 2
    log_interval: int = 10
    seed: int = 0
    deterministic: bool = False
    num_workers: int = 2
    weights_backbone: str | None = None
    output_dir: str = "runs/isnet"
    device: str | None = None  # default: cuda when available
    progress: bool = True
    # Faults (docs/reliability.md).
    nonfinite: str = "stop"  # a NaN/inf loss: "stop" (raise), or "skip" the step and go on
    max_nonfinite_skips: int = 10  # with "skip": stop after this many skipped steps in a row
    check_data: str = "headers"  # before training: "headers" (open every file), "full" (decode every file), "off"
    skip_bad_samples: bool = False  # drop unusable samples (listed in bad_samples.txt) instead of stopping
    max_image_pixels: int = MAX_IMAGE_PIXELS  # larger images are refused (decompression bombs)
    # Fine-tuning: start from these weights (a file or released weights' name), loading every
    # tensor whose shape fits and initialising the rest (e.g. classifiers for other classes).
    init_from: str | None = None
    # Per-class loss weights for imbalanced data: K values, or "median_frequency" to compute
    # them from the training labels (median frequency balancing), or None.
    class_weights: str | tuple[float, ...] | None = None

    def __post_init__(self) -> None:
        for name, allowed in (("nonfinite", ("stop", "skip")), ("check_data", ("headers", "full", "off")),
                              ("precision", ("fp32", "bf16", "fp16"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"TrainConfig.{name} is {getattr(self, name)!r}; choose one of {', '.join(allowed)}")
        if self.precision == "fp16" and self.device is not None and not self.device.startswith("cuda"):
            raise ValueError(f"TrainConfig.precision fp16 needs a GPU (device {self.device}); on a CPU use bf16")
        if isinstance(self.class_weights, str) and self.class_weights != "median_frequency":
            raise ValueError(f"TrainConfig.class_weights is {self.class_weights!r}: give K numbers or median_frequency")
        if isinstance(self.class_weights, tuple) and len(self.class_weights) != self.model.num_classes:
            raise ValueError(f"TrainConfig.class_weights has {len(self.class_weights)} values for "
                             f"{self.model.num_classes} classes")

    def to_json(self) -> str:
        data = asdict(self)
        data["model"] = self.model.to_dict()
        return json.dumps(data, sort_keys=True, default=str)
